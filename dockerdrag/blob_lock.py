"""The per-blob lock between processes, and how a pull waits for another process's.

A pull holds the lock file ``locks/<hex>.lock`` of a blob while it looks for the
blob, resumes its partial or commits it (:class:`~dockerdrag.osfiles.ProcessLock`;
the system drops it when the holder ends, however it ends). The holder writes its
process ID into the lock file, and while a process holds any lock a heartbeat
thread touches its lock files every ``HEARTBEAT_SECONDS``.

A pull that finds the lock held polls it. After ``LockWait.notice_seconds`` it
logs a warning (``waiting for another dockerdrag process to finish blob …``). It
keeps waiting while the holder shows signs of life: its heartbeat, or the blob's
partial file or ranges sidecar changing. A holder that dies drops the lock and the
waiting pull takes over, resuming what the holder left on disk. After
``LockWait.stall_seconds`` without a sign (the holder is stopped or hung) the
waiting pull fails with an :class:`OutputError` naming the blob, the process and
the cache.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import anyio

from .errors import OutputError
from .osfiles import ProcessLock

log = logging.getLogger("dockerdrag")

HEARTBEAT_SECONDS = 5.0
"""How often a process touches the lock files it holds."""
_SIGN_CHECK_SECONDS = 1.0
"""How often a waiting pull looks for signs of life of the holder."""


@dataclass(frozen=True)
class LockWait:
    """How a pull waits for a blob lock another process holds."""

    notice_seconds: float = 3.0
    """Wait this long before saying so."""
    stall_seconds: float = 60.0
    """Give up after this long without a sign of life of the holder (its heartbeat, its
    partial file growing); more than ``HEARTBEAT_SECONDS``."""
    poll_seconds: float = 0.05
    """How often the lock is tried."""


class _Heartbeat:
    """A thread that touches the lock files this process holds, while it holds any."""

    def __init__(self) -> None:
        self._paths: set[Path] = set()
        self._guard = threading.Lock()
        self._thread: threading.Thread | None = None

    def add(self, path: Path) -> None:
        with self._guard:
            self._paths.add(path)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="dockerdrag-lock-heartbeat", daemon=True
                )
                self._thread.start()

    def remove(self, path: Path) -> None:
        with self._guard:
            self._paths.discard(path)

    def _run(self) -> None:
        while True:
            time.sleep(HEARTBEAT_SECONDS)
            with self._guard:
                if not self._paths:
                    self._thread = None
                    return
                held = list(self._paths)
            for path in held:
                with contextlib.suppress(OSError):
                    os.utime(path)


_heartbeat = _Heartbeat()


class HeldLock:
    """A blob lock this process holds; :meth:`release` gives it up."""

    def __init__(self, lock: ProcessLock, path: Path) -> None:
        self._lock = lock
        self._path = path
        lock.note_holder(f"{os.getpid()}\n")
        _heartbeat.add(path)

    def release(self) -> None:
        _heartbeat.remove(self._path)
        self._lock.close()


def _holder(lock_path: Path) -> str:
    """`` (pid N)`` from what the holder wrote into the lock file, or nothing."""
    try:
        note = lock_path.read_text(encoding="ascii", errors="replace").strip()
    except OSError:
        return ""
    return f" (pid {note})" if note.isdigit() else ""


def _signs(paths: Sequence[Path]) -> tuple[tuple[int, int] | None, ...]:
    """Size and modification time of each file (None where it is missing)."""
    found: list[tuple[int, int] | None] = []
    for path in paths:
        try:
            info = path.stat()
        except OSError:
            found.append(None)
            continue
        found.append((info.st_size, info.st_mtime_ns))
    return tuple(found)


async def take_blob_lock(
    lock_path: Path, watched: Sequence[Path], blob: str, cache: Path, wait: LockWait
) -> HeldLock:
    """Take the lock at ``lock_path`` for ``blob`` (short digest), waiting as described above.

    ``watched`` are the files the holder writes while it works (the partial, its sidecar).
    """
    while True:
        lock = ProcessLock(lock_path)
        try:
            if not lock.try_acquire():
                await _wait_for(lock, [lock_path, *watched], blob, cache, wait)
            if lock.names_locked_file(lock_path):
                return HeldLock(lock, lock_path)
        except BaseException:
            lock.close()
            raise
        lock.close()  # the lock file was pruned while this pull waited: lock the new one


async def _wait_for(
    lock: ProcessLock, watched: Sequence[Path], blob: str, cache: Path, wait: LockWait
) -> None:
    started = last_sign = last_check = time.monotonic()
    signs = _signs(watched)
    noticed = False
    while True:
        await anyio.sleep(wait.poll_seconds)
        if lock.try_acquire():
            return
        now = time.monotonic()
        if not noticed and now - started >= wait.notice_seconds:
            log.warning(
                "waiting for another dockerdrag process to finish blob %s%s",
                blob,
                _holder(watched[0]),
            )
            noticed = True
        if now - last_check < _SIGN_CHECK_SECONDS:
            continue
        last_check = now
        current = _signs(watched)
        if current != signs:
            signs, last_sign = current, now
        elif now - last_sign >= wait.stall_seconds:
            raise OutputError(
                f"blob {blob}: the dockerdrag process{_holder(watched[0])} holding its lock "
                f"in the cache {cache} has shown no sign of life for {wait.stall_seconds:g} s "
                "(stopped or hung?); end that process, or use another cache directory"
            )
