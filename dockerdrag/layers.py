"""Layer decompression chosen by magic bytes, as Docker does (format section 2.1).

Docker ignores the media type: it sniffs the first bytes of the blob. gzip
(``1f 8b 08``), bzip2 (``BZh``), xz (``fd 37 7a 58 5a 00``) and zstd
(``28 b5 2f fd``) are decompressed; anything else is taken as an uncompressed tar.
Every byte of the result is kept, trailing padding included, and multi-member gzip
or multi-frame zstd streams are decompressed completely.
"""

from __future__ import annotations

import collections
import io
import os
import threading
import zlib
from collections.abc import Callable, Iterator
from enum import Enum
from pathlib import Path
from typing import IO, Any, BinaryIO, Final, cast

from .errors import IntegrityError

_GZIP_ERROR: type[Exception]
_RAW_GZIP_READER: Callable[[IO[bytes], int], IO[bytes]] | None
try:
    from isal import igzip as _gzip
    from isal import isal_zlib
    from isal.igzip_lib import IsalError

    _GZIP_ERROR = cast("type[Exception]", IsalError)  # the stub declares an instance
    # The C reader under igzip.GzipFile: it inflates straight into the caller's buffer,
    # where GzipFile's buffered layer hands out a new bytes object copied into it.
    _RAW_GZIP_READER = getattr(isal_zlib, "_GzipReader", None)
except ImportError:  # isal is installed only where a wheel exists: zlib then decompresses
    import gzip as _gzip  # type: ignore[no-redef]

    _GZIP_ERROR = zlib.error
    _RAW_GZIP_READER = None

__all__ = [
    "CHUNK_SIZE",
    "Compression",
    "decompressing",
    "open_decompressed",
    "read_ahead",
    "sniff_compression",
]

CHUNK_SIZE: Final = 1 << 20
"""Read size used for layer streams (1 MiB)."""

_SNIFF_LENGTH: Final = 6


class Compression(Enum):
    """The compression of a layer blob, as detected from its first bytes."""

    NONE = "uncompressed"
    GZIP = "gzip"
    BZIP2 = "bzip2"
    XZ = "xz"
    ZSTD = "zstd"


_MAGIC: Final = (
    (b"\x1f\x8b\x08", Compression.GZIP),
    (b"BZh", Compression.BZIP2),
    (b"\xfd7zXZ\x00", Compression.XZ),
    (b"\x28\xb5\x2f\xfd", Compression.ZSTD),
)

_DECOMPRESSION_ERRORS: Final[tuple[type[Exception], ...]] = (
    OSError,
    EOFError,
    ValueError,
    zlib.error,
    _GZIP_ERROR,
)
"""What a corrupt stream raises (ISA-L's gzip raises its own IsalError); bz2 raises
these too. lzma and zstandard (rare
layer compressions) are imported on first use and add their own error class."""


def sniff_compression(head: bytes) -> Compression:
    """The compression Docker would detect for a blob starting with ``head``."""
    for magic, compression in _MAGIC:
        if head.startswith(magic):
            return compression
    return Compression.NONE


class _DecompressedReader(io.RawIOBase):
    """A read-only stream over a decompressor that reports corrupt data as IntegrityError."""

    def __init__(
        self,
        inner: IO[bytes],
        source: IO[bytes],
        description: str,
        errors: tuple[type[Exception], ...] = _DECOMPRESSION_ERRORS,
    ) -> None:
        super().__init__()
        self._inner = inner
        self._source = source
        self._description = description
        self._errors = errors

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        try:
            if size is None or size < 0:
                return self._read_all()
            return self._inner.read(size)
        except self._errors as exc:
            raise IntegrityError(f"{self._description}: corrupt data: {exc}") from exc

    def _read_all(self) -> bytes:
        parts = []
        while chunk := self._inner.read(CHUNK_SIZE):
            parts.append(chunk)
        return b"".join(parts)

    def readinto(self, buffer: Any) -> int:
        try:
            return int(self._inner.readinto(buffer))  # type: ignore[attr-defined]
        except self._errors as exc:
            raise IntegrityError(f"{self._description}: corrupt data: {exc}") from exc

    def close(self) -> None:
        if not self.closed:
            try:
                self._inner.close()
            finally:
                self._source.close()
        super().close()


def _open_inner(
    compression: Compression, source: IO[bytes]
) -> tuple[IO[bytes], tuple[type[Exception], ...]]:
    """The decompressing stream over ``source`` and the errors corrupt data raises.

    bz2, lzma and zstandard are imported here, when a layer needs them, to keep
    them out of the start-up of every pull (gzip layers are the common case).
    """
    if compression is Compression.GZIP:
        if _RAW_GZIP_READER is not None:
            return _RAW_GZIP_READER(source, CHUNK_SIZE), _DECOMPRESSION_ERRORS
        gzip_module: Any = _gzip  # isal ships no type hints
        stream = cast(IO[bytes], gzip_module.GzipFile(fileobj=source, mode="rb"))
        return stream, _DECOMPRESSION_ERRORS
    if compression is Compression.BZIP2:
        import bz2

        return bz2.BZ2File(source, mode="rb"), _DECOMPRESSION_ERRORS
    if compression is Compression.XZ:
        import lzma

        return lzma.LZMAFile(source, mode="rb"), (*_DECOMPRESSION_ERRORS, lzma.LZMAError)
    import zstandard

    decompressor = zstandard.ZstdDecompressor()
    reader = decompressor.stream_reader(source, read_size=CHUNK_SIZE, read_across_frames=True)
    return cast(IO[bytes], reader), (*_DECOMPRESSION_ERRORS, zstandard.ZstdError)


_GZIP_TRAILER: Final = 8  # CRC32 and ISIZE
_GZIP_MINIMUM: Final = 18  # a 10-byte header, an empty deflate block, the trailer


def announced_size(path: Path) -> int | None:
    """The uncompressed size the blob at ``path`` announces, or None if it announces none.

    Uncompressed: the file's size. gzip: the trailer's ISIZE, the size of the last
    member modulo 2**32. That is the whole size for the single-member gzip every
    image builder writes, but only a claim: a caller must check it against the
    bytes it gets. bzip2, xz and zstd blobs announce nothing here.
    """
    with open(path, "rb") as source:
        compression = sniff_compression(source.read(_SNIFF_LENGTH))
        length = os.fstat(source.fileno()).st_size
        if compression is Compression.NONE:
            return length
        if compression is not Compression.GZIP or length < _GZIP_MINIMUM:
            return None
        source.seek(length - _GZIP_TRAILER + 4)
        return int.from_bytes(source.read(4), "little")


def open_decompressed(path: Path) -> BinaryIO:
    """Open the blob at ``path`` and return a stream of its uncompressed bytes.

    Corrupt compressed data raises IntegrityError while reading. A truncated zstd
    stream ends early without an error (python-zstandard does not report an
    incomplete last frame); the caller's diff_id check rejects the short result.
    """
    source = open(path, "rb")  # noqa: SIM115 - ownership passes to the returned stream
    try:
        compression = sniff_compression(source.read(_SNIFF_LENGTH))
        source.seek(0)
    except BaseException:
        source.close()
        raise
    if compression is Compression.NONE:
        return source
    try:
        return decompressing(source, compression, path.name)
    except BaseException:
        source.close()
        raise


def decompressing(source: IO[bytes], compression: Compression, name: str) -> BinaryIO:
    """A stream of the uncompressed bytes of ``source``, compressed with ``compression``.

    Corrupt data raises IntegrityError naming ``name`` while reading; closing the
    stream closes ``source``. ``compression`` must not be ``Compression.NONE``.
    """
    inner, errors = _open_inner(compression, source)
    description = f"{name} ({compression.value})"
    return cast(BinaryIO, _DecompressedReader(inner, source, description, errors))


def read_ahead(
    open_stream: Callable[[], BinaryIO],
    chunk_size: int = CHUNK_SIZE,
    depth: int = 2,
) -> Iterator[bytes]:
    """The stream's chunks, read (and so decompressed) by a helper thread ``depth`` ahead.

    Decompression (ISA-L, zstd, zlib release the GIL) then overlaps with what the
    caller does with each chunk, such as hashing and writing it. Memory stays
    bounded by ``depth`` chunks. An exception in the reader is raised to the caller;
    a caller that stops early stops the reader.
    """
    chunks = _Handover(depth)

    def produce() -> None:
        try:
            with open_stream() as stream:
                while not chunks.abandoned:
                    chunk = stream.read(chunk_size)
                    if not chunk:
                        break
                    chunks.put(chunk)
            chunks.put(None)
        except BaseException as exc:  # handed to the consumer, raised there
            chunks.put(exc)

    reader = threading.Thread(target=produce, name="dockerdrag-read-ahead", daemon=True)
    reader.start()
    try:
        while True:
            item = chunks.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        chunks.abandon()
        reader.join()


class _Handover:
    """A bounded queue from the read-ahead thread to its consumer, which may abandon it:
    then the producer's ``put`` returns at once and drops the item."""

    def __init__(self, depth: int) -> None:
        self._items: collections.deque[bytes | BaseException | None] = collections.deque()
        self._depth = depth
        self._changed = threading.Condition()
        self.abandoned = False

    def put(self, item: bytes | BaseException | None) -> None:
        with self._changed:
            self._changed.wait_for(lambda: len(self._items) < self._depth or self.abandoned)
            if not self.abandoned:
                self._items.append(item)
                self._changed.notify_all()

    def get(self) -> bytes | BaseException | None:
        with self._changed:
            self._changed.wait_for(lambda: bool(self._items))
            item = self._items.popleft()
            self._changed.notify_all()
            return item

    def abandon(self) -> None:
        with self._changed:
            self.abandoned = True
            self._changed.notify_all()
