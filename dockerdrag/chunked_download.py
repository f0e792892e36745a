"""A big blob fetched as ranged chunks in parallel: the plan, the splits, the prefix hash.

The missing ranges are cut into chunks of ``TransferOptions.chunk_size`` (the first
ones of the blob growing to that size, ``TransferOptions.chunk_ramp``), or with ``whole``
each missing range is one chunk (a fresh blob: one request for all of it), and planned
lazily, as they are taken, by at most ``concurrency`` tasks; each chunk is written at
its offset. Once no chunk is left to start, a task waits for a connection (behind every
request of the pull still waiting, see :func:`~dockerdrag.connection_limit.spare_rank`)
and takes the second half of the chunk that would take the longest to finish
(:mod:`chunk_split`), as long as one has at least twice ``TransferOptions.split_min_bytes``
left and would take at least ``TransferOptions.split_min_seconds`` more at its rate so
far (with ``split_max_rate``, only one slower than that), and the registry answered the
first request with a 206 (a 200 to ``bytes=0-`` may mean that it ignores ranges). Once
every chunk of the blob is in, the connections still waiting for a chunk to split
stop waiting, so the blob is verified at once rather than once every other request of the
pull has had its connection. The written ranges are recorded in the sidecar
(:mod:`~dockerdrag.ranges_sidecar`); with ``whole``, a blob whose bytes on disk are a
prefix keeps none until a split. A block that continues the hashed prefix is hashed as
it is written; bytes that become contiguous only when an earlier chunk fills the gap
before them are read back from disk and hashed in order.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Iterator
from contextlib import AbstractAsyncContextManager
from typing import Protocol

import anyio
import anyio.abc

from .blob_body import BodyBroken, Cursor, Reconnects
from .chunk_split import OpenChunks
from .connection_limit import FIRST_REQUEST_RANK, ConnectionLimit, spare_rank
from .digest import Digest
from .errors import leaf_error
from .events import LayerPhase
from .partial_blob import PartialBlob
from .range_checks import RangeUnusable
from .ranges_sidecar import RangesSidecar
from .retry import RetryPolicy
from .store import BlobStore
from .transport import Response

log = logging.getLogger("dockerdrag")

HASH_STEP = 8 << 20  # bytes of a chunked blob's prefix hashed per worker-thread call


class ChunkSource(Protocol):
    """What chunks need of their blob's requests and bodies (``blob_bodies.BodyPump``)."""

    digest: Digest
    size: int
    partial: PartialBlob

    def open(
        self, start: int, end: int, *, ranged: bool = False
    ) -> AbstractAsyncContextManager[tuple[Response, range]]:
        """Ask for bytes ``[start, end)`` (with ``ranged``, with ``Range`` even for the
        whole blob); the response and the byte range its body holds."""

    async def pump(
        self, response: Response, cursor: Cursor, chunks: ChunkedDownload | None
    ) -> None:
        """Copy the body into the partial from ``cursor.pos`` up to ``cursor.end``."""

    def emit(self, phase: LayerPhase) -> None:
        """Report the blob's progress."""

    def announce_resume(self) -> None:
        """Report the bytes kept from an earlier run, once."""


class ChunkedDownload:
    """The parallel chunks of one blob in one run, and the sidecar and hash that follow them."""

    def __init__(
        self,
        blob: ChunkSource,
        store: BlobStore,
        *,
        limiter: ConnectionLimit,
        rank: int,
        disk_limiter: anyio.CapacityLimiter,
        retry: RetryPolicy,
        concurrency: int,
        chunk_size: int,
        chunk_ramp: int,
        save_every: int,
        split_min: int,
        split_min_seconds: float,
        whole: bool = False,
        split_max_rate: float | None = None,
    ) -> None:
        self._blob = blob
        self._limiter = limiter
        self._rank = rank
        self._disk_limiter = disk_limiter
        self._retry = retry
        self._concurrency = concurrency
        self._whole = whole
        if whole:
            chunk_size, chunk_ramp = blob.size, 1
        self._chunk_size = chunk_size
        self._ramp_step = max(1, chunk_size // max(1, chunk_ramp))
        self._open = OpenChunks(split_min, split_min_seconds, max_rate=split_max_rate)
        self._sidecar = RangesSidecar(
            store, blob.digest, blob.size, disk_limiter=disk_limiter, save_every=save_every
        )
        self._ranges_proven = False  # a 206 came: a split may ask for a range
        self._hashing = False
        self._group: anyio.abc.TaskGroup | None = None
        self._fetching = 0  # chunks (and split-off halves) being fetched
        self._planned_all = False  # every chunk of the plan was taken
        self._spare_waits: set[anyio.CancelScope] = set()  # waits for spare work

    async def run(self) -> None:
        """Fetch the missing ranges as parallel chunks, then hash what is not hashed yet.

        The first chunk alone finds out whether the registry honours ranges
        (:class:`RangeUnusable` if not); then up to ``concurrency`` tasks take the next
        chunk from one lazy plan, so a blob of any claimed size costs the same memory.
        """
        partial = self._blob.partial
        if self._whole and partial.ranges.total() == partial.ranges.prefix():
            # One body continues the prefix: no sidecar until a split writes elsewhere.
            await anyio.to_thread.run_sync(partial.keep_prefix, limiter=self._disk_limiter)
            self._sidecar.kept = False
        await self.save_ranges()
        self._blob.announce_resume()
        jobs = self._jobs()
        first = next(jobs, None)
        if first is not None:
            ranges_work = anyio.Event()
            try:
                async with anyio.create_task_group() as group:
                    self._group = group  # the prefix hasher runs beside the chunks
                    group.start_soon(self._chunks, first, jobs, None, ranges_work)
                    # Twice the connections: while this blob holds every place it may get,
                    # it still has requests waiting, so a place it frees goes to it again
                    # rather than to a blob of a later rank.
                    for _ in range(2 * self._concurrency - 1):
                        group.start_soon(self._chunks, None, jobs, ranges_work, None)
            except BaseExceptionGroup as errors:
                raise leaf_error(errors) from None
            finally:
                self._group = None
                with anyio.CancelScope(shield=True):
                    await self.save_ranges()
        await self._advance_hash()

    def after_block(self, written: int) -> None:
        """Note ``written`` more bytes on disk: start a sidecar save every few MiB, and the
        prefix hasher, each in a task of its own (the connection goes on reading meanwhile).

        A block that continued the hashed prefix was hashed as it was written: the hasher
        starts only for bytes that it made contiguous. A broken or cancelled body calls
        :meth:`save_ranges` instead.
        """
        if self._group is None:
            return
        if self._sidecar.note_written(written):
            self._group.start_soon(self.save_ranges)
        partial = self._blob.partial
        if not self._hashing and partial.ranges.prefix() > partial.hashed:
            self._group.start_soon(self._advance_hash)

    async def save_ranges(self) -> None:
        """Record the ranges written so far in the sidecar, if it is kept
        (:class:`~dockerdrag.ranges_sidecar.RangesSidecar`)."""
        await self._sidecar.save(self._blob.partial.ranges)

    def _jobs(self) -> Iterator[tuple[int, int]]:
        """The ``[start, end)`` of every chunk still missing, in order, planned as taken."""
        for lo, end in self._blob.partial.ranges.gaps(self._blob.size):
            start = lo
            while start < end:
                stop = min(start + self._chunk_at(start), end)
                yield start, stop
                start = stop

    def _chunk_at(self, offset: int) -> int:
        """The size of the chunk that starts at ``offset``: the ramp's ``k + 1`` steps for
        the ``k``-th chunk of the blob (which starts ``k (k + 1) / 2`` steps into it), up to
        the chunk size."""
        step = self._ramp_step
        k = (math.isqrt(8 * (offset // step) + 1) - 1) // 2
        return min(self._chunk_size, (k + 1) * step)

    async def _chunks(
        self,
        first: tuple[int, int] | None,
        jobs: Iterator[tuple[int, int]],
        wait_for: anyio.Event | None,
        announce: anyio.Event | None,
    ) -> None:
        """Fetch ``first`` (announcing that ranges work), then chunks from ``jobs`` until none
        is left (after ``wait_for``), then halves of the chunks that straggle."""
        if first is not None:
            await self._chunk(Cursor(*first), announce)
        if wait_for is not None:
            await wait_for.wait()
        for start, end in jobs:  # one plan shared by every task: each chunk is taken once
            await self._chunk(Cursor(start, end), None)
        self._planned_all = True
        while self._ranges_proven:
            # A connection first, then the split: the half taken is fetched at once. It
            # waits behind every request still to start (a split loses bytes in flight).
            connected = False
            with self._while_chunks_arrive():
                await self._limiter.acquire(spare_rank(self._rank))
                connected = True
            if not connected:
                return
            rest = self._open.split()
            if rest is None:
                self._limiter.release()
                # A chunk whose rate cannot be told yet may still turn out to straggle.
                wait = self._open.seconds_until_judged()
                if wait is None:
                    return
                with self._while_chunks_arrive():
                    await anyio.sleep(wait)
                continue
            log.debug(
                "blob %s: bytes %d-%d split off a straggling chunk",
                self._blob.digest.short,
                rest.pos,
                rest.end,
            )
            try:
                await self._sidecar.keep(self._blob.partial.ranges)
            except BaseException:
                self._limiter.release()
                raise
            await self._chunk(rest, None, connected=True)

    @contextlib.contextmanager
    def _while_chunks_arrive(self) -> Iterator[None]:
        """A wait for spare work, ended (cancelled) once no chunk is left to arrive: every
        chunk of the plan was taken and none is being fetched (nothing can be split)."""
        scope = anyio.CancelScope()
        if self._planned_all and not self._fetching:
            scope.cancel()
        self._spare_waits.add(scope)
        try:
            with scope:
                yield
        finally:
            self._spare_waits.discard(scope)

    async def _chunk(
        self, cursor: Cursor, announce: anyio.Event | None, *, connected: bool = False
    ) -> None:
        """Fetch bytes ``[cursor.pos, cursor.end)``; set ``announce`` once the registry
        honoured the range. ``connected``: the caller holds a connection place for the
        first request (and it is released with that request)."""
        budget = Reconnects(self._retry, cursor.pos)
        self._fetching += 1
        try:
            while cursor.pos < cursor.end:
                try:
                    await self._request(cursor, announce, connected)
                except BodyBroken as broken:
                    await budget.wait_to_reconnect(cursor.pos, broken, self._blob.digest.short)
                connected = False
        finally:
            self._fetching -= 1
            if self._planned_all and not self._fetching:
                for scope in self._spare_waits:
                    scope.cancel()

    async def _request(self, cursor: Cursor, announce: anyio.Event | None, connected: bool) -> None:
        """One request for the rest of the chunk, on a connection place held until it ends."""
        blob = self._blob
        if not connected:
            # The first chunk finds out whether ranges work: it goes with every blob's first.
            # The others rank by where their bytes fall in the order the writer reads them.
            await self._limiter.acquire(FIRST_REQUEST_RANK if announce else self._rank + cursor.pos)
        try:
            asked = range(cursor.pos, cursor.end)  # the end may move while the request is sent
            async with blob.open(asked.start, asked.stop, ranged=True) as (response, body):
                if body != asked:
                    raise RangeUnusable("the registry ignored Range")
                if announce is not None:
                    self._ranges_proven = response.status == 206
                    announce.set()
                blob.emit(LayerPhase.DOWNLOADING)
                with self._open.receiving(cursor):
                    await blob.pump(response, cursor, self)
        finally:
            self._limiter.release()

    async def _advance_hash(self) -> None:
        """Hash the contiguous prefix as far as it reaches (one hasher at a time)."""
        if self._hashing:
            return
        self._hashing = True
        partial = self._blob.partial
        try:
            while (frontier := partial.ranges.prefix()) > partial.hashed:
                # In steps, so the block writes of other connections get a thread between.
                step_end = min(frontier, partial.hashed + HASH_STEP)
                await anyio.to_thread.run_sync(
                    partial.hash_upto, step_end, limiter=self._disk_limiter
                )
        finally:
            self._hashing = False
