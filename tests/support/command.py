"""Running the ``dockerdrag`` command in a subprocess, as a user would."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path


def run_dockerdrag(
    args: list[str], *, cwd: Path, env: Mapping[str, str], stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m dockerdrag ARGS`` in ``cwd`` with exactly ``env``; output captured."""
    return subprocess.run(
        [sys.executable, "-m", "dockerdrag", *args],
        cwd=cwd,
        env=dict(env),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
