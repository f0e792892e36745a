"""The blob connections of a pull: a limit whose freed places go to the most wanted bytes first.

The archive writer reads the layers in one order and waits for each in turn; blobs that
all finish together at the end of the download leave it nothing to do meanwhile and
everything to do afterwards. So each request waits with a ``rank`` (where the bytes it
asks for fall in the order the writer reads them: a blob's rank plus their offset in
it): a freed connection goes to the waiting request of the lowest rank, first come
first served within a rank. The blobs then finish roughly in the order they are read,
and the writer works on one layer while the next ones arrive.

A blob's first request (a whole-blob stream, or the chunk that finds out whether the
registry honours ranges) waits with ``FIRST_REQUEST_RANK``, ahead of every further
chunk: every blob gets going at once, in the order asked, and a stream (which cannot be
split between connections) does not start last and straggle. One that finds a place
free takes it at once, without letting other tasks run first.

A request of any other rank that finds a place free does not take it at once: it waits
``GATHER_SECONDS`` (with every request that comes meanwhile) for the requests that come
at about the same moment (the further chunks of several blobs, each sent once its first
answer came), and the free places go to them all by rank, not to whichever came first.

A connection looking for a straggling chunk to split waits with :func:`spare_rank`,
behind every request of every blob: a split closes the straggler's connection and loses
the bytes in flight on it, so it is worth it only once no other work is left to start.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
from collections.abc import AsyncIterator

import anyio
import anyio.lowlevel

FIRST_REQUEST_RANK = -1
"""The rank of a blob's first request: ahead of the chunks of every blob."""

GATHER_SECONDS = 0.1
"""How long a request that would take a free place waits for others to come along."""

_SPARE_RANKS = 1 << 96  # above the rank of any blob's request (ranks count bytes)


def spare_rank(rank: int) -> int:
    """The rank of spare work (a split) for the blob of ``rank``: behind every request of
    every blob, and among spare work, by the blob's rank."""
    return _SPARE_RANKS + rank


class _Waiter:
    __slots__ = ("event", "gone", "granted", "number", "rank")

    def __init__(self, rank: int, number: int) -> None:
        self.rank = rank
        self.number = number
        self.event = anyio.Event()
        self.granted = False  # a place was handed to it
        self.gone = False  # cancelled while waiting: skipped when places are handed out

    def __lt__(self, other: _Waiter) -> bool:
        return (self.rank, self.number) < (other.rank, other.number)


class ConnectionLimit:
    """At most ``total_tokens`` places held at once; waiters served by rank, then arrival.

    Used from one event loop only. ``total_tokens`` may be raised or lowered at any time;
    lowering it takes no place back, it only stops handing out new ones. A request that
    would take a free place waits ``gather_seconds`` for others first (see the module).
    """

    def __init__(self, total_tokens: int, gather_seconds: float = GATHER_SECONDS) -> None:
        self._total = max(1, total_tokens)
        self._gather_seconds = gather_seconds
        self._held = 0
        self._queue: list[_Waiter] = []
        self._waiting = 0
        self._numbers = itertools.count()
        self._gathering = False  # a request waits for others before free places go out

    @property
    def total_tokens(self) -> int:
        return self._total

    @total_tokens.setter
    def total_tokens(self, value: int) -> None:
        self._total = max(1, value)
        self._hand_out()

    @property
    def held(self) -> int:
        """Places held right now."""
        return self._held

    @property
    def waiting(self) -> int:
        """Requests waiting for a place."""
        return self._waiting

    async def acquire(self, rank: int = 0) -> None:
        """Wait for a place (requests of a lower ``rank`` are served first).

        A blob's first request (``FIRST_REQUEST_RANK``) that finds a place free takes it
        without letting other tasks run first, so it goes out in the same step."""
        await anyio.lowlevel.checkpoint_if_cancelled()
        if self._held < self._total and rank == FIRST_REQUEST_RANK:  # ahead of any waiter
            self._held += 1
            return
        waiter = _Waiter(rank, next(self._numbers))
        heapq.heappush(self._queue, waiter)
        self._waiting += 1
        try:
            if self._held < self._total and not self._gathering:
                await self._gather()
            await waiter.event.wait()
        except BaseException:
            if waiter.granted:
                self.release()  # handed a place while being cancelled: pass it on
            else:
                waiter.gone = True
                self._waiting -= 1
            raise

    def release(self) -> None:
        """Give a place back; it goes to the best waiter, if any."""
        self._held -= 1
        self._hand_out()

    @contextlib.asynccontextmanager
    async def place(self, rank: int = 0) -> AsyncIterator[None]:
        """Hold a place for the duration of the block."""
        await self.acquire(rank)
        try:
            yield
        finally:
            self.release()

    async def _gather(self) -> None:
        """Let the requests of the next ``gather_seconds`` queue too, then hand out the
        free places by rank."""
        self._gathering = True
        try:
            await anyio.sleep(self._gather_seconds)
        finally:
            self._gathering = False
            self._hand_out()

    def _hand_out(self) -> None:
        while self._held < self._total and self._queue:
            waiter = heapq.heappop(self._queue)
            if waiter.gone:
                continue
            waiter.granted = True
            self._waiting -= 1
            self._held += 1
            waiter.event.set()
