"""The ranges sidecar of one blob fetched in chunks: when it is saved, and whether at all.

The written ranges of a chunked blob are recorded in its ``<hex>.ranges`` sidecar
(:meth:`~dockerdrag.store.BlobStore.save_ranges`), so a later run resumes every finished
range. A save takes a few ms (a new file renamed over the old one, while the disk is busy
with the blob), too long for the event loop: it runs in a disk thread, one at a time, each
writing a snapshot of the ranges taken when it starts; one is due every
``TransferOptions.ranges_save_every`` bytes written (the sidecar may lag: bytes it omits
are fetched again after a crash) and whenever a body ends, breaks or is cancelled.

A blob whose bytes on disk run from its start, written on by one body that continues
them, needs no sidecar: the length of its partial file says what it holds, as for a
stream (:meth:`~dockerdrag.store.BlobStore.load_ranges`). A :class:`RangesSidecar` made
with ``kept`` False makes no save until :meth:`RangesSidecar.keep` is called, which
the caller does before any byte is written elsewhere.
"""

from __future__ import annotations

import anyio

from .digest import Digest
from .store import BlobStore, ByteRanges


class RangesSidecar:
    """When the sidecar of one blob's ranges (``ranges``, as they grow) is saved."""

    def __init__(
        self,
        store: BlobStore,
        digest: Digest,
        size: int,
        *,
        disk_limiter: anyio.CapacityLimiter,
        save_every: int,
        kept: bool = True,
    ) -> None:
        self._store = store
        self._digest = digest
        self._size = size
        self._disk_limiter = disk_limiter
        self._save_every = save_every
        self.kept = kept
        """Whether the sidecar records the ranges (False: the partial file is a prefix)."""
        self._unsaved = 0  # bytes written since the last save began
        self._pending = False  # a save is on its way
        self._lock = anyio.Lock()  # one save at a time

    def note_written(self, size: int) -> bool:
        """Count ``size`` more bytes on disk; True when a save is due (the caller starts
        :meth:`save` in a task of its own, and the body goes on meanwhile)."""
        self._unsaved += size
        if self.kept and self._unsaved >= self._save_every and not self._pending:
            self._pending = True
            return True
        return False

    async def save(self, ranges: ByteRanges) -> None:
        """Record ``ranges`` (as they are when the save begins) from a disk thread, if the
        sidecar is kept."""
        if not self.kept:
            return
        self._unsaved = 0
        async with self._lock:
            self._pending = False
            snapshot = ByteRanges(ranges.as_list())
            await anyio.to_thread.run_sync(
                self._store.save_ranges,
                self._digest,
                self._size,
                snapshot,
                limiter=self._disk_limiter,
            )

    async def keep(self, ranges: ByteRanges) -> None:
        """Keep the sidecar from now on: saved now, before a byte is written anywhere
        but at the end of the prefix."""
        if not self.kept:
            self.kept = True
            await self.save(ranges)
