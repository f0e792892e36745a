"""One blob's requests and bodies: each answer checked, each body copied to the partial file.

:class:`BlobRequests` asks for a blob or a range of it and judges every answer with
:func:`~dockerdrag.range_checks.accepted_body` before its body is read;
:class:`BodyPump` copies a body into the blob's
:class:`~dockerdrag.partial_blob.PartialBlob` in blocks and reports the blob's progress.
Which requests are made, and what happens when a body breaks, is
:class:`~dockerdrag.blob_download.BlobDownload`'s (a stream) or
:class:`~dockerdrag.chunked_download.ChunkedDownload`'s (chunks) job.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Protocol, TypeVar

import anyio
import anyio.lowlevel

from .blob_body import BodyBroken, Cursor, Pieces
from .chunked_download import ChunkedDownload
from .connection_limit import ConnectionLimit
from .digest import Digest
from .disk_threads import DiskThreads
from .errors import NetworkError
from .events import LayerPhase
from .low_speed import SpeedWatch
from .manifest import Descriptor
from .partial_blob import PartialBlob
from .range_checks import accepted_body
from .reference import Reference
from .registry import RegistryClient
from .retry import RetryPolicy
from .transfer_options import TransferOptions
from .transport import Response

log = logging.getLogger("dockerdrag")
T = TypeVar("T")

BLOCK_BYTES = 3 << 16
"""A small blob's body (its file work done on the event loop) is written once the bytes
received make this many (192 KiB): over loopback each read brings up to 256 KiB (one
piece a block), over TLS 128 KiB. At most a block and one piece are held per body."""
THREAD_BLOCK_BYTES = 1 << 19
"""The same for a body whose blocks go to a disk thread (512 KiB): every block handed
over costs the event loop a trip to a thread and back, so they are bigger, while few
such bodies are open (:func:`thread_block_bytes`)."""
THREAD_BLOCKS_BUDGET = 6 * THREAD_BLOCK_BYTES
"""Bytes the blocks of all the bodies going to disk threads may hold at once (3 MiB, a
full block for each of the 6 connections a pull starts with). With more such bodies open
(the connections grew: a link that proved slow, or a machine whose CPU is busy with
other work), each body's block shrinks, down to ``BLOCK_BYTES``: a pull's memory grows
little with its connections. The measurements: benchmarks/README.md."""


def thread_block_bytes(bodies: int) -> int:
    """The block of each of ``bodies`` bodies open at once whose blocks go to disk threads."""
    return max(BLOCK_BYTES, min(THREAD_BLOCK_BYTES, THREAD_BLOCKS_BUDGET // max(1, bodies)))


REPORT_INTERVAL = 0.1
"""Seconds between two progress reports of a body while its block fills (a full block
is reported when it is written)."""


class Fetcher(Protocol):
    """What a blob download needs of its fetcher (``download.BlobFetcher``)."""

    client: RegistryClient
    options: TransferOptions
    on_prefix: Callable[[Digest, Path, int], None] | None
    """Hears how far a downloading blob's bytes reach from its start, on disk in its
    partial file (see ``PartialBlob.on_prefix``), if anyone listens."""
    write_back_pulls: int
    """How many running pulls fsync the blobs they fetch: while any does, each download
    of a blob that is not small starts the write of its bytes to the disk as it hashes
    them."""
    thread_bodies: int
    """How many bodies whose blocks go to the disk threads are being read now."""

    @property
    def concurrency(self) -> int:
        """How many blob requests may be open at once."""

    @property
    def limiter(self) -> ConnectionLimit:
        """The connection limit shared by all blob requests."""

    @property
    def link_slow(self) -> bool:
        """Whether the link proved slow (a far registry, or slow connections)."""

    @property
    def disk_limiter(self) -> anyio.CapacityLimiter:
        """The worker threads that hash chunked blobs and save their sidecars."""

    @property
    def disk_threads(self) -> DiskThreads:
        """The threads that write (and hash) the blocks of bodies."""

    @property
    def retry(self) -> RetryPolicy:
        """The reconnect budget."""

    def note_received(self, size: int) -> None:
        """Count body bytes as they arrive."""

    def emit(self, descriptor: Descriptor, phase: LayerPhase, done: int, resumed: int = 0) -> None:
        """Report one blob's progress."""


class BodyPump:
    """Copies the bodies of one blob's answers into its partial file; reports its progress."""

    def __init__(
        self,
        fetcher: Fetcher,
        partial: PartialBlob,
        requests: BlobRequests,
        descriptor: Descriptor,
        report: bool,
    ) -> None:
        self.fetcher = fetcher
        self.partial = partial
        self.requests = requests
        self.descriptor = descriptor
        self.digest = descriptor.digest
        self.size = descriptor.size
        self.report = report
        self.resumed = 0  # bytes an earlier run left on disk that this download keeps
        self._resume_announced = False
        self._in_flight = 0  # bytes read from bodies and not yet written, over all streams

    @property
    def inline(self) -> bool:
        """Whether the blob's file work runs on the event loop (a small blob)."""
        return self.size <= self.fetcher.options.small_blob

    async def disk(self, work: Callable[..., T], *args: object) -> T:
        """Run file work: inline for a small blob, else in a disk thread."""
        if self.inline:
            return work(*args)
        return await self.fetcher.disk_threads.run(work, *args)

    def restart(self) -> None:
        """Throw every byte on disk away: the next write starts a new blob at 0."""
        self.partial.restart()
        self.resumed = 0

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

    def emit(self, phase: LayerPhase) -> None:
        """Report the blob's bytes: those on disk plus those read and not written yet.

        Every stream (the whole blob, or each chunk) adds what it reads to
        ``_in_flight`` and moves it to ``ranges`` when it writes it, with no await in
        between, so the sum over all chunks never goes down while the partial is kept.
        """
        if self.report:
            done = min(self.size, self.partial.ranges.total() + self._in_flight)
            self.fetcher.emit(self.descriptor, phase, done, self.resumed)

    def open(
        self, start: int, end: int, *, ranged: bool = False
    ) -> contextlib.AbstractAsyncContextManager[tuple[Response, range]]:
        """Ask for bytes ``[start, end)``: see :meth:`BlobRequests.open`."""
        return self.requests.open(start, end, ranged=ranged)

    async def pump(
        self, response: Response, cursor: Cursor, chunks: ChunkedDownload | None
    ) -> None:
        """Copy the body into the partial from ``cursor.pos`` up to ``cursor.end``.

        Bytes are kept as they were received and written once they make a block
        (BLOCK_BYTES inline; through a disk thread, :func:`thread_block_bytes` of the bodies
        open, looked at again after each block), reported when
        written and at most every REPORT_INTERVAL while a block fills; whatever arrived
        before a break or a cancellation is written too, so it is never fetched again.
        The end is read after every read: a chunk split meanwhile stops at its new end.
        """
        buffer = Pieces()
        speed = SpeedWatch(self.fetcher.options.low_speed, f"blob {self.digest.short}")
        next_report = 0.0
        threaded = not self.inline
        self.fetcher.thread_bodies += threaded
        block_bytes = thread_block_bytes(self.fetcher.thread_bodies) if threaded else BLOCK_BYTES
        try:
            with speed:  # too slow: a NetworkError, so a broken body
                while cursor.pos + len(buffer) < cursor.end:
                    piece: bytes | memoryview = await response.read_piece()
                    if not piece:
                        break
                    room = cursor.end - cursor.pos - len(buffer)
                    if len(piece) > room:  # split: the chunk now ends before its body does
                        piece = memoryview(piece)[:room]
                    speed.note(len(piece))
                    self.fetcher.note_received(len(piece))
                    buffer.add(piece)
                    self._in_flight += len(piece)
                    del piece  # held by the buffer only
                    if len(buffer) >= block_bytes:
                        await self._store_block(cursor, buffer, chunks)  # reports progress
                        if threaded:
                            block_bytes = thread_block_bytes(self.fetcher.thread_bodies)
                        # Neither a read of bytes already buffered nor a write already done
                        # suspends the task (the write's wait is shielded): a cancellation
                        # is taken here, between blocks, or a fast body would run to its end.
                        await anyio.lowlevel.checkpoint_if_cancelled()
                    elif (now := time.monotonic()) >= next_report:
                        next_report = now + REPORT_INTERVAL
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
            self.fetcher.thread_bodies -= threaded
        if cursor.pos < cursor.end:
            raise BodyBroken(
                NetworkError(
                    f"blob {self.digest.short}: the body ended at byte {cursor.pos} "
                    f"instead of {cursor.end}"
                )
            )

    async def _store_block(
        self,
        cursor: Cursor,
        buffer: Pieces,
        chunks: ChunkedDownload | None,
        *,
        catch_up: bool = True,
    ) -> None:
        """Write the buffered bytes at the cursor, note them, and empty the buffer.

        The bookkeeping follows the write with no await in between, so a
        cancellation either finds the buffer unwritten (and it is written by the
        caller's shielded cleanup) or written, noted and empty. A block that
        continues the hashed prefix is hashed as it is written (every block of a
        stream, ``chunks`` None); a chunk tells ``chunks``, which saves the sidecar
        and hashes a prefix that grew past what was hashed, or with ``catch_up``
        False (a broken or cancelled body) saves the sidecar now.
        """
        if not buffer:
            return
        pos = cursor.pos
        await self.disk(self.partial.write, pos, buffer.view())
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
    async def open(
        self, start: int, end: int, *, ranged: bool = False
    ) -> AsyncIterator[tuple[Response, range]]:
        """Ask for bytes ``[start, end)``; yield the response and the byte range its body holds.

        Without usable ranges the whole blob is asked for (its body is ``range(0, size)``).
        ``ranged``: with ``Range`` even when that is the whole blob (a 206 then shows that
        the registry honours ranges).
        """
        digest, size = self.descriptor.digest, self.descriptor.size
        ranged = self.use_ranges and (ranged or start > 0 or end < size)
        async with self.client.open_blob(
            self.reference,
            digest,
            start if ranged else 0,
            end if ranged and end < size else None,
            ranged=ranged,
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
