"""The per-blob lock, and how a pull waits for it in this process and across processes.

A pull holds the lock file ``locks/<hex>.lock`` of a blob while it looks for the
blob, resumes its partial or commits it (:class:`~dockerdrag.osfiles.ProcessLock`;
the system drops it when the holder ends, however it ends). The holder writes its
process ID into the lock file, and while a process holds any lock a heartbeat
thread touches its lock files every ``HEARTBEAT_SECONDS``.

Within one process (several pulls, Pullers or event loops on one cache) a pull first
takes the lock file's in-process lock (:class:`_LocalLocks`): it waits in line
and the holder hands the lock to the first in line as it releases it, at once.
Only then does it try the lock file, which another process may hold.

A pull that finds the lock file held by another process polls it: the system tells
nobody when a ``flock`` or ``LockFile`` lock is released, except through a blocking
call, which would park a thread that cancelling the pull cannot stop (and that
might take the lock after the pull gave up). After ``LockWait.notice_seconds`` it
logs a warning (``waiting for another dockerdrag process to finish blob …``). It
keeps waiting while the holder shows signs of life: its heartbeat, or the blob's
partial file or ranges sidecar changing. A holder that dies drops the lock and the
waiting pull takes over, resuming what the holder left on disk. After
``LockWait.stall_seconds`` without a sign (the holder is stopped or hung) the
waiting pull fails with an :class:`OutputError` naming the blob, the process and
the cache.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import anyio

from .errors import OutputError
from .osfiles import ProcessLock

log = logging.getLogger("dockerdrag")

HEARTBEAT_SECONDS = 5.0
"""How often a process touches the lock files it holds."""
_SIGN_CHECK_SECONDS = 1.0
"""How often a waiting pull looks for signs of life of the holder."""


class LockWait(NamedTuple):
    """How a pull waits for a blob lock another process holds."""

    notice_seconds: float = 3.0
    """Wait this long before saying so."""
    stall_seconds: float = 60.0
    """Give up after this long without a sign of life of the holder (its heartbeat, its
    partial file growing); more than ``HEARTBEAT_SECONDS``."""
    poll_seconds: float = 0.05
    """How often a lock file another process holds is tried."""


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


class _Waiter:
    """A task waiting for an in-process lock, on its own event loop (whichever thread)."""

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._event = anyio.Event()
        self.handed = False  # the lock is this waiter's (set under the table's guard)

    def wake(self) -> bool:
        """Hand the lock over: whether the waiter's event loop still runs to be told."""
        try:
            self._loop.call_soon_threadsafe(self._event.set)
        except RuntimeError:  # its loop closed: nobody is left to take the lock
            return False
        self.handed = True
        return True

    async def wait(self) -> None:
        await self._event.wait()


class _LocalLocks:
    """The lock files held by tasks of this process, each with the tasks waiting for it.

    A lock file is the key while a task holds it; :meth:`release` hands it to the
    first waiter (in the order they came), which wakes at once, on whichever event
    loop and thread it waits. Process-wide, so pulls of one process never wait for
    each other through the lock file (a second ``flock`` of one file, through another
    descriptor, is refused even within one process).
    """

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._waiters: dict[str, deque[_Waiter]] = {}

    async def acquire(self, key: str) -> None:
        """Take the lock ``key``, waiting in line while another task of this process has it."""
        with self._guard:
            line = self._waiters.get(key)
            if line is None:
                self._waiters[key] = deque()
                return
            waiter = _Waiter()
            line.append(waiter)
        try:
            await waiter.wait()
        except BaseException:  # cancelled: leave the line, or pass on a lock handed over
            with self._guard:
                if not waiter.handed and waiter in line:
                    line.remove(waiter)
            if waiter.handed:
                self.release(key)
            raise

    def release(self, key: str) -> None:
        """Give up the lock ``key``: to the first waiter in line, or to nobody."""
        with self._guard:
            line = self._waiters[key]
            while line:
                if line.popleft().wake():
                    return
            del self._waiters[key]


_local_locks = _LocalLocks()


def _local_key(lock_path: Path) -> str:
    """One name per lock file, however its cache directory was spelled."""
    return os.path.normcase(os.path.realpath(lock_path))


class HeldLock:
    """A blob lock this process holds; :meth:`release` gives it up."""

    def __init__(self, lock: ProcessLock, path: Path, key: str) -> None:
        self._lock = lock
        self._path = path
        self._key = key
        lock.note_holder(f"{os.getpid()}\n")
        _heartbeat.add(path)

    def release(self) -> None:
        """Release the lock file, then wake the next pull of this process waiting for it."""
        try:
            _heartbeat.remove(self._path)
            self._lock.close()
        finally:
            _local_locks.release(self._key)


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
    key = _local_key(lock_path)
    await _local_locks.acquire(key)
    try:
        while True:
            lock = ProcessLock(lock_path)
            try:
                if not lock.try_acquire():  # another process holds it
                    await _wait_for(lock, [lock_path, *watched], blob, cache, wait)
                if lock.names_locked_file(lock_path):
                    return HeldLock(lock, lock_path, key)
            except BaseException:
                lock.close()
                raise
            lock.close()  # the lock file was pruned while this pull waited: lock the new one
    except BaseException:
        _local_locks.release(key)
        raise


async def _wait_for(
    lock: ProcessLock, watched: Sequence[Path], blob: str, cache: Path, wait: LockWait
) -> None:
    started = last_sign = last_check = time.monotonic()
    signs = _signs(watched)
    noticed = False
    while True:
        # A poll: no release of another process's lock can be awaited (see the module's
        # docstring); the sleep is where a cancelled pull stops waiting.
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
