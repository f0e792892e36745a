"""Running the ``dockerdrag`` command in a subprocess, as a user would, and checking how
it failed."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
# Variables that would change how rich sees the terminal.
# A command-line option (``--insecure``) in a message.
_OPTION = re.compile(r"(?<![\w-])--[a-z]")
TERMINAL_VARIABLES = ("FORCE_COLOR", "NO_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "COLUMNS")


def cli_env(cwd: Path, **extra: str) -> dict[str, str]:
    """This process's environment without ``DOCKERDRAG_*`` settings or terminal overrides,
    importing this checkout's package, with the cache and Docker config under ``cwd``;
    ``extra`` is added last (``DOCKER_CONFIG=...`` replaces the default)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKERDRAG_")}
    for name in (*TERMINAL_VARIABLES, "LINES"):
        env.pop(name, None)
    env.update(
        PYTHONPATH=str(ROOT),
        XDG_CACHE_HOME=str(cwd / ".xdg-cache"),
        DOCKER_CONFIG=str(cwd),
        TERM="xterm",
    )
    env.update(extra)
    return env


def cli_command(*args: str) -> list[str]:
    """The argument vector that runs ``python -m dockerdrag ARGS`` (for a process a test
    drives itself, e.g. one it interrupts)."""
    return [sys.executable, "-m", "dockerdrag", *args]


def run_cli(
    *args: str,
    cwd: Path,
    stdin: str | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """``python -m dockerdrag ARGS`` in ``cwd``, in pipes (not a terminal), with exactly
    ``env`` (default :func:`cli_env`); output captured."""
    return subprocess.run(
        cli_command(*args),
        cwd=cwd,
        env=env if env is not None else cli_env(cwd),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def assert_nothing_left_at(output: Path) -> None:
    """Neither ``output`` nor a temporary file of its own (``.NAME*``) is left beside it."""
    assert not output.exists()
    leftovers = [p.name for p in output.parent.iterdir() if p.name.startswith(f".{output.name}")]
    assert leftovers == []


def assert_clean_failure(
    completed: subprocess.CompletedProcess[str], code: int, output: Path | None = None
) -> None:
    """The command exited with ``code``, printed an error or usage line and no traceback,
    and (when ``output`` is given) left nothing at the output path."""
    assert completed.returncode == code, completed.stderr
    assert "Traceback" not in completed.stderr
    assert completed.stderr.startswith("dockerdrag: error: ") or "usage:" in completed.stderr
    if output is not None:
        assert_nothing_left_at(output)


def assert_names_no_option(message: str) -> None:
    """``message`` (a library error's) names no command-line option such as ``--insecure``."""
    assert not _OPTION.search(message), message
