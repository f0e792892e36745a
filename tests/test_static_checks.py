"""The quality bar is part of the suite: mypy --strict (as on Linux, Windows and macOS) and
ruff stay clean."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=300
    )


def test_mypy_strict_on_the_package() -> None:
    completed = run("mypy", "--strict", "dockerdrag")
    assert completed.returncode == 0, completed.stdout + completed.stderr


@pytest.mark.parametrize("platform", ["win32", "darwin"])
def test_mypy_strict_for_the_other_platforms(platform: str) -> None:
    """Type-checked as on Windows and macOS: no call or flag only Linux has (issue 17)."""
    completed = run("mypy", "--strict", "--platform", platform, "dockerdrag")
    assert completed.returncode == 0, completed.stdout + completed.stderr


def test_ruff_check() -> None:
    completed = run("ruff", "check", ".")
    assert completed.returncode == 0, completed.stdout + completed.stderr


def test_ruff_format() -> None:
    completed = run("ruff", "format", "--check", ".")
    assert completed.returncode == 0, completed.stdout + completed.stderr
