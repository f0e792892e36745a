"""``python -m benchmarks`` is ``python -m benchmarks.run``."""

from __future__ import annotations

from .run import main

raise SystemExit(main())
