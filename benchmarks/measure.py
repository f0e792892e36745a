"""Timing child processes: wall time, CPU time and peak RSS straight from ``wait4``.

``os.wait4`` returns the child's own ``rusage``, which on Linux also covers every
descendant the child waited for: CPU adds up (``sh -c 'a & b & wait'`` reports a + b)
and ``ru_maxrss`` is the largest single process. A daemon does the work of ``docker
pull`` outside the CLI's process tree, so for it :func:`tree_cpu_seconds` reads the
daemon's process tree from /proc instead.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")
LAUNCHER = Path(__file__).with_name("launcher.py")
HASH_READ = 4 << 20


@dataclasses.dataclass(frozen=True)
class Usage:
    """What one or more sequential child processes cost."""

    wall: float  # seconds from each command's start to its exit, summed
    cpu: float  # user + system seconds
    max_rss_kb: int  # largest ru_maxrss (KiB) of any of them
    returncode: int

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def run_measured(
    argv: Sequence[str],
    *,
    log: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> Usage:
    """Run ``argv`` to completion (output appended to ``log``), measured by wait4.

    The command runs under :mod:`benchmarks.launcher` (see there why); its wall time
    is taken inside the launcher, so the launcher's own start-up is not counted.
    """
    read_fd, write_fd = os.pipe()
    try:
        with open(log, "ab") as out:
            out.write(f"$ {' '.join(argv)}\n".encode())
            out.flush()
            process = subprocess.Popen(
                [sys.executable, "-I", "-S", str(LAUNCHER), str(write_fd), *argv],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=dict(env) if env is not None else None,
                cwd=cwd,
                pass_fds=(write_fd,),
            )
            os.close(write_fd)
            write_fd = -1
            with os.fdopen(read_fd, "rb") as results:
                read_fd = -1
                line = results.read().decode()
            launcher_status = process.wait()
    finally:
        for fd in (read_fd, write_fd):
            if fd != -1:
                os.close(fd)
    fields = line.split()
    if launcher_status != 0 or len(fields) != 4:
        raise RuntimeError(f"launcher failed ({launcher_status}) for {argv!r}: {line!r}")
    return Usage(
        wall=float(fields[0]),
        cpu=float(fields[1]),
        max_rss_kb=int(fields[2]),
        returncode=int(fields[3]),
    )


def run_sequence(
    commands: Sequence[Sequence[str]],
    *,
    log: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> Usage:
    """Run ``commands`` one after the other, stopping at the first failure; the wall
    time is the sum of theirs as the launcher took them (its own start-up left out)."""
    wall = 0.0
    cpu = 0.0
    rss = 0
    returncode = 0
    for argv in commands:
        usage = run_measured(argv, log=log, env=env, cwd=cwd)
        wall += usage.wall
        cpu += usage.cpu
        rss = max(rss, usage.max_rss_kb)
        returncode = usage.returncode
        if returncode != 0:
            break
    return Usage(wall, cpu, rss, returncode)


def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])  # comm may hold spaces or ')'
        children.setdefault(ppid, []).append(int(entry))
    return children


def tree_cpu_seconds(root: int) -> float:
    """user + system seconds used so far by ``root`` and its live descendants."""
    children = _children_map()
    total = 0
    stack = [root]
    while stack:
        pid = stack.pop()
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
        stack.extend(children.get(pid, []))
    return total / _TICKS


def sha256_seconds(paths: Sequence[Path]) -> float:
    """CPU seconds this thread spends in sha256 over ``paths``, read in 4 MiB pieces.

    Only the hashing is timed (``time.thread_time`` around each update), not the reads:
    the part of a verified pull that curl, which verifies nothing, never does.
    """
    buffer = bytearray(HASH_READ)
    view = memoryview(buffer)
    spent = 0.0
    for path in paths:
        hasher = hashlib.sha256()
        with open(path, "rb", buffering=0) as blob:
            while count := blob.readinto(buffer):
                started = time.thread_time()
                hasher.update(view[:count])
                spent += time.thread_time() - started
    return spent
