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
  fetched as ranged chunks in parallel, written at their offsets (once none is left
  to start, an idle connection takes the second half of a straggling chunk); the written
  ranges are recorded in the sidecar every ``TransferOptions.ranges_save_every``
  bytes and when
  a body ends or breaks, and the contiguous prefix is hashed in order as it grows (as
  each block is written where it continues the prefix, else read back from disk). The
  chunks are planned lazily, as they are taken, by at most ``concurrency`` tasks per
  blob. With ``TransferOptions.whole_blobs`` (the default, any format) each missing
  range is one chunk, split only while it comes slower than
  ``TransferOptions.slow_connection_rate``: over a fast link a big blob is one request,
  hashed as it is written (a blob that starts once the link proved slow, a far registry
  or slow connections, comes in ranked chunks). Both resume
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

Connections: each blob request, whole-blob stream or chunk, holds one place of
the fetcher's :class:`~dockerdrag.connection_limit.ConnectionLimit` while it is open,
so layers and chunks share the limit; a freed place goes to the waiting request for
the bytes needed first (its rank: where they fall in the order the writer reads them,
:func:`fetch_all`). The limit starts at
``INITIAL_CONNECTIONS`` and doubles towards ``concurrency`` while requests wait and
the open connections are slow (:mod:`connection_growth`): a fast link keeps few buffers
in memory, a link that caps each connection gets as many as it takes within a few looks;
it goes to ``concurrency`` at once when the manifest took long to be answered
(:meth:`BlobFetcher.expect_layers`, which also opens the connections the layers will take
while the config comes) or the config (fetched through :meth:`BlobFetcher.fetch_bytes`)
took long to come, from a far registry.
No place is held while waiting for a lock, for other chunks, or between reconnects, so
the fan-out cannot deadlock. Files: a blob opens
its lock and partial files only once it holds one of ``OPEN_BLOBS_PER_CONNECTION *
concurrency`` places (taken before the lock, never while holding a connection), so
the descriptors of a pull stay bounded however many layers it has. A free open-blob
place, and a free connection place for a blob's first request, are taken without letting
other tasks run (:func:`_open_blob_place`, :meth:`ConnectionLimit.acquire`): the blobs of
:func:`fetch_all` start together, and a step that let the others run would have every one
of them make its files before the first request goes out.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from pathlib import Path

import anyio

from .blob_download import BlobDownload
from .connection_growth import ConnectionGrowth
from .connection_limit import ConnectionLimit
from .digest import Digest
from .disk_threads import DiskThreads
from .errors import DigestMismatchError, InvalidManifestError, OutputError, leaf_error
from .events import LayerPhase, LayerProgress, ProgressCallback
from .image_config import MAX_CONFIG_BYTES
from .manifest import Descriptor
from .osfiles import renames_open_files
from .reference import Reference
from .registry import RegistryClient
from .retry import RetryPolicy
from .store import BlobStore, describe_os_error
from .transfer_options import TransferOptions as TransferOptions

log = logging.getLogger("dockerdrag")

DISK_THREADS = 2
INITIAL_CONNECTIONS = 6
"""Blob connections a pull starts with; more are opened only while connections are slow.
Six, not four: on a slow link a pull of many small layers is mostly ramp, and over
loopback six cost no more time or memory than four (benchmarks/README.md says how this
is measured)."""
OPEN_BLOBS_PER_CONNECTION = 2
"""Blobs with files open (lock, partial) at once, per connection of ``concurrency``.

A blob opens its files when it starts, not when it is queued: an image of thousands
of layers needs a few dozen descriptors, not two per layer. Twice the connections,
so a blob busy with its files (opening, the commit) leaves its connection to
another.
"""


DEFAULT_CONCURRENCY = 16
"""The most blob requests open at once per pull (whole layers and chunks of big ones).

A pull starts with ``INITIAL_CONNECTIONS`` and opens more only while they are slow.
Many registries sit behind CDNs or proxies where one connection is slow and many are
fast: over a link that caps each connection, a big image pulls several times faster with
this many than with a handful (the figures: benchmarks/README.md, "Measurements behind
the defaults").
"""


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
        self._limiter: ConnectionLimit | None = None
        self._open_blobs: anyio.CapacityLimiter | None = None
        self._disk_limiter: anyio.CapacityLimiter | None = None
        self._disk_threads = DiskThreads(DISK_THREADS)
        self._growth = ConnectionGrowth(self.options)
        self.on_prefix: Callable[[Digest, Path, int], None] | None = None
        """Hears how far each downloading blob's bytes on disk reach from its start
        (the docker writer follows big layers as they arrive); None: nobody listens."""
        self.thread_bodies = 0
        """How many bodies whose blocks go to the disk threads are being read now (their
        blocks shrink as more are: ``blob_bodies.thread_block_bytes``)."""
        self.write_back_pulls = 0
        """How many running pulls fsync the blobs they fetch (an ``oci-dir`` layout links
        them): while any does, each download of a blob over ``TransferOptions.small_blob``
        starts the write of its bytes to the disk as it hashes them
        (``PartialBlob.write_back``)."""

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
    def limiter(self) -> ConnectionLimit:
        """The connection limit shared by all blob requests of this fetcher.

        It starts at ``INITIAL_CONNECTIONS`` (at most ``concurrency``) and
        :meth:`watch_connections` raises it towards ``concurrency`` while
        connections are slow.
        """
        if self._limiter is None:
            self._limiter = ConnectionLimit(min(INITIAL_CONNECTIONS, self._concurrency))
        return self._limiter

    @property
    def open_blobs(self) -> anyio.CapacityLimiter:
        """The blobs that may have files open at once (see ``OPEN_BLOBS_PER_CONNECTION``)."""
        if self._open_blobs is None:
            self._open_blobs = anyio.CapacityLimiter(OPEN_BLOBS_PER_CONNECTION * self._concurrency)
        return self._open_blobs

    def note_received(self, size: int) -> None:
        """Count body bytes as they arrive (the connection watcher reads the count)."""
        self._growth.note_received(size)

    @property
    def link_slow(self) -> bool:
        """Whether the link proved slow: a far registry, or connections that were slow
        enough for the limit to grow (:mod:`connection_growth`)."""
        return self._growth.link_slow

    async def watch_connections(self) -> None:
        """Open more connections while every one is busy, work waits, and they are slow
        (see :mod:`connection_growth`); return once the limit reaches ``concurrency``."""
        await self._growth.watch(self.limiter, self._concurrency)

    @property
    def disk_limiter(self) -> anyio.CapacityLimiter:
        """Worker threads that hash chunked blobs and save their sidecars at once (not
        one per connection). Each thread costs memory (a stack, malloc state)."""
        if self._disk_limiter is None:
            self._disk_limiter = anyio.CapacityLimiter(DISK_THREADS)
        return self._disk_limiter

    @property
    def disk_threads(self) -> DiskThreads:
        """The threads that write and hash the blocks of bodies (not one per connection):
        each costs memory (a stack, malloc state); two keep both cores busy."""
        return self._disk_threads

    def close(self) -> None:
        """Let the disk threads end (they start again if the fetcher is used again)."""
        self._disk_threads.close()

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
        self,
        reference: Reference,
        descriptor: Descriptor,
        *,
        report: bool = True,
        rank: int = 0,
    ) -> tuple[Path, bool]:
        """As :meth:`fetch`, and whether the blob was downloaded (and so verified) just now.

        False means it was found in the store, where it was verified by an earlier run.
        ``rank``: where the blob's first byte falls in the order the writer reads bytes;
        a chunk's request adds its offset, and a freed connection goes to the waiting
        request of the lowest rank (see :mod:`connection_limit`).
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
        async with _open_blob_place(self.open_blobs), store.lock(digest):
            if store.has(digest, descriptor.size):
                store.note_use(digest)
                if report:
                    self.emit(descriptor, LayerPhase.EXISTS, descriptor.size)
                return store.blob_path(digest), False
            try:
                path = await self._download_locked(store, reference, descriptor, report, rank)
                return path, True
            except OSError as exc:
                raise OutputError(
                    describe_os_error(exc, f"writing blob {digest.short} to the cache")
                ) from exc

    async def expect_layers(self, reference: Reference, layers: Sequence[Descriptor]) -> None:
        """Get ready for ``layers`` (asked for once their configs are in) over a far link:
        when a request to the registry already took ``TransferOptions.far_round_trip`` or
        more to be answered (the manifest's), raise the connection limit to
        ``concurrency`` now, and open as many connections as the layers not in the store
        will ask for at once (a blob over the chunk threshold: as many as it may), so that
        their first requests skip the set-up
        (:meth:`~dockerdrag.transport.Transport.open_connections`)."""
        transport = self.client.transport
        host = reference.registry_host
        round_trip = transport.round_trip(host)
        far = self.options.far_round_trip
        if round_trip is None or far is None or round_trip < far:
            return
        self._growth.start_far(self.limiter, self._concurrency, round_trip)
        threshold = self.options.chunk_threshold
        missing = {
            d.digest: d for d in layers if not d.is_foreign and not self.store.has(d.digest, d.size)
        }
        wanted = sum(self._concurrency if d.size > threshold else 1 for d in missing.values())
        if wanted:
            await transport.open_connections(host, min(wanted, self._concurrency))

    async def fetch_bytes(
        self, reference: Reference, descriptor: Descriptor, limit: int = MAX_CONFIG_BYTES
    ) -> bytes:
        """A small blob (the config) through the cache, read into memory and re-verified."""
        if descriptor.size > limit:
            raise InvalidManifestError(
                f"blob {descriptor.digest} is {descriptor.size} bytes, over the {limit}-byte limit"
            )
        for _ in range(2):
            started = time.monotonic()
            path, downloaded = await self.fetch_noting_download(reference, descriptor, report=False)
            if downloaded:
                elapsed = time.monotonic() - started
                self._growth.start_far(self.limiter, self._concurrency, elapsed)
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
        self,
        store: BlobStore,
        reference: Reference,
        descriptor: Descriptor,
        report: bool,
        rank: int,
    ) -> Path:
        download = BlobDownload(self, store, reference, descriptor, report, rank)
        await download.run()
        if renames_open_files(store.blob_dir):
            # No reader makes the rename wait: here, which costs less than a thread hop.
            path = store.commit(descriptor.digest, descriptor.size)
        else:
            # In a thread: it is retried for a moment while a reader holds the file (Windows).
            path = await anyio.to_thread.run_sync(store.commit, descriptor.digest, descriptor.size)
        if report:
            self.emit(descriptor, LayerPhase.COMPLETE, descriptor.size, download.resumed)
        return path


async def fetch_all(
    fetcher: BlobFetcher,
    blobs: Sequence[tuple[Reference, Descriptor]],
    concurrency: int | None = None,
    on_ready: Callable[[Digest, Path, bool], None] | None = None,
    ranks: Mapping[Digest, int] | None = None,
) -> dict[Digest, Path]:
    """Fetch every distinct blob of ``blobs`` (each from the repository it names: a bundle's
    images may come from several) into the store; return their paths.

    All blobs start at once, in the order given (so put first what is needed first).
    A freed connection goes to the waiting request of the lowest rank: a blob's rank
    (``ranks``, by default where the blob falls in the order given, each blob's bytes
    after those of the blobs before it) plus the offset of the bytes asked for, so the
    blobs tend to finish in that order. The fetcher's limiter bounds the
    open requests (``concurrency``, when given, resets that limit). ``on_ready`` hears
    of each blob as soon as it is verified in the store, with its path and whether it
    was downloaded (and so hashed) by this call rather than found in the store.
    """
    if concurrency is not None:
        fetcher.concurrency = concurrency
    paths: dict[Digest, Path] = {}
    sources: dict[Digest, Reference] = {}
    for source, descriptor in blobs:
        sources.setdefault(descriptor.digest, source)
    unique = list({d.digest: d for _, d in blobs}.values())
    if ranks is None:
        ranks = dict(zip((d.digest for d in unique), _positions(unique), strict=True))

    async def one(rank: int, descriptor: Descriptor) -> None:
        source = sources[descriptor.digest]
        path, downloaded = await fetcher.fetch_noting_download(source, descriptor, rank=rank)
        paths[descriptor.digest] = path
        if on_ready is not None:
            on_ready(descriptor.digest, path, downloaded)

    try:
        async with anyio.create_task_group() as watching:
            watching.start_soon(fetcher.watch_connections)
            async with anyio.create_task_group() as group:
                for descriptor in unique:
                    fetcher.emit(descriptor, LayerPhase.WAITING, 0)
                    group.start_soon(one, ranks.get(descriptor.digest, 0), descriptor)
            watching.cancel_scope.cancel()
    except BaseExceptionGroup as group_error:
        raise leaf_error(group_error) from None
    return paths


@contextlib.asynccontextmanager
async def _open_blob_place(limiter: anyio.CapacityLimiter) -> AsyncIterator[None]:
    """Hold a place of ``limiter``: a free one is taken without letting other tasks run
    first (``async with limiter`` always does), else it is waited for."""
    try:
        limiter.acquire_nowait()
    except anyio.WouldBlock:
        await limiter.acquire()
    try:
        yield
    finally:
        limiter.release()


def _positions(descriptors: Sequence[Descriptor]) -> list[int]:
    """Where each blob's first byte falls when the blobs are read one after the other."""
    positions, position = [], 0
    for descriptor in descriptors:
        positions.append(position)
        position += descriptor.size
    return positions
