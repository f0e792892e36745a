"""A strict, streaming tar reader: one forward pass, member by member.

:func:`read_tar` walks a tar stream (which need not be seekable) and yields each
member with a stream of its data; nothing is buffered beyond one member's pax
header. Unlike :mod:`tarfile`, which ends an archive silently at a damaged header,
every defect is an error here: a header whose checksum is wrong, a member cut
short, an archive without its end-of-archive marker (a truncated file), a pax or
GNU long-name record that is malformed or too large.

Understood: USTAR (with ``prefix``), GNU long names (``L``, ``K``), pax extended
headers (``path``, ``linkpath``, ``size``), base-256 sizes. Global pax headers
(``g``) are skipped. Member names are returned as written (UTF-8, undecodable
bytes replaced); :func:`normalize_name` makes them comparable.
"""

from __future__ import annotations

import io
import posixpath
from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum
from typing import BinaryIO, Final

from .errors import CorruptArchiveError

__all__ = ["MemberKind", "TarMember", "normalize_name", "read_tar"]

_BLOCK: Final = 512
_MAX_EXTENDED_HEADER: Final = 1 << 20
"""Largest pax or GNU long-name record read (real ones are a few hundred bytes)."""
_SKIP_CHUNK: Final = 1 << 20


class MemberKind(Enum):
    """What a tar member is."""

    FILE = "file"
    DIRECTORY = "directory"
    SYMLINK = "symlink"
    HARDLINK = "hardlink"
    OTHER = "other"  # devices, fifos: no data


_KINDS: Final = {
    b"0": MemberKind.FILE,
    b"\0": MemberKind.FILE,
    b"7": MemberKind.FILE,  # contiguous file
    b"1": MemberKind.HARDLINK,
    b"2": MemberKind.SYMLINK,
    b"5": MemberKind.DIRECTORY,
}
_HEADER_ONLY: Final = frozenset({b"1", b"2", b"3", b"4", b"5", b"6"})
"""Links, devices, directories and fifos: any size in their header is not data."""


@dataclass
class TarMember:
    """One member: its name, kind, data size and where its data starts in the stream.

    ``data`` reads the member's bytes (only until the next member is asked for;
    reading past a truncation raises CorruptArchiveError).
    ``link_target`` is the target of a symlink or hard link, else empty.
    """

    name: str
    kind: MemberKind
    size: int
    offset: int
    link_target: str
    data: io.RawIOBase


def normalize_name(name: str) -> str:
    """A member name without ``./`` prefixes, duplicate or trailing slashes."""
    cleaned = posixpath.normpath("/" + name).lstrip("/")
    return "" if cleaned == "." else cleaned


class _Source:
    """The archive stream and how many bytes were read from it."""

    def __init__(self, stream: BinaryIO, label: str) -> None:
        self.stream = stream
        self.label = label
        self.position = 0

    def read(self, size: int) -> bytes:
        data = self.stream.read(size)
        self.position += len(data)
        return data

    def read_exactly(self, size: int, what: str) -> bytes:
        parts = []
        remaining = size
        while remaining:
            data = self.read(min(remaining, _SKIP_CHUNK))
            if not data:
                raise CorruptArchiveError(f"{self.label} is truncated: it ends inside {what}")
            parts.append(data)
            remaining -= len(data)
        return b"".join(parts)


class _MemberData(io.RawIOBase):
    """The data of one member: at most ``size`` bytes; an early end is an error."""

    def __init__(self, source: _Source, name: str, size: int) -> None:
        super().__init__()
        self._source = source
        self._name = name
        self.remaining = size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
        wanted = min(len(buffer), self.remaining)
        if wanted == 0:
            return 0
        data = self._source.read(wanted)
        if not data:
            raise CorruptArchiveError(
                f"{self._source.label} is truncated: member {self._name!r} is cut short"
            )
        buffer[: len(data)] = data
        self.remaining -= len(data)
        return len(data)

    def skip_rest(self) -> None:
        while self.remaining:
            data = self._source.read(min(self.remaining, _SKIP_CHUNK))
            if not data:
                raise CorruptArchiveError(
                    f"{self._source.label} is truncated: member {self._name!r} is cut short"
                )
            self.remaining -= len(data)


def _number(field: bytes, what: str, label: str) -> int:
    """An octal (or GNU base-256) header number."""
    if field and field[0] & 0x80:
        value = int.from_bytes(bytes([field[0] & 0x7F]) + field[1:], "big")
        if field[0] & 0x40:
            raise CorruptArchiveError(f"{label}: negative {what} in a tar header")
        return value
    text = field.split(b"\0", 1)[0].strip(b" ")
    if not text:
        return 0
    try:
        return int(text, 8)
    except ValueError:
        raise CorruptArchiveError(f"{label}: invalid {what} {text!r} in a tar header") from None


def _check_checksum(block: bytes, label: str, offset: int) -> None:
    try:
        stored = _number(block[148:156], "checksum", label)
    except CorruptArchiveError:
        stored = -1
    header = block[:148] + b" " * 8 + block[156:]
    unsigned = sum(header)
    signed = sum(b - 256 if b > 127 else b for b in header)
    if stored not in (unsigned, signed):
        if offset == 0:
            raise CorruptArchiveError(f"{label} is not a tar archive (or its start is damaged)")
        raise CorruptArchiveError(
            f"{label}: the tar header at byte {offset} is damaged (checksum mismatch)"
        )


def _text(field: bytes) -> str:
    return field.split(b"\0", 1)[0].decode("utf-8", errors="replace")


def _pax_records(data: bytes, label: str) -> dict[str, str]:
    """The ``key=value`` records of a pax extended header."""
    records: dict[str, str] = {}
    position = 0
    while position < len(data):
        space = data.find(b" ", position)
        try:
            length = int(data[position:space])
        except ValueError:
            raise CorruptArchiveError(f"{label}: malformed pax header") from None
        record = data[space + 1 : position + length]
        if space < 0 or length <= 0 or not record.endswith(b"\n") or b"=" not in record:
            raise CorruptArchiveError(f"{label}: malformed pax header")
        key, _, value = record[:-1].partition(b"=")
        records[key.decode("utf-8", errors="replace")] = value.decode("utf-8", errors="replace")
        position += length
    return records


def _extended(source: _Source, size: int, what: str) -> bytes:
    if size > _MAX_EXTENDED_HEADER:
        raise CorruptArchiveError(f"{source.label}: {what} of {size} bytes is too large")
    data = source.read_exactly(size, what)
    source.read_exactly(-size % _BLOCK, what)
    return data


def _end_of_archive(source: _Source) -> None:
    """After one zero block: a second one, or the end of the file."""
    block = source.read(_BLOCK)
    if block and block != bytes(len(block)):
        raise CorruptArchiveError(
            f"{source.label}: data after an end-of-archive block at byte {source.position}"
        )


def read_tar(stream: BinaryIO, label: str) -> Iterator[TarMember]:
    """The members of the tar ``stream`` in order (``label`` names it in errors).

    A member's ``data`` must be read before the next member is asked for; what is
    left unread is skipped. Raises CorruptArchiveError for any defect.
    """
    source = _Source(stream, label)
    overrides: dict[str, str] = {}
    while True:
        offset = source.position
        block = source.read(_BLOCK)
        if len(block) < _BLOCK:
            if not block:
                raise CorruptArchiveError(
                    f"{label} is truncated: it ends without the end-of-archive marker"
                )
            raise CorruptArchiveError(f"{label} is truncated: it ends inside a tar header")
        if block == bytes(_BLOCK):
            if overrides:
                raise CorruptArchiveError(f"{label}: an extended header describes no member")
            _end_of_archive(source)
            return
        _check_checksum(block, label, offset)
        type_flag = block[156:157]
        size = _number(block[124:136], "size", label)
        if type_flag in (b"x", b"L", b"K"):
            data = _extended(source, size, "an extended header")
            if type_flag == b"x":
                overrides.update(_pax_records(data, label))
            else:
                key = "path" if type_flag == b"L" else "linkpath"
                overrides[key] = data.split(b"\0", 1)[0].decode("utf-8", errors="replace")
            continue
        if type_flag == b"g":
            _extended(source, size, "a global pax header")
            continue
        name = _text(block[0:100])
        if block[257:263] == b"ustar\0" and block[345] != 0:
            name = _text(block[345:500]) + "/" + name
        name = overrides.get("path", name)
        link_target = overrides.get("linkpath", _text(block[157:257]))
        if "size" in overrides:
            try:
                size = int(overrides["size"])
            except ValueError:
                raise CorruptArchiveError(f"{label}: malformed pax size") from None
        overrides = {}
        kind = _KINDS.get(type_flag, MemberKind.OTHER)
        if type_flag in _HEADER_ONLY:
            size = 0
        data_stream = _MemberData(source, name, size)
        yield TarMember(name, kind, size, source.position, link_target, data_stream)
        data_stream.skip_rest()
        source.read_exactly(-size % _BLOCK, f"the padding of member {name!r}")
