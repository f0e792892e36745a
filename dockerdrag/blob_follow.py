"""Read a layer blob in the pull's process while it downloads, as the ``BlobGate`` tells.

:class:`GrowingBlobReader` is an :class:`~dockerdrag.arriving_blob.ArrivingBlobReader`
that learns from the gate how far the download's partial file holds the blob and waits
on it for more. The partial file is renamed to the verified blob while it is open, which
the reader does not notice: it reads the same bytes. Where an open file cannot be renamed
(Windows, found by :func:`~dockerdrag.osfiles.renames_open_files`) nothing is followed.
"""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO, Final, NamedTuple, Protocol, cast

from .arriving_blob import ArrivingBlobReader, FollowLost, read_head
from .digest import Digest
from .layers import Compression, decompressing, open_decompressed, sniff_compression

__all__ = ["FollowLost", "GrowingBlobReader", "GrowingBlobs", "open_following"]

_SNIFF_LENGTH: Final = 6


class GrowingBlobs(Protocol):
    """Where a reader learns how far each blob has arrived (``blob_gate.BlobGate``)."""

    def wait_beyond(self, digest: Digest, position: int) -> tuple[Path, int, bool]:
        """Block until the blob has bytes past ``position``, its download started over or
        the blob is verified; the file, how far its bytes reach, whether it is verified."""

    def wait_to_read(self, digest: Digest) -> Path:
        """Block until the blob is verified; its path."""


class GrowingBlobReader(ArrivingBlobReader):
    """The bytes of blob ``digest`` from the start, as far as they have arrived."""

    def __init__(self, blobs: GrowingBlobs, digest: Digest) -> None:
        super().__init__(_GateArrival(blobs, digest), digest.short)
        self._digest = digest


class _GateArrival(NamedTuple):
    """How far blob ``digest`` has arrived, as ``blobs`` (the gate) tells."""

    blobs: GrowingBlobs
    digest: Digest

    def wait_beyond(self, position: int) -> tuple[Path, int, bool]:
        return self.blobs.wait_beyond(self.digest, position)

    def wait_verified(self) -> Path:
        return self.blobs.wait_to_read(self.digest)


def open_following(blobs: GrowingBlobs, digest: Digest) -> BinaryIO:
    """The uncompressed bytes of the layer blob ``digest`` as they arrive (gzip or none).

    A blob in another compression is read once it is verified (nothing announces its
    size, so the docker writer never decompresses it early). Corrupt data raises
    IntegrityError while reading, as :func:`~dockerdrag.layers.open_decompressed`.
    """
    reader = GrowingBlobReader(blobs, digest)
    try:
        compression = sniff_compression(read_head(reader, _SNIFF_LENGTH))
        if compression is Compression.NONE:
            return cast(BinaryIO, reader)
        if compression is not Compression.GZIP:
            reader.close()
            return open_decompressed(blobs.wait_to_read(digest))
        return decompressing(cast(BinaryIO, reader), compression, digest.hex)
    except BaseException:
        reader.close()
        raise
