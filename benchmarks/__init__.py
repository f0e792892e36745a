"""Pull benchmarks: dockerdrag against skopeo, docker pull + save, and two floors.

Run from the repository root: ``python -m benchmarks --help`` (see benchmarks/README.md).
The harness reuses the test rig in ``tests/support`` (registry, pusher, image documents,
dockerd), so the repository root must be importable; it is put on ``sys.path`` here.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = REPO_ROOT / "benchmarks"
DEFAULT_CACHE_DIR = BENCH_DIR / ".cache"

if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))
