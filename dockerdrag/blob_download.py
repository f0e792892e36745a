"""One blob's download within one run: the partial file, its hash, the requests and bodies.

A blob is streamed front to back, hashed as it is written, or (over
``TransferOptions.chunk_threshold`` bytes, while ranges work) fetched by
:class:`~dockerdrag.chunked_download.ChunkedDownload`; every answer is judged by
:func:`~dockerdrag.range_checks.accepted_body` before its body is read. See
:mod:`download` for the whole story.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Protocol, TypeVar

import anyio

from .blob_body import Block, BodyBroken, Cursor, Reconnects
from .chunked_download import ChunkedDownload
from .errors import DigestMismatchError, NetworkError, SizeMismatchError
from .events import LayerPhase
from .low_speed import SpeedWatch
from .manifest import Descriptor
from .partial_blob import READ_CHUNK, PartialBlob
from .range_checks import RangeUnusable, accepted_body
from .reference import Reference
from .registry import RegistryClient
from .retry import RetryPolicy
from .store import BlobStore
from .transfer_options import TransferOptions
from .transport import READ_BUFFER_BYTES, Response

log = logging.getLogger("dockerdrag")
T = TypeVar("T")


class Fetcher(Protocol):
    """What a blob download needs of its fetcher (``download.BlobFetcher``)."""

    client: RegistryClient
    options: TransferOptions

    @property
    def concurrency(self) -> int:
        """How many blob requests may be open at once."""

    @property
    def limiter(self) -> anyio.CapacityLimiter:
        """The connection limit shared by all blob requests."""

    @property
    def disk_limiter(self) -> anyio.CapacityLimiter:
        """The worker threads that write and hash blocks."""

    @property
    def retry(self) -> RetryPolicy:
        """The reconnect budget."""

    def note_received(self, size: int) -> None:
        """Count body bytes as they arrive."""

    def emit(self, descriptor: Descriptor, phase: LayerPhase, done: int, resumed: int = 0) -> None:
        """Report one blob's progress."""


class BlobDownload:
    """One blob's download within one run (the caller holds the blob's lock)."""

    def __init__(
        self,
        fetcher: Fetcher,
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
        self.requests = BlobRequests(fetcher.client, reference, descriptor)
        self.partial = PartialBlob(store, self.digest, self.size)
        self.resumed = 0  # bytes an earlier run left on disk that this download keeps
        self._resume_announced = False
        self._in_flight = 0  # bytes read from bodies and not yet written, over all streams

    # ------------------------------------------------------------------ the whole blob

    async def _disk(self, work: Callable[..., T], *args: object) -> T:
        """Run file work: inline for a small blob, else in a disk worker thread."""
        if self.size <= self.fetcher.options.small_blob:
            return work(*args)
        return await anyio.to_thread.run_sync(work, *args, limiter=self.fetcher.disk_limiter)

    async def run(self) -> None:
        """Download until the partial holds the verified blob (or raise)."""
        await self._disk(self.partial.open)
        try:
            await self._download_verified()
        finally:
            self.partial.close()

    async def _download_verified(self) -> None:
        for second_try in (False, True):
            await self._download()
            self.emit(LayerPhase.VERIFYING)
            try:
                self.partial.hasher.verify()
                return
            except (DigestMismatchError, SizeMismatchError) as exc:
                await self._disk(self._restart)
                if second_try:
                    raise
                log.info("blob %s: %s; fetching it again from the start", self.digest.short, exc)

    async def _download(self) -> None:
        if self.size > self.fetcher.options.chunk_threshold and self.requests.use_ranges:
            chunks = ChunkedDownload(
                self,
                self.store,
                limiter=self.fetcher.limiter,
                disk_limiter=self.fetcher.disk_limiter,
                retry=self.fetcher.retry,
                concurrency=self.fetcher.concurrency,
                chunk_size=self.fetcher.options.chunk_size,
                save_every=self.fetcher.options.ranges_save_every,
            )
            try:
                await chunks.run()
                return
            except RangeUnusable as exc:
                log.info("blob %s: %s; fetching it whole", self.digest.short, exc)
                self.requests.use_ranges = False
                await self._disk(self._restart)
        await self._stream()

    def announce_resume(self) -> None:
        """Once the bytes kept from an earlier run are known: a ``resuming`` event, if any."""
        if self._resume_announced:
            return
        self._resume_announced = True
        self.resumed = self.partial.ranges.total()
        if self.resumed:
            log.info(
                "blob %s: resuming with %d of %d bytes on disk",
                self.digest.short,
                self.resumed,
                self.size,
            )
            self.emit(LayerPhase.RESUMING)

    def _restart(self) -> None:
        """Throw every byte on disk away: the next write starts a new blob at 0."""
        self.partial.restart()
        self.resumed = 0

    def emit(self, phase: LayerPhase) -> None:
        """Report the blob's bytes: those on disk plus those read and not written yet.

        Every stream (the whole blob, or each chunk) adds what it reads to
        ``_in_flight`` and moves it to ``ranges`` when it writes it, with no await in
        between, so the sum over all chunks never goes down while the partial is kept.
        """
        if self.report:
            done = min(self.size, self.partial.ranges.total() + self._in_flight)
            self.fetcher.emit(self.descriptor, phase, done, self.resumed)

    # ------------------------------------------------------------------ one stream

    async def _stream(self) -> None:
        """Fetch the rest of the blob front to back, reconnecting where it broke."""
        await self._disk(self.partial.keep_prefix)
        self.announce_resume()
        cursor = Cursor(self.partial.hashed)
        budget = Reconnects(self.fetcher.retry, cursor.pos)
        while cursor.pos < self.size:
            try:
                async with self.fetcher.limiter:
                    await self._stream_once(cursor)
            except RangeUnusable as exc:
                log.info("blob %s: %s; fetching it whole", self.digest.short, exc)
                self.requests.use_ranges = False
                await self._disk(self._restart)
                cursor.pos = 0
            except BodyBroken as broken:
                delay = budget.delay_after(cursor.pos, broken.error)
                log.info(
                    "blob %s: %s; reconnecting at byte %d", self.digest.short, broken, cursor.pos
                )
                await anyio.sleep(delay)

    async def _stream_once(self, cursor: Cursor) -> None:
        async with self.open(cursor.pos, self.size) as (response, body):
            if body.start != cursor.pos:
                log.info("blob %s: the registry ignored Range; starting over", self.digest.short)
                self.requests.use_ranges = False
                await self._disk(self._restart)
                cursor.pos = 0
            self.emit(LayerPhase.DOWNLOADING)
            await self.pump(response, cursor, self.size, None)

    # ------------------------------------------------------------------ requests and bodies

    def open(self, start: int, end: int) -> AbstractAsyncContextManager[tuple[Response, range]]:
        """Ask for bytes ``[start, end)``: see :meth:`BlobRequests.open`."""
        return self.requests.open(start, end)

    async def pump(
        self, response: Response, cursor: Cursor, end: int, chunks: ChunkedDownload | None
    ) -> None:
        """Copy the body into the partial from ``cursor.pos`` up to ``end``.

        Bytes are written in blocks of up to READ_CHUNK; whatever arrived before a
        break or a cancellation is written too, so it is never fetched again.
        """
        buffer = Block(min(READ_CHUNK, end - cursor.pos))
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
                        await self._store_block(cursor, buffer, chunks)  # reports progress
                    else:
                        self.emit(LayerPhase.DOWNLOADING)
            await self._store_block(cursor, buffer, chunks)
        except NetworkError as exc:
            await self._store_block(cursor, buffer, chunks, catch_up=False)
            raise BodyBroken(exc) from exc
        except anyio.get_cancelled_exc_class():
            with anyio.CancelScope(shield=True):
                await self._store_block(cursor, buffer, chunks, catch_up=False)
            raise
        finally:
            self._in_flight -= len(buffer)  # a block that could not be written is dropped
        if cursor.pos < end:
            raise BodyBroken(
                NetworkError(
                    f"blob {self.digest.short}: the body ended at byte {cursor.pos} "
                    f"instead of {end}"
                )
            )

    async def _store_block(
        self,
        cursor: Cursor,
        buffer: Block,
        chunks: ChunkedDownload | None,
        *,
        catch_up: bool = True,
    ) -> None:
        """Write the buffered bytes at the cursor, note them, and empty the buffer.

        The bookkeeping follows the write with no await in between, so a
        cancellation either finds the buffer unwritten (and it is written by the
        caller's shielded cleanup) or written, noted and empty. A stream
        (``chunks`` None) hashes its blocks as it writes them; a chunk tells
        ``chunks``, which saves the sidecar and hashes the grown prefix, or with
        ``catch_up`` False (a broken or cancelled body) saves the sidecar now.
        """
        if not buffer:
            return
        pos = cursor.pos
        await self._disk(self.partial.write, pos, buffer.view(), chunks is None)
        cursor.pos = pos + len(buffer)
        self._in_flight -= len(buffer)
        buffer.clear()
        self.partial.ranges.add(pos, cursor.pos)
        self.emit(LayerPhase.DOWNLOADING)
        if chunks is not None:
            if catch_up:
                chunks.after_block(cursor.pos - pos)
            else:
                await chunks.save_ranges()


class BlobRequests:
    """The requests of one blob: ``Range`` while ranges work, ``If-Range`` with the first
    strong ``ETag`` seen, the foreign URL of a foreign layer; every answer checked."""

    def __init__(
        self, client: RegistryClient, reference: Reference, descriptor: Descriptor
    ) -> None:
        self.client = client
        self.reference = reference
        self.descriptor = descriptor
        self.use_ranges = True
        self.etag: str | None = None

    @contextlib.asynccontextmanager
    async def open(self, start: int, end: int) -> AsyncIterator[tuple[Response, range]]:
        """Ask for bytes ``[start, end)``; yield the response and the byte range its body holds.

        Without usable ranges the whole blob is asked for (its body is ``range(0, size)``).
        """
        digest, size = self.descriptor.digest, self.descriptor.size
        ranged = self.use_ranges and (start > 0 or end < size)
        async with self.client.open_blob(
            self.reference,
            digest,
            start if ranged else 0,
            end if ranged and end < size else None,
            if_range=self.etag if ranged else None,
            foreign_url=self._foreign_url(),
        ) as response:
            body = accepted_body(
                response.status,
                response.headers,
                range(start, end) if ranged else None,
                size,
                digest,
            )
            etag = response.headers.get("ETag")
            if self.etag is None and etag and not etag.startswith("W/"):
                self.etag = etag
            yield response, body

    def _foreign_url(self) -> str | None:
        """Where a foreign layer lives (None: the registry serves it like any blob)."""
        descriptor = self.descriptor
        return descriptor.urls[0] if descriptor.is_foreign and descriptor.urls else None
