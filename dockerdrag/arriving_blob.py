"""Read a blob file while its download writes it: in order, up to what has arrived, waiting.

A download publishes how far its partial file holds the blob's bytes from the start (the
prefix it has hashed, so they are on disk), and when the blob is verified.
:class:`ArrivingBlobReader` reads up to there, waits for more, and reads the verified blob
to its end. How it learns and waits is a :class:`BlobArrival`: the pull's ``BlobGate`` in
the pull's process (:mod:`~dockerdrag.blob_follow`), the socket to the pull in a decoder
process (:mod:`~dockerdrag.decoder_worker`). This module imports nothing but the standard
library, so that a decoder process stays light.

What is read before the blob is verified is unverified: a download that starts the blob
over rewrites bytes the reader may have read already. The reader notices an end that fell
below its position (:class:`FollowLost`); bytes rewritten behind it it cannot notice, so a
reader of the decompressed layer checks the diff_id of what it read.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, BinaryIO, Protocol

__all__ = ["ArrivingBlobReader", "BlobArrival", "FollowLost", "read_head"]


class FollowLost(Exception):
    """The download started the blob over under the reader: read the verified blob instead."""


class BlobArrival(Protocol):
    """How far one blob has arrived, as its download publishes it."""

    def wait_beyond(self, position: int) -> tuple[Path, int, bool]:
        """Block until the blob's bytes on disk reach past ``position`` (or fell short of
        it: the download started over) or it is verified; the file, how far its bytes
        reach, whether it is the verified blob."""

    def wait_verified(self) -> Path:
        """Block until the blob is verified; its path."""


class ArrivingBlobReader(io.RawIOBase):
    """The blob's bytes from the start, as far as ``arrival`` says they have arrived;
    ``name`` names the blob in errors."""

    def __init__(self, arrival: BlobArrival, name: str) -> None:
        super().__init__()
        self._arrival = arrival
        self._name = name
        self._file: BinaryIO | None = None
        self._position = 0
        self._end = 0
        self._verified = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        """Read what has arrived past the position (waiting for one byte at least); 0 only
        at the end of the verified blob."""
        with memoryview(buffer) as view, view.cast("B") as target:
            while not (self._verified or self._position < self._end):
                self._learn(*self._arrival.wait_beyond(self._position))
            assert self._file is not None
            wanted = len(target) if self._verified else self._end - self._position
            count = int(self._file.readinto(target[:wanted]))  # type: ignore[attr-defined]
            if not count and not self._verified:
                raise FollowLost(f"the partial file of blob {self._name} shrank")
            self._position += count
            return count

    def _learn(self, path: Path, end: int, verified: bool) -> None:
        """Take in how far the blob has arrived; open its file (the verified blob holds the
        same bytes as the partial file)."""
        if not verified and end < self._position:
            raise FollowLost(f"the download of blob {self._name} started over")
        self._end, self._verified = end, verified
        if self._file is None or verified:
            try:
                self._reopen(path)
            except FileNotFoundError:
                if verified:
                    raise
                # The partial file became the verified blob a moment ago.
                self._learn(self._arrival.wait_verified(), -1, True)

    def _reopen(self, path: Path) -> None:
        """Open ``path`` at the position."""
        if self._file is not None:
            self._file.close()
        self._file = open(path, "rb", buffering=0)  # noqa: SIM115 - closed by close()
        self._file.seek(self._position)

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


def read_head(reader: ArrivingBlobReader, length: int) -> bytes:
    """The blob's first ``length`` bytes (fewer if it is shorter), ``reader`` rewound."""
    head = b""
    while len(head) < length:
        chunk = reader.read(length - len(head))
        if not chunk:
            break
        head += chunk
    reader.rewind()
    return head
