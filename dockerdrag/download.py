"""Resumable, verified blob downloads into the blob store, with bounded fan-out.

How one blob is fetched (:meth:`BlobFetcher.fetch`):

* A descriptor claiming more than ``TransferOptions.max_blob_size`` bytes fails
  at once (:class:`InvalidManifestError`), before any lock or request.
* Under the blob's lock (per process and, with ``flock``, across processes) a
  blob already verified in the store is used as is: no request is made.
* Otherwise the download continues from what an earlier run left on disk
  (see :mod:`store` for the partial file and its ``.ranges`` sidecar); the
  hash state is rebuilt by re-reading those bytes. A complete partial is
  verified locally, without a request.
* Blobs up to ``TransferOptions.chunk_threshold`` bytes are streamed front to
  back into ``<hex>.partial`` and hashed as they are written. Larger blobs are
  fetched as ranged chunks in parallel, written at their offsets; the written
  ranges are recorded in the sidecar every ``TransferOptions.ranges_save_every``
  bytes and when
  a body ends or breaks, and the contiguous prefix is hashed in order (read back
  from disk) as it grows. The chunks are planned lazily, as they are taken, by at
  most ``concurrency`` tasks per blob. Both resume
  everything recorded: a chunked download resumes every finished range, not
  only the prefix.
* Answers: a 206 is accepted only if its ``Content-Range`` is exactly the
  range asked for and totals the descriptor size; a total other than the size
  is a :class:`SizeMismatchError` (the registry says what the blob really is,
  so a descriptor lying about its size fails on the first answer). A 200 to a
  ranged request, or another wrong ``Content-Range``, means ranges cannot be
  trusted: the partial is
  emptied and the blob is streamed whole, without ``Range``. A 416's body is
  never read: ``Content-Range: bytes */N`` with N != size is a
  :class:`SizeMismatchError`, anything else starts over. A ``Content-Length``
  other than the expected one fails at once (:class:`SizeMismatchError`).
  Nothing past the descriptor size is ever read.
* A body that breaks mid-way, or brings less than ``TransferOptions.low_speed``
  (see :mod:`low_speed`), is reconnected at the bytes already written (see
  :class:`~dockerdrag.retry.RetryPolicy` for the budget); the partial is
  kept whenever the download gives up or is cancelled.
* A blob whose size or sha256 is wrong at the end is emptied and fetched once
  more from zero; a second failure raises (and leaves no partial behind).
* Progress (``LayerProgress``): ``resuming`` once when bytes of an earlier run
  are kept, then ``downloading`` with ``done`` = the bytes on disk plus those
  read and not yet written, summed over all chunks, so it never goes down
  (only a fetch from zero after a failed check starts it again at 0).

Connections: each blob request, whole-blob stream or chunk, holds one token of
the fetcher's :class:`anyio.CapacityLimiter` while it is open, so layers and
chunks share the limit. The limit starts at ``INITIAL_CONNECTIONS`` and grows
towards ``concurrency`` only while requests wait and the open connections are
slow (:func:`next_connection_limit`): a fast link keeps few buffers in memory, a
link that caps each connection gets as many as it takes. No token is held while
waiting for a lock, for other chunks, or between reconnects, so the fan-out
cannot deadlock. Files: a blob opens its lock and partial files only once it
holds one of ``OPEN_BLOBS_PER_CONNECTION * concurrency`` places (taken before the
lock, never while holding a connection), so the descriptors of a pull stay
bounded however many layers it has.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import anyio
import anyio.abc

from .digest import Digest, VerifyingHasher
from .errors import (
    DigestMismatchError,
    InvalidManifestError,
    NetworkError,
    OutputError,
    SizeMismatchError,
    leaf_error,
)
from .events import LayerPhase, LayerProgress, ProgressCallback
from .low_speed import LowSpeedLimit, SpeedWatch
from .manifest import MAX_CONFIG_BYTES, Descriptor
from .osfiles import pread, pwrite_all
from .range_checks import RangeUnusable, accepted_body
from .reference import Reference
from .registry import RegistryClient
from .retry import RetryPolicy
from .store import BlobStore, ByteRanges, describe_os_error
from .transport import READ_BUFFER_BYTES, Response

log = logging.getLogger("dockerdrag")
T = TypeVar("T")

READ_CHUNK = 1 << 18  # 256 KiB blocks: measured, keeps peak RSS flat at little cost
HASH_STEP = 8 << 20  # bytes of a chunked blob's prefix hashed per worker-thread call
DISK_THREADS = 2
INITIAL_CONNECTIONS = 4
"""Blob connections a pull starts with; more are opened only while connections are slow."""
GROWTH_STEP = 4
OPEN_BLOBS_PER_CONNECTION = 2
"""Blobs with files open (lock, partial) at once, per connection of ``concurrency``.

A blob opens its files when it starts, not when it is queued: an image of thousands
of layers needs a few dozen descriptors, not two per layer. Twice the connections,
so a blob busy with its files (opening, the final fsync) leaves its connection to
another.
"""


def next_connection_limit(
    limit: int, ceiling: int, *, waiting: int, received: int, seconds: float, slow_rate: float
) -> int:
    """The connection limit after one look at the traffic of the last ``seconds``.

    It grows by ``GROWTH_STEP`` (to at most ``ceiling``) when requests are waiting
    for a connection and the busy ones carried less than ``slow_rate`` bytes per
    second each: a far registry, or a CDN or proxy
    that caps each connection. On a fast link a few connections already carry
    what the client can take, and each more one only costs memory.
    """
    if limit >= ceiling or waiting <= 0 or seconds <= 0:
        return min(limit, ceiling)
    if received / seconds / limit >= slow_rate:
        return limit
    return min(ceiling, limit + GROWTH_STEP)


DEFAULT_CONCURRENCY = 16
"""The most blob requests open at once per pull (whole layers and chunks of big ones).

A pull starts with ``INITIAL_CONNECTIONS`` and opens more only while they are slow.
Many registries sit behind CDNs or proxies where one connection is slow and many are
fast; measured on the benchmark's shaped link (10 MB/s per connection, +50 ms), the
1.07 GB image took 39 s with 3 connections, 16 s with 10 and 12 s with 16.
"""


@dataclass(frozen=True)
class TransferOptions:
    """How blobs travel: when to split a blob into parallel ranged chunks, and how.

    Blobs larger than ``chunk_threshold`` bytes are fetched in chunks of
    ``chunk_size`` bytes (the last may be shorter), at most ``concurrency``
    requests at a time across all layers and chunks.
    """

    chunk_threshold: int = 32 << 20
    chunk_size: int = 16 << 20
    small_blob: int = 4 << 20
    """Blobs up to this size do their file work on the event loop, not in a worker thread.

    Writing and hashing a block of a small blob takes about as long as the hop to a
    worker thread and back, and the whole blob a few milliseconds at most (measured:
    40 blobs of ~650 KB fetched in 161 ms this way, 205 ms with a hop per block).
    """

    max_blob_size: int = 1 << 40
    """A descriptor claiming more bytes than this (1 TiB) fails before any request."""
    low_speed: LowSpeedLimit | None = field(default_factory=LowSpeedLimit)
    """A blob body slower than this is reconnected, then fails (None: no limit)."""
    ranges_save_every: int = 8 << 20
    """A chunked blob's ranges sidecar is saved each time this many more bytes are written
    (and always when a body ends, breaks or is cancelled): after a crash, at most this
    much written data is fetched again."""
    slow_connection_rate: float = 32e6
    """Bytes per second per connection below which more connections are worth their memory
    (~0.5 MB each): the connection limit grows only while connections are this slow."""
    growth_check_seconds: float = 0.25
    """How often (seconds) the connection limit looks at the traffic to decide whether to grow."""

    def __post_init__(self) -> None:
        if self.chunk_size < 1 or self.chunk_threshold < 0:
            raise ValueError("chunk_size must be positive and chunk_threshold non-negative")
        if self.max_blob_size < 0:
            raise ValueError("max_blob_size must be non-negative")
        if self.ranges_save_every < 1 or self.growth_check_seconds <= 0:
            raise ValueError("ranges_save_every and growth_check_seconds must be positive")


class _BodyBroken(Exception):
    """A body ended or broke before its last byte; ``error`` says how."""

    def __init__(self, error: NetworkError) -> None:
        super().__init__(str(error))
        self.error = error


@dataclass
class _Cursor:
    """The next offset one stream writes to."""

    pos: int


class _Block:
    """One stream's bytes received and not yet written, in a buffer of fixed size.

    Allocated once per response and reused for every block, where a buffer grown
    chunk by chunk and freed after each write churned the heap: with 17 connections
    (big image, shaped link) the peak RSS is about 1 MB lower (54.2 against 55.1 MB,
    median of 7 alternating runs), at the same speed.
    """

    __slots__ = ("_buffer", "_filled")

    def __init__(self, capacity: int) -> None:
        self._buffer = bytearray(capacity)
        self._filled = 0

    def __len__(self) -> int:
        return self._filled

    def room(self) -> int:
        return len(self._buffer) - self._filled

    def add(self, chunk: bytes) -> None:
        end = self._filled + len(chunk)
        self._buffer[self._filled : end] = chunk
        self._filled = end

    def view(self) -> memoryview:
        """The filled bytes (valid until the next ``add``)."""
        return memoryview(self._buffer)[: self._filled]

    def clear(self) -> None:
        self._filled = 0


class _Reconnects:
    """The reconnect budget of one stream (a whole blob or one chunk) in one run."""

    def __init__(self, policy: RetryPolicy, offset: int) -> None:
        self.policy = policy
        self.count = 0
        self.fruitless = 0
        self._mark = (offset, time.monotonic())

    def delay_after(self, offset: int, error: NetworkError) -> float:
        """Seconds to wait before reconnecting at ``offset``; raise ``error`` when spent."""
        policy = self.policy
        mark_offset, mark_time = self._mark
        now = time.monotonic()
        progressed = (
            offset - mark_offset >= policy.reconnect_progress_bytes
            or now - mark_time >= policy.reconnect_progress_seconds
        )
        self._mark = (offset, now)
        self.count += 1
        self.fruitless = 0 if progressed else self.fruitless + 1
        if self.count > policy.max_reconnects or self.fruitless >= policy.attempts:
            raise error
        return 0.0 if progressed else policy.delay(self.fruitless - 1, None)


class BlobFetcher:
    """Fetch blobs into a :class:`BlobStore`, sharing one connection limit.

    ``concurrency`` bounds the blob requests open at once, whole blobs and
    chunks together, for every fetch made through this fetcher.
    """

    def __init__(
        self,
        client: RegistryClient,
        store: BlobStore,
        progress: ProgressCallback | None = None,
        *,
        concurrency: int = DEFAULT_CONCURRENCY,
        options: TransferOptions | None = None,
    ) -> None:
        self.client = client
        self.store = store
        self.progress = progress
        self.options = options or TransferOptions()
        self._concurrency = max(1, concurrency)
        self._limiter: anyio.CapacityLimiter | None = None
        self._open_blobs: anyio.CapacityLimiter | None = None
        self._disk_limiter: anyio.CapacityLimiter | None = None
        self._received = 0

    @property
    def concurrency(self) -> int:
        """How many blob requests may be open at once."""
        return self._concurrency

    @concurrency.setter
    def concurrency(self, value: int) -> None:
        self._concurrency = max(1, value)
        if self._limiter is not None:
            self._limiter.total_tokens = min(self._limiter.total_tokens, self._concurrency)
        if self._open_blobs is not None:
            self._open_blobs.total_tokens = OPEN_BLOBS_PER_CONNECTION * self._concurrency

    @property
    def limiter(self) -> anyio.CapacityLimiter:
        """The connection limit shared by all blob requests of this fetcher.

        It starts at ``INITIAL_CONNECTIONS`` (at most ``concurrency``) and
        :meth:`watch_connections` raises it towards ``concurrency`` while
        connections are slow.
        """
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(min(INITIAL_CONNECTIONS, self._concurrency))
        return self._limiter

    @property
    def open_blobs(self) -> anyio.CapacityLimiter:
        """The blobs that may have files open at once (see ``OPEN_BLOBS_PER_CONNECTION``)."""
        if self._open_blobs is None:
            self._open_blobs = anyio.CapacityLimiter(OPEN_BLOBS_PER_CONNECTION * self._concurrency)
        return self._open_blobs

    def note_received(self, size: int) -> None:
        """Count body bytes as they arrive (the connection watcher reads the count)."""
        self._received += size

    async def watch_connections(self) -> None:
        """Open more connections while every one is busy, work waits, and they are slow.

        Runs until cancelled. Each ``TransferOptions.growth_check_seconds`` it looks at the bytes
        received meanwhile; see :func:`next_connection_limit`. It never lowers the limit.
        """
        limiter = self.limiter
        mark_bytes, mark_time = self._received, time.monotonic()
        slow_before = False  # two slow looks in a row: the first may be connection set-up
        while limiter.total_tokens < self._concurrency:
            await anyio.sleep(self.options.growth_check_seconds)
            now = time.monotonic()
            limit = int(limiter.total_tokens)
            grown = next_connection_limit(
                limit,
                self._concurrency,
                waiting=limiter.statistics().tasks_waiting,
                received=self._received - mark_bytes,
                seconds=now - mark_time,
                slow_rate=self.options.slow_connection_rate,
            )
            slow = grown > limit
            if slow and slow_before:
                log.debug("blob connections: %d -> %d (slow connections)", limit, grown)
                limiter.total_tokens = grown
                slow = False
            slow_before = slow
            mark_bytes, mark_time = self._received, now

    @property
    def disk_limiter(self) -> anyio.CapacityLimiter:
        """Worker threads that write and hash blocks at once (not one per connection).

        Each thread costs memory (a stack, malloc state); two keep both cores busy.
        """
        if self._disk_limiter is None:
            self._disk_limiter = anyio.CapacityLimiter(DISK_THREADS)
        return self._disk_limiter

    @property
    def retry(self) -> RetryPolicy:
        """The transport's retry policy (also the reconnect budget)."""
        return self.client.transport.config.retry

    def emit(self, descriptor: Descriptor, phase: LayerPhase, done: int, resumed: int = 0) -> None:
        """Report one blob's progress to the callback, if any."""
        if self.progress is not None:
            self.progress(LayerProgress(descriptor.digest, phase, done, descriptor.size, resumed))

    async def fetch(
        self, reference: Reference, descriptor: Descriptor, *, report: bool = True
    ) -> Path:
        """Make sure the verified blob is in the store; return its path.

        ``report=False`` keeps the blob out of the progress events (the config).
        """
        path, _downloaded = await self.fetch_noting_download(reference, descriptor, report=report)
        return path

    async def fetch_noting_download(
        self, reference: Reference, descriptor: Descriptor, *, report: bool = True
    ) -> tuple[Path, bool]:
        """As :meth:`fetch`, and whether the blob was downloaded (and so verified) just now.

        False means it was found in the store, where it was verified by an earlier run.
        """
        digest = descriptor.digest
        if descriptor.size > self.options.max_blob_size:
            raise InvalidManifestError(
                f"blob {digest} claims {descriptor.size} bytes, more than the "
                f"{self.options.max_blob_size} a blob may have (TransferOptions.max_blob_size)"
            )
        if self.store.read_only and self.store.has(digest, descriptor.size):
            # Nothing changes a read-only cache: its verified blobs need no lock.
            if report:
                self.emit(descriptor, LayerPhase.EXISTS, descriptor.size)
            return self.store.blob_path(digest), False
        store = self.store.for_writing()
        async with self.open_blobs, store.lock(digest):
            if store.has(digest, descriptor.size):
                store.note_use(digest)
                if report:
                    self.emit(descriptor, LayerPhase.EXISTS, descriptor.size)
                return store.blob_path(digest), False
            try:
                return await self._download_locked(store, reference, descriptor, report), True
            except OSError as exc:
                raise OutputError(
                    describe_os_error(exc, f"writing blob {digest.short} to the cache")
                ) from exc

    async def fetch_bytes(
        self, reference: Reference, descriptor: Descriptor, limit: int = MAX_CONFIG_BYTES
    ) -> bytes:
        """A small blob (the config) through the cache, read into memory and re-verified."""
        if descriptor.size > limit:
            raise InvalidManifestError(
                f"blob {descriptor.digest} is {descriptor.size} bytes, over the {limit}-byte limit"
            )
        for _ in range(2):
            path = await self.fetch(reference, descriptor, report=False)
            raw = await anyio.to_thread.run_sync(path.read_bytes, limiter=self.disk_limiter)
            if Digest.of(raw) == descriptor.digest:
                return raw
            log.warning("cached blob %s is corrupt; fetching it again", descriptor.digest.short)
            if path == self.store.blob_path(descriptor.digest):
                self.store.forget(descriptor.digest)
            else:
                path.unlink(missing_ok=True)
        raise DigestMismatchError(f"blob {descriptor.digest} keeps failing verification")

    async def _download_locked(
        self, store: BlobStore, reference: Reference, descriptor: Descriptor, report: bool
    ) -> Path:
        download = _BlobDownload(self, store, reference, descriptor, report)
        await download.run()
        # Not on the disk limiter: an fsync may wait on the disk for a while, and the
        # other downloads' block writes must not queue behind it.
        path = await anyio.to_thread.run_sync(store.commit, descriptor.digest, descriptor.size)
        if report:
            self.emit(descriptor, LayerPhase.COMPLETE, descriptor.size, download.resumed)
        return path


class _BlobDownload:
    """One blob's download within one run (the caller holds the blob's lock)."""

    def __init__(
        self,
        fetcher: BlobFetcher,
        store: BlobStore,
        reference: Reference,
        descriptor: Descriptor,
        report: bool,
    ) -> None:
        self.fetcher = fetcher
        self.store = store
        self.reference = reference
        self.descriptor = descriptor
        self.digest = descriptor.digest
        self.size = descriptor.size
        self.report = report
        self.use_ranges = True
        self.etag: str | None = None
        self.fd = -1
        self.ranges = ByteRanges()
        self.hasher = VerifyingHasher(self.digest, self.size)
        self.hashed = 0
        self.resumed = 0  # bytes an earlier run left on disk that this download keeps
        self._resume_announced = False
        self._in_flight = 0  # bytes read from bodies and not yet written, over all streams
        self._hashing = False
        self._unsaved_bytes = 0  # written by chunks since the ranges sidecar was saved
        self._save_every = fetcher.options.ranges_save_every
        self._save_pending = False  # a background save of the sidecar is on its way
        self._sidecar_lock = anyio.Lock()  # one sidecar write at a time
        self._chunk_group: anyio.abc.TaskGroup | None = None

    # ------------------------------------------------------------------ the whole blob

    async def _disk(self, work: Callable[..., T], *args: object) -> T:
        """Run file work: inline for a small blob, else in a disk worker thread."""
        if self.size <= self.fetcher.options.small_blob:
            return work(*args)
        return await anyio.to_thread.run_sync(work, *args, limiter=self.fetcher.disk_limiter)

    async def run(self) -> None:
        """Download until the partial holds the verified blob (or raise)."""
        self.fd = await self._disk(self._open_partial)
        try:
            await self._download_verified()
        finally:
            os.close(self.fd)

    async def _download_verified(self) -> None:
        for second_try in (False, True):
            await self._download()
            self._emit(LayerPhase.VERIFYING)
            try:
                self.hasher.verify()
                return
            except (DigestMismatchError, SizeMismatchError) as exc:
                await self._disk(self._restart)
                if second_try:
                    raise
                log.info("blob %s: %s; fetching it again from the start", self.digest.short, exc)

    async def _download(self) -> None:
        if self.size > self.fetcher.options.chunk_threshold and self.use_ranges:
            try:
                await self._chunked()
                return
            except RangeUnusable as exc:
                log.info("blob %s: %s; fetching it whole", self.digest.short, exc)
                self.use_ranges = False
                await self._disk(self._restart)
        await self._stream()

    def _open_partial(self) -> int:
        """Load what earlier runs left on disk, then open the partial file."""
        self.ranges = self.store.load_ranges(self.digest, self.size)
        return self.store.open_partial(self.digest)

    def _announce_resume(self) -> None:
        """Once the bytes kept from an earlier run are known: a ``resuming`` event, if any."""
        if self._resume_announced:
            return
        self._resume_announced = True
        self.resumed = self.ranges.total()
        if self.resumed:
            log.info(
                "blob %s: resuming with %d of %d bytes on disk",
                self.digest.short,
                self.resumed,
                self.size,
            )
            self._emit(LayerPhase.RESUMING)

    def _restart(self) -> None:
        """Throw every byte on disk away: the next write starts a new blob at 0."""
        os.ftruncate(self.fd, 0)
        self.store.forget_ranges(self.digest)
        self.ranges = ByteRanges()
        self.hasher = VerifyingHasher(self.digest, self.size)
        self.hashed = 0
        self.resumed = 0

    def _emit(self, phase: LayerPhase) -> None:
        """Report the blob's bytes: those on disk plus those read and not written yet.

        Every stream (the whole blob, or each chunk) adds what it reads to
        ``_in_flight`` and moves it to ``ranges`` when it writes it, with no await in
        between, so the sum over all chunks never goes down while the partial is kept.
        """
        if self.report:
            done = min(self.size, self.ranges.total() + self._in_flight)
            self.fetcher.emit(self.descriptor, phase, done, self.resumed)

    # ------------------------------------------------------------------ one stream

    async def _stream(self) -> None:
        """Fetch the rest of the blob front to back, reconnecting where it broke."""
        await self._disk(self._prepare_stream)
        self._announce_resume()
        cursor = _Cursor(self.hashed)
        budget = _Reconnects(self.fetcher.retry, cursor.pos)
        while cursor.pos < self.size:
            try:
                async with self.fetcher.limiter:
                    await self._stream_once(cursor)
            except RangeUnusable as exc:
                log.info("blob %s: %s; fetching it whole", self.digest.short, exc)
                self.use_ranges = False
                await self._disk(self._restart)
                cursor.pos = 0
            except _BodyBroken as broken:
                delay = budget.delay_after(cursor.pos, broken.error)
                log.info(
                    "blob %s: %s; reconnecting at byte %d", self.digest.short, broken, cursor.pos
                )
                await anyio.sleep(delay)

    def _prepare_stream(self) -> None:
        """Keep only the contiguous prefix on disk (a stream appends) and hash it."""
        prefix = self.ranges.prefix()
        if self.ranges.total() != prefix or self.store.ranges_path(self.digest).exists():
            os.ftruncate(self.fd, prefix)
            self.store.forget_ranges(self.digest)
            self.ranges = ByteRanges([(0, prefix)])
        self._hash_upto(prefix)

    async def _stream_once(self, cursor: _Cursor) -> None:
        async with self._open(cursor.pos, self.size) as (response, body):
            if body.start != cursor.pos:
                log.info("blob %s: the registry ignored Range; starting over", self.digest.short)
                self.use_ranges = False
                await self._disk(self._restart)
                cursor.pos = 0
            self._emit(LayerPhase.DOWNLOADING)
            await self._pump(response, cursor, self.size, inline_hash=True)

    # ------------------------------------------------------------------ parallel chunks

    async def _chunked(self) -> None:
        """Fetch the missing ranges as parallel chunks, then hash what is not hashed yet.

        The first chunk alone finds out whether the registry honours ranges; then up
        to ``concurrency`` tasks take the next chunk from one lazy plan, so a blob of
        any claimed size costs the same memory.
        """
        await self._save_ranges()
        self._announce_resume()
        jobs = self._jobs()
        first = next(jobs, None)
        if first is not None:
            ranges_work = anyio.Event()
            try:
                async with anyio.create_task_group() as group:
                    self._chunk_group = group  # the prefix hasher runs beside the chunks
                    group.start_soon(self._chunks, first, jobs, None, ranges_work)
                    for _ in range(self.fetcher.concurrency - 1):
                        group.start_soon(self._chunks, None, jobs, ranges_work, None)
            except BaseExceptionGroup as errors:
                raise leaf_error(errors) from None
            finally:
                self._chunk_group = None
                with anyio.CancelScope(shield=True):
                    await self._save_ranges()
        await self._advance_hash()

    def _jobs(self) -> Iterator[tuple[int, int]]:
        """The ``[start, end)`` of every chunk still missing, in order, planned as taken."""
        step = self.fetcher.options.chunk_size
        for lo, end in self.ranges.gaps(self.size):
            for start in range(lo, end, step):
                yield start, min(start + step, end)

    async def _chunks(
        self,
        first: tuple[int, int] | None,
        jobs: Iterator[tuple[int, int]],
        wait_for: anyio.Event | None,
        announce: anyio.Event | None,
    ) -> None:
        """Fetch ``first`` (announcing that ranges work), then chunks from ``jobs`` until none
        is left (after ``wait_for``)."""
        if first is not None:
            await self._chunk(first, announce)
        if wait_for is not None:
            await wait_for.wait()
        for job in jobs:  # one plan shared by every task: each chunk is taken once
            await self._chunk(job, None)

    async def _chunk(self, job: tuple[int, int], announce: anyio.Event | None) -> None:
        """Fetch bytes ``[start, end)``; set ``announce`` once the registry honoured the range."""
        start, end = job
        cursor = _Cursor(start)
        budget = _Reconnects(self.fetcher.retry, start)
        while cursor.pos < end:
            try:
                async with self.fetcher.limiter, self._open(cursor.pos, end) as (response, body):
                    if body != range(cursor.pos, end):
                        raise RangeUnusable("the registry ignored Range")
                    if announce is not None:
                        announce.set()
                    self._emit(LayerPhase.DOWNLOADING)
                    await self._pump(response, cursor, end, inline_hash=False)
            except _BodyBroken as broken:
                delay = budget.delay_after(cursor.pos, broken.error)
                log.info(
                    "blob %s: %s; reconnecting at byte %d", self.digest.short, broken, cursor.pos
                )
                await anyio.sleep(delay)

    async def _save_ranges(self) -> None:
        """Record the ranges written so far in the sidecar, from a disk thread.

        A save takes a few ms (a new file renamed over the old one, while the disk is
        busy with the blob); on the event loop, the ~130 saves of a 1 GB pull stalled
        every connection for 0.35 s. Saves of one blob run one at a time, each writing
        a snapshot of the ranges taken when it starts.
        """
        self._unsaved_bytes = 0
        async with self._sidecar_lock:
            self._save_pending = False
            snapshot = ByteRanges(self.ranges.as_list())
            await anyio.to_thread.run_sync(
                self.store.save_ranges,
                self.digest,
                self.size,
                snapshot,
                limiter=self.fetcher.disk_limiter,
            )

    async def _advance_hash(self) -> None:
        """Hash the contiguous prefix as far as it reaches (one hasher at a time)."""
        if self._hashing:
            return
        self._hashing = True
        try:
            while (frontier := self.ranges.prefix()) > self.hashed:
                # In steps, so the block writes of other connections get a thread between.
                step_end = min(frontier, self.hashed + HASH_STEP)
                await anyio.to_thread.run_sync(
                    self._hash_upto, step_end, limiter=self.fetcher.disk_limiter
                )
        finally:
            self._hashing = False

    def _hash_upto(self, end: int) -> None:
        """Feed the hasher the bytes on disk from where it stopped up to ``end``."""
        while self.hashed < end:
            block = pread(self.fd, min(READ_CHUNK, end - self.hashed), self.hashed)
            if not block:
                raise SizeMismatchError(f"partial blob {self.digest.short} is shorter than noted")
            self.hasher.update(block)
            self.hashed += len(block)

    # ------------------------------------------------------------------ requests and bodies

    @contextlib.asynccontextmanager
    async def _open(self, start: int, end: int) -> AsyncIterator[tuple[Response, range]]:
        """Ask for bytes ``[start, end)``; yield the response and the byte range its body holds.

        Without usable ranges the whole blob is asked for (its body is ``range(0, size)``).
        """
        ranged = self.use_ranges and (start > 0 or end < self.size)
        async with self.fetcher.client.open_blob(
            self.reference,
            self.digest,
            start if ranged else 0,
            end if ranged and end < self.size else None,
            if_range=self.etag if ranged else None,
            foreign_url=self._foreign_url(),
        ) as response:
            body = accepted_body(
                response.status,
                response.headers,
                range(start, end) if ranged else None,
                self.size,
                self.digest,
            )
            etag = response.headers.get("ETag")
            if self.etag is None and etag and not etag.startswith("W/"):
                self.etag = etag
            yield response, body

    def _foreign_url(self) -> str | None:
        """Where a foreign layer lives (None: the registry serves it like any blob)."""
        descriptor = self.descriptor
        return descriptor.urls[0] if descriptor.is_foreign and descriptor.urls else None

    async def _pump(
        self, response: Response, cursor: _Cursor, end: int, *, inline_hash: bool
    ) -> None:
        """Copy the body into the partial from ``cursor.pos`` up to ``end``.

        Bytes are written in blocks of up to READ_CHUNK; whatever arrived before a
        break or a cancellation is written too, so it is never fetched again.
        """
        buffer = _Block(min(READ_CHUNK, end - cursor.pos))
        speed = SpeedWatch(self.fetcher.options.low_speed, f"blob {self.digest.short}")
        try:
            with speed:  # too slow: a NetworkError, so a broken body
                while cursor.pos + len(buffer) < end:
                    # No read larger than the transport's buffer: aiohttp lets a response
                    # buffer twice the largest read asked of it. The block never outgrows
                    # READ_CHUNK.
                    want = min(READ_BUFFER_BYTES, buffer.room(), end - cursor.pos - len(buffer))
                    chunk = await response.read_chunk(want)
                    if not chunk:
                        break
                    speed.note(len(chunk))
                    self.fetcher.note_received(len(chunk))
                    buffer.add(chunk)
                    self._in_flight += len(chunk)
                    del chunk  # not held (a second block's worth) while the block is written
                    if not buffer.room():
                        await self._store_block(cursor, buffer, inline_hash)  # reports progress
                    else:
                        self._emit(LayerPhase.DOWNLOADING)
            await self._store_block(cursor, buffer, inline_hash)
        except NetworkError as exc:
            await self._store_block(cursor, buffer, inline_hash, catch_up=False)
            raise _BodyBroken(exc) from exc
        except anyio.get_cancelled_exc_class():
            with anyio.CancelScope(shield=True):
                await self._store_block(cursor, buffer, inline_hash, catch_up=False)
            raise
        finally:
            self._in_flight -= len(buffer)  # a block that could not be written is dropped
        if cursor.pos < end:
            raise _BodyBroken(
                NetworkError(
                    f"blob {self.digest.short}: the body ended at byte {cursor.pos} "
                    f"instead of {end}"
                )
            )

    async def _store_block(
        self, cursor: _Cursor, buffer: _Block, inline_hash: bool, *, catch_up: bool = True
    ) -> None:
        """Write the buffered bytes at the cursor, note them, and empty the buffer.

        The bookkeeping follows the write with no await in between, so a
        cancellation either finds the buffer unwritten (and it is written by the
        caller's shielded cleanup) or written, noted and empty. A stream hashes
        its blocks as it writes them (``inline_hash``); chunks record their
        ranges and, with ``catch_up``, hash the grown prefix.
        """
        if not buffer:
            return
        pos = cursor.pos
        await self._disk(self._write_block, pos, buffer.view(), inline_hash)
        cursor.pos = pos + len(buffer)
        self._in_flight -= len(buffer)
        buffer.clear()
        self.ranges.add(pos, cursor.pos)
        self._emit(LayerPhase.DOWNLOADING)
        if not inline_hash:
            # The sidecar may lag (bytes it omits are fetched again after a crash), so it is
            # saved every few MiB, and always on the way out of a broken or cancelled body.
            self._unsaved_bytes += cursor.pos - pos
            if not catch_up:  # a broken or cancelled body: record all of it now
                await self._save_ranges()
            elif self._chunk_group is not None:
                # In tasks of their own: this connection goes on reading meanwhile.
                if self._unsaved_bytes >= self._save_every and not self._save_pending:
                    self._save_pending = True
                    self._chunk_group.start_soon(self._save_ranges)
                if not self._hashing:
                    self._chunk_group.start_soon(self._advance_hash)

    def _write_block(self, pos: int, block: memoryview, inline_hash: bool) -> None:
        """Write ``block`` at ``pos`` (the caller does not touch it meanwhile)."""
        with block as view:
            pwrite_all(self.fd, view, pos)
            if inline_hash and pos == self.hashed:  # a repeated write is not hashed twice
                self.hasher.update(view)
                self.hashed += len(view)


async def fetch_all(
    fetcher: BlobFetcher,
    reference: Reference,
    descriptors: Sequence[Descriptor],
    concurrency: int | None = None,
    on_ready: Callable[[Digest, Path, bool], None] | None = None,
) -> dict[Digest, Path]:
    """Fetch every distinct blob of ``descriptors`` into the store; return their paths.

    All blobs start at once, in the order given (so put first what is needed
    first); the fetcher's limiter bounds the open requests (``concurrency``, when
    given, resets that limit). ``on_ready`` hears of each blob as soon as it is
    verified in the store, with its path and whether it was downloaded (and so
    hashed) by this call rather than found in the store.
    """
    if concurrency is not None:
        fetcher.concurrency = concurrency
    paths: dict[Digest, Path] = {}
    unique = list({d.digest: d for d in descriptors}.values())

    async def one(descriptor: Descriptor) -> None:
        path, downloaded = await fetcher.fetch_noting_download(reference, descriptor)
        paths[descriptor.digest] = path
        if on_ready is not None:
            on_ready(descriptor.digest, path, downloaded)

    try:
        async with anyio.create_task_group() as watching:
            watching.start_soon(fetcher.watch_connections)
            async with anyio.create_task_group() as group:
                for descriptor in unique:
                    fetcher.emit(descriptor, LayerPhase.WAITING, 0)
                    group.start_soon(one, descriptor)
            watching.cancel_scope.cancel()
    except BaseExceptionGroup as group_error:
        raise leaf_error(group_error) from None
    return paths
