"""One blob's download within one run: verified, fetched once more, streamed or in chunks.

A blob is streamed front to back, hashed as it is written, or (over
``TransferOptions.chunk_threshold`` bytes, while ranges work) fetched by
:class:`~dockerdrag.chunked_download.ChunkedDownload`; a stream that breaks reconnects
where it broke. The requests and the copy of their bodies into the partial file are
:mod:`~dockerdrag.blob_bodies`' job. See :mod:`download` for the whole story.
"""

from __future__ import annotations

import functools
import logging

from .blob_bodies import BlobRequests, BodyPump, Fetcher
from .blob_body import BodyBroken, Cursor, Reconnects
from .chunked_download import ChunkedDownload
from .connection_limit import FIRST_REQUEST_RANK
from .errors import DigestMismatchError, SizeMismatchError
from .events import LayerPhase
from .manifest import Descriptor
from .partial_blob import PartialBlob
from .range_checks import RangeUnusable
from .reference import Reference
from .store import BlobStore

log = logging.getLogger("dockerdrag")


class BlobDownload:
    """One blob's download within one run (the caller holds the blob's lock)."""

    def __init__(
        self,
        fetcher: Fetcher,
        store: BlobStore,
        reference: Reference,
        descriptor: Descriptor,
        report: bool,
        rank: int = 0,
    ) -> None:
        self.fetcher = fetcher
        self.rank = rank  # where its first byte falls in the writer's order: lower first
        self.store = store
        self.digest = descriptor.digest
        self.size = descriptor.size
        self.requests = BlobRequests(fetcher.client, reference, descriptor)
        self.partial = PartialBlob(store, self.digest, self.size)
        # Not a small blob: its file work is on the event loop, and its fsync is short.
        self.partial.write_back = (
            fetcher.write_back_pulls > 0 and self.size > fetcher.options.small_blob
        )
        if fetcher.on_prefix is not None:
            partial_path = store.partial_path(self.digest)
            self.partial.on_prefix = functools.partial(fetcher.on_prefix, self.digest, partial_path)
        self.bodies = BodyPump(fetcher, self.partial, self.requests, descriptor, report)

    @property
    def resumed(self) -> int:
        """Bytes an earlier run left on disk that this download kept."""
        return self.bodies.resumed

    async def run(self) -> None:
        """Download until the partial holds the verified blob (or raise)."""
        await self.bodies.disk(self.partial.open)
        try:
            await self._download_verified()
        finally:
            self.partial.close()

    async def _download_verified(self) -> None:
        for second_try in (False, True):
            await self._download()
            self.bodies.emit(LayerPhase.VERIFYING)
            try:
                self.partial.hasher.verify()
                return
            except (DigestMismatchError, SizeMismatchError) as exc:
                await self.bodies.disk(self.bodies.restart)
                if second_try:
                    raise
                log.info("blob %s: %s; fetching it again from the start", self.digest.short, exc)

    async def _download(self) -> None:
        options = self.fetcher.options
        if self.size > options.chunk_threshold and self.requests.use_ranges:
            # TransferOptions.whole_blobs; over a link that proved slow, ranked chunks from
            # the start: a whole blob would be split, and each split loses the bytes in
            # flight on its connection.
            whole = options.whole_blobs and not self.fetcher.link_slow
            chunks = ChunkedDownload(
                self.bodies,
                self.store,
                limiter=self.fetcher.limiter,
                rank=self.rank,
                disk_limiter=self.fetcher.disk_limiter,
                retry=self.fetcher.retry,
                concurrency=self.fetcher.concurrency,
                chunk_size=options.chunk_size,
                chunk_ramp=options.chunk_ramp,
                save_every=options.ranges_save_every,
                split_min=options.split_min_bytes,
                split_min_seconds=options.split_min_seconds,
                whole=whole,
                split_max_rate=options.slow_connection_rate if whole else None,
            )
            try:
                await chunks.run()
                return
            except RangeUnusable as exc:
                log.info("blob %s: %s; fetching it whole", self.digest.short, exc)
                self.requests.use_ranges = False
                await self.bodies.disk(self.bodies.restart)
        await self._stream()

    async def _stream(self) -> None:
        """Fetch the rest of the blob front to back, reconnecting where it broke."""
        await self.bodies.disk(self.partial.keep_prefix)
        self.bodies.announce_resume()
        cursor = Cursor(self.partial.hashed, self.size)
        budget = Reconnects(self.fetcher.retry, cursor.pos)
        while cursor.pos < cursor.end:
            try:
                async with self.fetcher.limiter.place(FIRST_REQUEST_RANK):
                    await self._stream_once(cursor)
            except RangeUnusable as exc:
                log.info("blob %s: %s; fetching it whole", self.digest.short, exc)
                await self._start_over(cursor)
            except BodyBroken as broken:
                await budget.wait_to_reconnect(cursor.pos, broken, self.digest.short)

    async def _stream_once(self, cursor: Cursor) -> None:
        async with self.bodies.open(cursor.pos, self.size) as (response, body):
            if body.start != cursor.pos:
                log.info("blob %s: the registry ignored Range; starting over", self.digest.short)
                await self._start_over(cursor)
            self.bodies.emit(LayerPhase.DOWNLOADING)
            await self.bodies.pump(response, cursor, None)

    async def _start_over(self, cursor: Cursor) -> None:
        """Without ranges: throw the bytes on disk away and stream the whole blob from 0."""
        self.requests.use_ranges = False
        await self.bodies.disk(self.bodies.restart)
        cursor.pos = 0
