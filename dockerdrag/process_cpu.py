"""The CPU time this process and its running child processes have used.

A docker-format pull on Linux inflates its big layers in worker processes
(:mod:`~dockerdrag.decoder_processes`): their CPU is the pull's too, but
:func:`time.process_time` counts this process's threads only. Where the system lists a
thread's children and their times (``/proc/self/task/<tid>/children`` and
``/proc/<pid>/stat``, on Linux) :func:`cpu_seconds` adds the children's; elsewhere it is
this process's alone (no system but Linux runs the worker processes). A child that has
ended is no longer counted: the total may go down.
"""

from __future__ import annotations

import os
import time
from typing import Final

__all__ = ["cpu_seconds"]

_TASKS: Final = "/proc/self/task"
_TICKS_PER_SECOND: Final = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_seconds() -> float:
    """User + system CPU seconds of this process and of its child processes running now."""
    total = time.process_time()
    try:
        tasks = os.listdir(_TASKS)
    except OSError:  # no /proc: this process's own
        return total
    for task in tasks:
        for pid in _read(f"{_TASKS}/{task}/children").split():
            total += _child_seconds(_read(f"/proc/{pid}/stat"))
    return total


def _child_seconds(stat: str) -> float:
    """A ``/proc/<pid>/stat`` line's user + system time, in seconds (0 if unreadable)."""
    # The command name (field 2) may hold spaces: the fields after it start past its ")".
    fields = stat[stat.rfind(")") + 2 :].split()
    if len(fields) < 13:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICKS_PER_SECOND


def _read(path: str) -> str:
    """The file's text, or "" when it cannot be read (a thread or child that just ended)."""
    try:
        with open(path, encoding="ascii") as handle:
            return handle.read()
    except OSError:
        return ""
