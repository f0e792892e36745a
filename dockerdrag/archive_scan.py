"""One pass over an image archive (a tar, possibly compressed, or a directory): every
member hashed, every compressed member decompressed and hashed, the small JSON
documents kept.

Members can come in any order, so nothing is checked here but the archive's own
structure (:mod:`dockerdrag.tarstream`); :mod:`dockerdrag.verify` checks the
references once the pass is done. Per regular file the scan keeps its sha256 and
size, its compression (by magic bytes, as Docker detects it) and the sha256 and size
of its uncompressed bytes (a layer's diff_id; for an uncompressed member that is its
own digest). A member that starts like JSON and is at most
:data:`~dockerdrag.manifest.MAX_MANIFEST_BYTES` is kept in memory for parsing, up to
:data:`MAX_DOCUMENT_TOTAL` bytes in all. Memory stays bounded by a few read buffers
however large the archive.
"""

from __future__ import annotations

import hashlib
import io
import os
import posixpath
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Final, cast

from .digest import Digest
from .errors import CorruptArchiveError, DockerDragError, IntegrityError, NotFoundError
from .layers import CHUNK_SIZE, Compression, decompressing, sniff_compression
from .manifest import MAX_MANIFEST_BYTES
from .store import describe_os_error
from .tarstream import MemberKind, normalize_name, read_tar

__all__ = ["MAX_DOCUMENT_TOTAL", "ArchiveMember", "ChunkCallback", "Scan", "scan_archive"]

MAX_DOCUMENT_TOTAL: Final = 256 * 1024 * 1024
"""Most bytes of JSON documents kept from one archive."""
_SNIFF_LENGTH: Final = 6
_MAX_LINK_HOPS: Final = 16

ChunkCallback = Callable[[int], None]
"""Called with the size of every chunk of member data read; may raise to stop the scan."""


@dataclass(frozen=True)
class ArchiveMember:
    """One regular file of the archive.

    ``offset`` is where its bytes start in the tar stream (in the decompressed
    stream when the archive itself is compressed), None in a directory layout.
    ``diff_id`` is the sha256 of its uncompressed bytes, None if they could not be
    decompressed (``decompression_error`` says why).
    """

    name: str
    size: int
    digest: Digest
    offset: int | None
    compression: Compression
    diff_id: Digest | None
    uncompressed_size: int | None
    decompression_error: str | None = None


@dataclass
class Scan:
    """What one pass over an archive found."""

    label: str
    compression: Compression
    files: dict[str, ArchiveMember] = field(default_factory=dict)
    links: dict[str, str] = field(default_factory=dict)
    directories: set[str] = field(default_factory=set)
    documents: dict[str, bytes] = field(default_factory=dict)
    total_size: int = 0

    def resolve(self, name: str) -> ArchiveMember | None:
        """The regular file ``name`` is or links to (symlinks and hard links followed)."""
        current = normalize_name(name)
        for _ in range(_MAX_LINK_HOPS):
            found = self.files.get(current)
            if found is not None:
                return found
            target = self.links.get(current)
            if target is None:
                return None
            current = target
        return None

    def document(self, name: str) -> bytes | None:
        """The kept bytes of the JSON document ``name`` (links followed), or None."""
        found = self.resolve(name)
        return None if found is None else self.documents.get(found.name)

    def _add_name(self, name: str) -> None:
        if name in self.files or name in self.links or name in self.directories:
            raise CorruptArchiveError(f"{self.label}: member {name!r} appears twice")


class _HashingReader(io.RawIOBase):
    """Reads ``inner`` and hashes (and optionally keeps) every byte that passes."""

    def __init__(self, inner: io.RawIOBase, on_chunk: ChunkCallback | None) -> None:
        super().__init__()
        self._inner = inner
        self._on_chunk = on_chunk
        self.hash = hashlib.sha256()
        self.size = 0
        self.kept: list[bytes] | None = None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        count = self._inner.readinto(buffer) or 0
        if count:
            view = memoryview(buffer)[:count]
            self.hash.update(view)
            self.size += count
            if self.kept is not None:
                self.kept.append(bytes(view))
            if self._on_chunk is not None:
                self._on_chunk(count)
        return count


def _drain(stream: BinaryIO) -> None:
    while stream.read(CHUNK_SIZE):
        pass


def _uncompressed_digest(
    source: BinaryIO, compression: Compression, name: str
) -> tuple[Digest | None, int | None, str | None]:
    """The sha256 and size of the decompressed bytes, or the decompression error; reads
    ``source`` to its end either way (closing the decompressor closes ``source``)."""
    digest = hashlib.sha256()
    size = 0
    with decompressing(source, compression, name) as stream:
        try:
            while chunk := stream.read(CHUNK_SIZE):
                digest.update(chunk)
                size += len(chunk)
        except IntegrityError as exc:
            _drain(source)
            return None, None, str(exc)
        _drain(source)
    return Digest(digest.hexdigest()), size, None


@dataclass(frozen=True)
class _Member:
    """A regular file to scan: its name, data, size and offset in the tar stream."""

    name: str
    data: io.RawIOBase
    size: int
    offset: int | None


def _scan_file(scan: Scan, member: _Member, on_chunk: ChunkCallback | None) -> None:
    """Hash one regular file's bytes (and their decompressed form) and keep a document."""
    name = member.name
    hashing = _HashingReader(member.data, on_chunk)
    if member.size <= MAX_MANIFEST_BYTES:
        hashing.kept = []  # until its first bytes show whether it is JSON
    buffered = io.BufferedReader(hashing, CHUNK_SIZE)
    readable = cast(BinaryIO, buffered)
    head = buffered.peek(_SNIFF_LENGTH)[:_SNIFF_LENGTH]
    compression = sniff_compression(head)
    if compression is not Compression.NONE or head.lstrip()[:1] not in (b"{", b"["):
        hashing.kept = None
    diff_id = None
    uncompressed_size: int | None = None
    error = None
    if compression is not Compression.NONE:
        diff_id, uncompressed_size, error = _uncompressed_digest(readable, compression, name)
    else:
        _drain(readable)
    digest = Digest(hashing.hash.hexdigest())
    if compression is Compression.NONE:
        diff_id, uncompressed_size = digest, hashing.size
    scan.files[name] = ArchiveMember(
        name, hashing.size, digest, member.offset, compression, diff_id, uncompressed_size, error
    )
    scan.total_size += hashing.size
    if hashing.kept is not None and hashing.size <= MAX_MANIFEST_BYTES:
        _keep_document(scan, name, b"".join(hashing.kept))


def _keep_document(scan: Scan, name: str, data: bytes) -> None:
    kept = sum(len(document) for document in scan.documents.values())
    if kept + len(data) > MAX_DOCUMENT_TOTAL:
        raise CorruptArchiveError(
            f"{scan.label}: more than {MAX_DOCUMENT_TOTAL} bytes of JSON documents"
        )
    scan.documents[name] = data


def _link_target(name: str, target: str, symbolic: bool) -> str:
    """The member a link points at: a symlink relative to its directory, a hard link
    relative to the archive root; an absolute target points nowhere in the archive."""
    if target.startswith("/"):
        return "\0absolute"
    base = posixpath.dirname(name) if symbolic else ""
    return normalize_name(posixpath.join(base, target))


def _scan_tar(scan: Scan, stream: BinaryIO, on_chunk: ChunkCallback | None) -> None:
    for member in read_tar(stream, scan.label):
        name = normalize_name(member.name)
        if not name:
            continue
        scan._add_name(name)
        if member.kind is MemberKind.FILE:
            _scan_file(scan, _Member(name, member.data, member.size, member.offset), on_chunk)
        elif member.kind is MemberKind.DIRECTORY:
            scan.directories.add(name)
        elif member.kind in (MemberKind.SYMLINK, MemberKind.HARDLINK):
            symbolic = member.kind is MemberKind.SYMLINK
            scan.links[name] = _link_target(name, member.link_target, symbolic)


def _walk(root: Path) -> Iterator[tuple[str, os.DirEntry[str]]]:
    """Every entry below ``root`` with its slash-separated relative name, sorted."""
    pending = [("", root)]
    while pending:
        prefix, directory = pending.pop()
        with os.scandir(directory) as entries:
            listed = sorted(entries, key=lambda entry: entry.name)
        for entry in listed:
            name = f"{prefix}{entry.name}"
            yield name, entry
            if entry.is_dir(follow_symlinks=False):
                pending.append((f"{name}/", Path(entry.path)))


def _scan_directory(scan: Scan, root: Path, on_chunk: ChunkCallback | None) -> None:
    for name, entry in _walk(root):
        if entry.is_symlink():
            scan.links[name] = _link_target(name, os.readlink(entry.path), True)
        elif entry.is_dir(follow_symlinks=False):
            scan.directories.add(name)
        elif entry.is_file(follow_symlinks=False):
            with open(entry.path, "rb", buffering=0) as handle:
                size = os.fstat(handle.fileno()).st_size
                _scan_file(scan, _Member(name, handle, size, None), on_chunk)


def scan_archive(path: Path, on_chunk: ChunkCallback | None = None) -> Scan:
    """Read the archive (tar file, compressed tar file or directory) at ``path`` once.

    Raises CorruptArchiveError for a damaged or truncated tar, NotFoundError if
    ``path`` does not exist and DockerDragError if it cannot be read.
    """
    label = str(path)
    try:
        if path.is_dir():
            scan = Scan(label, Compression.NONE)
            _scan_directory(scan, path, on_chunk)
            return scan
        with ExitStack() as stack:
            raw = stack.enter_context(open(path, "rb"))
            compression = sniff_compression(raw.read(_SNIFF_LENGTH))
            raw.seek(0)
            stream: BinaryIO = raw
            if compression is not Compression.NONE:
                stream = stack.enter_context(decompressing(raw, compression, path.name))
            scan = Scan(label, compression)
            _scan_tar(scan, stream, on_chunk)
            return scan
    except FileNotFoundError as exc:
        raise NotFoundError(f"no such archive: {label}") from exc
    except OSError as exc:
        raise DockerDragError(describe_os_error(exc, f"reading {label}")) from exc
