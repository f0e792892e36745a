"""A blob's partial file as one download sees it: the open file, the ranges on disk, the hash.

The ranges come from what earlier runs recorded (:meth:`BlobStore.load_ranges`); the
hasher has been fed the bytes ``[0, hashed)``, in order: a block written where it
continues them is hashed then, other bytes once they are read back (:meth:`hash_upto`).
The methods do blocking file work: the caller runs them inline or in a worker thread
(several at once: the hash grows from one thread at a time). ``on_prefix``, when set, hears
``hashed`` as it grows (once ``PUBLISH_STEP`` bytes more are hashed, and at the blob's end)
and 0 when the blob is started over, so a reader can follow the blob as it arrives
(:mod:`dockerdrag.blob_follow`). With ``write_back`` set, the hashed bytes are handed to
the disk as the hash passes them (every ``WRITE_BACK_STEP``, and at the blob's end).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence

from .digest import Digest, VerifyingHasher
from .errors import SizeMismatchError
from .osfiles import pread, pwrite_all, start_write_back
from .store import BlobStore, ByteRanges

READ_CHUNK = 1 << 18  # 256 KiB blocks: measured, keeps peak RSS flat at little cost
PUBLISH_STEP = 1 << 20  # hashed bytes between two calls of ``on_prefix``
WRITE_BACK_STEP = 8 << 20  # hashed bytes between two write-backs started


class PartialBlob:
    """The ``<hex>.partial`` of one blob, its written ranges and its running hash."""

    def __init__(self, store: BlobStore, digest: Digest, size: int) -> None:
        self.store = store
        self.digest = digest
        self.size = size
        self.fd = -1
        self.ranges = ByteRanges()
        self.hasher = VerifyingHasher(digest, size)
        self.hashed = 0
        self.on_prefix: Callable[[int], None] | None = None
        self._published = 0
        self.write_back = False
        """Start the write to the disk of the bytes hashed (:func:`osfiles.start_write_back`):
        for a blob that is fsynced once downloaded (an ``oci-dir`` layout links it), so
        the disk writes it while the download goes on and that fsync finds little left."""
        self._written_back = 0
        self._hash_lock = threading.Lock()  # the hash grows from one thread at a time

    def open(self) -> None:
        """Load what earlier runs left on disk, then open the partial file."""
        self.ranges = self.store.load_ranges(self.digest, self.size)
        self.fd = self.store.open_partial(self.digest)

    def close(self) -> None:
        os.close(self.fd)

    def restart(self) -> None:
        """Throw every byte on disk away: the next write starts a new blob at 0."""
        os.ftruncate(self.fd, 0)
        self.store.forget_ranges(self.digest)
        self.ranges = ByteRanges()
        self.hasher = VerifyingHasher(self.digest, self.size)
        self.hashed = 0
        self._written_back = 0
        self._publish(force=True)

    def keep_prefix(self) -> None:
        """Keep only the contiguous prefix on disk (a stream appends) and hash it."""
        prefix = self.ranges.prefix()
        if self.ranges.total() != prefix or self.store.ranges_path(self.digest).exists():
            os.ftruncate(self.fd, prefix)
            self.store.forget_ranges(self.digest)
            self.ranges = ByteRanges([(0, prefix)])
        self.hash_upto(prefix)

    def hash_upto(self, end: int) -> None:
        """Feed the hasher the bytes on disk from where it stopped up to ``end`` (or
        less, if a block written meanwhile was hashed as it was written)."""
        while True:
            with self._hash_lock:
                if self.hashed >= end:
                    self._publish(force=self.hashed == self.size)
                    return
                block = pread(self.fd, min(READ_CHUNK, end - self.hashed), self.hashed)
                if not block:
                    raise SizeMismatchError(
                        f"partial blob {self.digest.short} is shorter than noted"
                    )
                self.hasher.update(block)
                self.hashed += len(block)

    def write(self, pos: int, pieces: Sequence[bytes | memoryview]) -> None:
        """Write ``pieces`` one after the other from ``pos`` (the caller does not touch
        them meanwhile), and hash them if they continue the hashed prefix (bytes written
        again are not hashed twice)."""
        if len(pieces) > 2:  # a slow link's small reads: one write, not one per piece
            pieces = (b"".join(pieces),)
        offset = pos
        for piece in pieces:
            pwrite_all(self.fd, piece, offset)
            offset += len(piece)
        if pos != self.hashed:
            return
        with self._hash_lock:
            if pos == self.hashed:
                for piece in pieces:
                    self.hasher.update(piece)
                self.hashed = offset
                self._publish(force=self.hashed == self.size)

    def _publish(self, *, force: bool) -> None:
        """Tell ``on_prefix`` how far the hashed bytes reach (every ``PUBLISH_STEP``); with
        ``write_back``, start the write of those hashed since the last (every
        ``WRITE_BACK_STEP``)."""
        if self.write_back:
            unwritten = self.hashed - self._written_back
            if unwritten > 0 and (force or unwritten >= WRITE_BACK_STEP):
                start_write_back(self.fd, self._written_back, unwritten)
                self._written_back = self.hashed
        if self.on_prefix is not None and (force or self.hashed - self._published >= PUBLISH_STEP):
            self._published = self.hashed
            self.on_prefix(self.hashed)
