"""The threads that write and hash blob blocks, handed work at little cost to the event loop.

A pull hands a block of a body to a thread every ~192 KiB, thousands of times per
image, and over a fast link the event loop, which also parses every byte of every
body, bounds the pull. ``anyio.to_thread.run_sync`` takes a capacity limiter, a worker
from its pool (fed through a queue with a condition variable) and a future for each
call. :class:`DiskThreads` is a fixed pool fed through
:class:`concurrent.futures.ThreadPoolExecutor` (a simple queue):
:meth:`~DiskThreads.submit` queues the work and returns its future, :func:`outcome`
takes the result (at once, without a wake-up of the loop, when the work has ended
already). Work is never abandoned: a caller cancelled while waiting still waits for it
(its buffer is in use), and the cancellation goes on from the caller's next checkpoint.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

import anyio

__all__ = ["DiskThreads", "outcome"]

T = TypeVar("T")


class DiskThreads:
    """``count`` threads for file work, started on first use, stopped by :meth:`close`."""

    def __init__(self, count: int) -> None:
        self._count = count
        self._pool: ThreadPoolExecutor | None = None

    def submit(self, work: Callable[..., T], *args: object) -> Future[T]:
        """Queue ``work(*args)``; its future."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self._count, thread_name_prefix="dockerdrag-disk")
        return self._pool.submit(work, *args)

    async def run(self, work: Callable[..., T], *args: object) -> T:
        """``work(*args)`` in a thread: its result (see :func:`outcome`)."""
        return await outcome(self.submit(work, *args))

    def close(self) -> None:
        """Let the threads end once the queued work is done (a later :meth:`submit` starts
        new ones)."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False)


async def outcome(future: Future[T]) -> T:
    """The result of ``future`` (its error raised), once its work has ended, even if the
    caller is cancelled meanwhile (the cancellation is delivered at its next checkpoint)."""
    if not future.done():
        with anyio.CancelScope(shield=True):
            await asyncio.wrap_future(future)
    return future.result()
