"""Blob files of the cache copied into an OCI archive, checked, with as little work as possible.

A blob this pull downloaded was hashed as it was written, moments ago: its copy checks
only the size. A blob cached by an earlier run is hashed again while it is copied (the
cache may have rotted; the caller's ``before_blob`` tells the two apart).

* Into the ``--format oci`` tar: when the tar goes to a
  :class:`~dockerdrag.direct_io.DirectFileWriter` or the member's region of it
  (:class:`~dockerdrag.direct_regions.RegionWriter`), the file is read straight into the
  writer's page-aligned block, which goes to disk past the page cache: one copy of each
  byte, no Python object per chunk. (A kernel copy into the tar would go through the
  page cache and cannot reflink: tar members sit at 512-byte offsets, not at the file
  system's block boundaries.) Any other output gets the file in 256 KiB reads.
* Into a file of its own (``--format oci-dir``): a blob verified in this pull is copied
  inside the kernel (:func:`~dockerdrag.os_copies.copy_file_range`, a reflink where the
  file system shares blocks); where that is missing or refused, and for blobs hashed
  while copied, the bytes are read and written in 256 KiB chunks.
* Into the ``oci-dir`` layout of a pull, where it is safe (:func:`link_blob_file`): the
  cache file itself, under a second name (a hard link: no byte copied). The cache never
  writes into a committed blob file (it writes a new file and renames it) nor changes its
  mtime (a use is noted in its access time), so the layout's file never changes under
  it; a layout file edited in place changes the
  cache's too, which the next reader of the cache finds (a blob cached by an earlier
  run is always checked again) and fetches again.

Errors: a file that is not the blob it should be raises the integrity error naming the
file (``blob file PATH is corrupt: ...``); a file that cannot be read, OutputError; an
error writing the output, the original OSError.
"""

from __future__ import annotations

import contextlib
import io
import os
import stat
import time
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Protocol

from .closing import ClosedOnExit
from .digest import Digest, VerifyingHasher
from .direct_io import DirectFileWriter
from .direct_regions import RegionWriter
from .errors import IntegrityError, OutputError
from .os_copies import copy_file_range, link_file, owned_by_this_user
from .store import describe_os_error
from .tarwriter import TarOutput

__all__ = [
    "CHUNK_SIZE",
    "KERNEL_COPY_STEP",
    "ArrivingBlob",
    "BlobCallback",
    "BlobFile",
    "ChunkCallback",
    "ReadyCallback",
    "copy_arriving_blob",
    "copy_blob_into_tar",
    "copy_blob_to_file",
    "link_blob_file",
]

ChunkCallback = Callable[[int], None]
"""Called with the size of each piece of a blob copied; may raise to abort."""
BlobCallback = Callable[[Digest], bool | None]
"""Called before a blob file is opened; may block until the file is ready, or raise.

Returning True says the caller verified the file's digest itself a moment ago (it
hashed the bytes as it wrote them), so the copy checks only the size.
"""

ReadyCallback = Callable[[Collection[Digest]], Digest]
"""Blocks until one of the blobs named can be read; returns it (may raise to stop)."""

CHUNK_SIZE: Final = 1 << 18
"""Bytes per read where the bytes pass through Python (memory, not speed)."""
KERNEL_COPY_STEP: Final = 1 << 23
"""Bytes per kernel copy call: ``on_chunk`` (which may cancel) runs between them."""


@dataclass(frozen=True)
class BlobFile:
    """A blob's file, which should hold ``size`` bytes of digest ``digest``."""

    digest: Digest
    size: int
    path: Path


class _BlobReader(ClosedOnExit):
    """The blob file open for reading; a read error is an OutputError naming the file."""

    def __init__(self, path: Path) -> None:
        self._path = path
        try:
            self._file = open(path, "rb", buffering=0)  # noqa: SIM115 - closed by close()
        except OSError as exc:
            raise self._error(exc) from exc

    def readinto(self, buffer: memoryview, /) -> int:
        try:
            return self._file.readinto(buffer) or 0
        except OSError as exc:
            raise self._error(exc) from exc

    def read(self, size: int) -> bytes:
        try:
            return self._file.read(size) or b""
        except OSError as exc:
            raise self._error(exc) from exc

    def fileno(self) -> int:
        return self._file.fileno()

    def seek(self, offset: int) -> None:
        self._file.seek(offset, io.SEEK_SET)

    def close(self) -> None:
        self._file.close()

    def _error(self, exc: OSError) -> OutputError:
        return OutputError(describe_os_error(exc, f"reading blob {self._path}"))


def _hasher(blob: BlobFile, before_blob: BlobCallback | None) -> VerifyingHasher:
    """What checks the copy: size and digest, or the size alone for a blob just verified."""
    just_verified = before_blob is not None and before_blob(blob.digest) is True
    return VerifyingHasher(blob.digest, blob.size, hash_content=not just_verified)


@contextlib.contextmanager
def _naming_the_file(blob: BlobFile) -> Iterator[None]:
    """Integrity errors raised inside say which file is corrupt."""
    try:
        yield
    except IntegrityError as exc:
        raise type(exc)(f"blob file {blob.path} is corrupt: {exc}") from None


def _copy_chunks(
    source: _BlobReader,
    write: Callable[[bytes], object],
    hasher: VerifyingHasher,
    on_chunk: ChunkCallback | None,
) -> None:
    """The rest of ``source`` through ``hasher`` to ``write``, in ``CHUNK_SIZE`` reads."""
    while chunk := source.read(CHUNK_SIZE):
        hasher.update(chunk)
        if on_chunk is not None:
            on_chunk(len(chunk))
        write(chunk)


def copy_blob_into_tar(
    out: TarOutput | RegionWriter,
    blob: BlobFile,
    on_chunk: ChunkCallback | None = None,
    before_blob: BlobCallback | None = None,
) -> None:
    """Append the blob file's ``blob.size`` bytes to ``out`` (the member's data: its header
    and padding are the caller's), checked; raises before a byte past the size is written.

    ``out`` is the tar front to back, or a :class:`~dockerdrag.direct_regions.RegionWriter`
    at the member's data (the caller finishes it)."""
    hasher = _hasher(blob, before_blob)
    with _naming_the_file(blob), _BlobReader(blob.path) as source:
        if isinstance(out, DirectFileWriter | RegionWriter):
            # One byte more than is left tells a longer file from the end of the blob.
            while count := out.fill_from(source, blob.size - hasher.size + 1, hasher):
                if on_chunk is not None:
                    on_chunk(count)
        else:
            _copy_chunks(source, out.write, hasher, on_chunk)
        hasher.verify()


class ArrivingBlob(Protocol):
    """A blob's bytes read as its download writes them (``readinto`` waits for more; 0 at
    the end of the verified blob), closed after use."""

    def readinto(self, buffer: memoryview, /) -> int:
        """Read what has arrived past the position, waiting for a byte at least."""

    def close(self) -> None:
        """Let the file go."""

    def intact(self) -> bool:
        """Whether every byte read so far is the verified blob's: its download did not
        start the blob over since the reader was opened."""


def copy_arriving_blob(
    out: RegionWriter, blob: BlobFile, source: ArrivingBlob, on_chunk: ChunkCallback | None
) -> bool:
    """Copy the blob's bytes into the member's region as they arrive, up to the end of the
    verified blob; whether the copy is the verified blob (False: its download started
    over under the reader, and the caller copies the verified file instead).

    The blob is verified by its download (each byte hashed as it is written, before the
    reader sees it), so the copy checks the size only.
    """
    hasher = VerifyingHasher(blob.digest, blob.size, hash_content=False)
    with _naming_the_file(blob):
        while count := out.fill_from(source, blob.size - hasher.size + 1, hasher):
            if on_chunk is not None:
                on_chunk(count)
        hasher.verify()
    return source.intact()


def _kernel_copy(source: int, target: int, size: int, on_chunk: ChunkCallback | None) -> int:
    """Copy up to ``size`` bytes from offset 0 inside the kernel; how many were copied."""
    done = 0
    while done < size:
        wanted = min(KERNEL_COPY_STEP, size - done)
        copied = copy_file_range(source, target, wanted, src_offset=done, dst_offset=done)
        done += copied
        if copied and on_chunk is not None:
            on_chunk(copied)
        if copied < wanted:  # refused, or the source ends: the chunk copy takes over
            break
    return done


def copy_blob_to_file(
    target: Path,
    blob: BlobFile,
    on_chunk: ChunkCallback | None = None,
    before_blob: BlobCallback | None = None,
) -> None:
    """Write the blob file's bytes, checked, to the new file ``target`` and fsync it."""
    hasher = _hasher(blob, before_blob)
    with (
        _naming_the_file(blob),
        _BlobReader(blob.path) as source,
        open(target, "xb") as handle,
    ):
        if not hasher.hashes_content:
            copied = _kernel_copy(source.fileno(), handle.fileno(), blob.size, on_chunk)
            hasher.count_unseen(copied)
            source.seek(copied)
            handle.seek(copied)
        _copy_chunks(source, handle.write, hasher, on_chunk)
        hasher.verify()
        handle.flush()
        os.fsync(handle.fileno())


def _discard(chunk: bytes) -> None:
    """Where the bytes of a blob that is only hashed go."""


def link_blob_file(
    target: Path,
    blob: BlobFile,
    mode: int,
    mtime: int,
    on_chunk: ChunkCallback | None = None,
    before_blob: BlobCallback | None = None,
) -> bool:
    """Give the blob file, checked, the second name ``target`` (a hard link) and the
    modification time ``mtime``, if that is safe; False (nothing done) where it is not,
    and the caller copies it instead.

    Linked only a regular file of this user whose permission bits are ``mode`` (the
    bits a file the caller creates gets, so the link looks like a file it wrote), with
    no other name yet or already that ``mtime`` (so another layout linking it keeps its
    mtime), and only where the system links the pair (one file system). A blob that was
    not just verified is hashed first (read, not copied). The name is checked to point
    at the very file checked (a file replaced meanwhile is not linked). Its access time
    becomes now (a cache counts it as a use), and it is flushed to the disk (fsync), as
    a copied blob is.
    """
    hasher = _hasher(blob, before_blob)
    with _naming_the_file(blob), _BlobReader(blob.path) as source:
        found = os.fstat(source.fileno())
        if not (
            stat.S_ISREG(found.st_mode)
            and stat.S_IMODE(found.st_mode) == mode
            and owned_by_this_user(found)
            and (found.st_nlink == 1 or found.st_mtime_ns == mtime * 10**9)
        ):
            return False
        if hasher.hashes_content:
            _copy_chunks(source, _discard, hasher, on_chunk)
        else:
            hasher.count_unseen(found.st_size)
            if on_chunk is not None:
                on_chunk(found.st_size)
        hasher.verify()
        if not link_file(blob.path, target):
            return False
        linked = os.stat(target)
        if (linked.st_dev, linked.st_ino) != (found.st_dev, found.st_ino):
            target.unlink()
            return False
        os.utime(target, ns=(time.time_ns(), mtime * 10**9))
        if not _synced(target):
            target.unlink()
            return False
    return True


def _synced(linked: Path) -> bool:
    """Flush the linked file to the disk, as a copied one is (the cache wrote it without
    fsync); False where this user may not open it for writing, which fsync needs on
    some systems."""
    try:
        with open(linked, "rb+") as handle:
            os.fsync(handle.fileno())
    except PermissionError:
        return False
    return True
