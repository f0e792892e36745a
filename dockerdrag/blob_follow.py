"""Read a blob while it downloads: its bytes on disk, in order, waiting for more.

A download publishes how far its partial file holds the blob's bytes from the start
(the prefix it has hashed, so they are on disk); :class:`GrowingBlobReader` reads up to
there, waits for the prefix to grow, and reads to the end once the blob is verified.
The partial file is renamed to the verified blob while it is open, which the reader
does not notice: it reads the same file. Where an open file cannot be renamed
(Windows, found by :func:`~dockerdrag.osfiles.renames_open_files`) nothing is followed.

What is read before the blob is verified is unverified: a download that starts the blob
over (a digest mismatch, a changed ``ETag``) rewrites bytes the reader may have read
already. The reader notices a prefix that shrank below its position (:class:`FollowLost`);
bytes rewritten behind it it cannot notice, so a reader of the decompressed layer must
check the diff_id of what it read and read again from the verified blob when it is wrong.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, BinaryIO, Final, Protocol, cast

from .digest import Digest
from .layers import Compression, decompressing, open_decompressed, sniff_compression

__all__ = ["FollowLost", "GrowingBlobReader", "GrowingBlobs", "open_following"]

_SNIFF_LENGTH: Final = 6


class FollowLost(Exception):
    """The download started the blob over under the reader: read the verified blob instead."""


class GrowingBlobs(Protocol):
    """Where a reader learns how far each blob has arrived (``assemble.BlobGate``)."""

    def wait_beyond(self, digest: Digest, position: int) -> tuple[Path, int, bool]:
        """Block until the blob has bytes past ``position``, its download started over or
        the blob is verified; the file, how far its bytes reach, whether it is verified."""

    def wait_to_read(self, digest: Digest) -> Path:
        """Block until the blob is verified; its path."""


class GrowingBlobReader(io.RawIOBase):
    """The bytes of blob ``digest`` from the start, as far as they have arrived."""

    def __init__(self, blobs: GrowingBlobs, digest: Digest) -> None:
        super().__init__()
        self._blobs = blobs
        self._digest = digest
        self._file: BinaryIO | None = None
        self._position = 0
        self._verified = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        """Read what has arrived past the position (waiting for one byte at least); 0 only
        at the end of the verified blob."""
        with memoryview(buffer) as view, view.cast("B") as target:
            while True:
                if self._verified and self._file is not None:
                    count = self._file.readinto(target)  # type: ignore[attr-defined]
                    self._position += count
                    return int(count)
                path, end, verified = self._blobs.wait_beyond(self._digest, self._position)
                if verified:
                    self._verified = True
                if self._file is None:
                    self._open(path)
                    continue
                if self._verified:
                    continue
                if end <= self._position:
                    raise FollowLost(f"the download of blob {self._digest.short} started over")
                count = self._file.readinto(target[: end - self._position])  # type: ignore[attr-defined]
                if not count:
                    raise FollowLost(f"the partial file of blob {self._digest.short} shrank")
                self._position += count
                return int(count)

    def rewind(self) -> None:
        """Read from the start again (the bytes read so far are on disk)."""
        if self._file is not None:
            self._file.seek(0)
        self._position = 0

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        super().close()

    def _open(self, path: Path) -> None:
        try:
            self._file = open(path, "rb")  # noqa: SIM115 - closed by close()
        except FileNotFoundError:
            # The partial was renamed to the verified blob a moment ago.
            self._file = open(self._blobs.wait_to_read(self._digest), "rb")  # noqa: SIM115
            self._verified = True


def open_following(blobs: GrowingBlobs, digest: Digest) -> BinaryIO:
    """The uncompressed bytes of the layer blob ``digest`` as they arrive (gzip or none).

    A blob in another compression is read once it is verified (nothing announces its
    size, so the docker writer never decompresses it early). Corrupt data raises
    IntegrityError while reading, as :func:`~dockerdrag.layers.open_decompressed`.
    """
    reader = GrowingBlobReader(blobs, digest)
    try:
        head = b""
        while len(head) < _SNIFF_LENGTH:
            chunk = reader.read(_SNIFF_LENGTH - len(head))
            if not chunk:
                break
            head += chunk
        reader.rewind()
        compression = sniff_compression(head)
        if compression is Compression.NONE:
            return cast(BinaryIO, reader)
        if compression is not Compression.GZIP:
            reader.close()
            return open_decompressed(blobs.wait_to_read(digest))
        return decompressing(cast(BinaryIO, reader), compression, digest.hex)
    except BaseException:
        reader.close()
        raise
