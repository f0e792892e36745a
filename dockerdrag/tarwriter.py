"""USTAR tar writing exactly like the Go ``archive/tar`` headers ``docker save`` emits.

Format section 4.2: one hand-written 512-byte USTAR header per entry (no PAX or GNU
records), file data padded with NULs to 512 bytes, two zero blocks at the end and no
padding to a 10240-byte record. Three header flavours exist:

* ``"20.10"``: modes include the file-type bits, uname/gname ``root``;
* ``"23"``: modes include the file-type bits, empty uname/gname;
* ``"24"``: no file-type bits, empty uname/gname.

:meth:`TarWriter.add_stream` writes an entry whose size is not known in advance to a
seekable output: a placeholder header, the data, then the real header patched in.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final, Protocol

from .errors import OutputError, UsageError

__all__ = [
    "BLOCK_SIZE",
    "END_OF_ARCHIVE",
    "HEADER_FLAVOURS",
    "MAX_OCTAL_11",
    "TYPE_DIRECTORY",
    "TYPE_FILE",
    "TYPE_SYMLINK",
    "TarOutput",
    "TarWriter",
    "build_header",
    "member_bytes",
    "padding_for",
]

BLOCK_SIZE: Final = 512
END_OF_ARCHIVE: Final = bytes(2 * BLOCK_SIZE)
"""What ends the archive: two zero blocks (no record padding)."""
HEADER_FLAVOURS: Final = ("20.10", "23", "24")
MAX_OCTAL_11: Final = 8**11 - 1
"""The largest size or mtime an 11-digit octal field holds (8 GiB - 1)."""

TYPE_FILE: Final = b"0"
TYPE_SYMLINK: Final = b"2"
TYPE_DIRECTORY: Final = b"5"

_TYPE_BITS: Final = {TYPE_FILE: 0o100000, TYPE_SYMLINK: 0o120000, TYPE_DIRECTORY: 0o040000}
_PERMISSIONS: Final = {TYPE_FILE: 0o644, TYPE_SYMLINK: 0o777, TYPE_DIRECTORY: 0o755}


class TarOutput(Protocol):
    """Where a tar goes: a binary file, or :class:`~dockerdrag.direct_io.DirectFileWriter`."""

    def write(self, data: bytes, /) -> int: ...

    def tell(self) -> int: ...

    def seek(self, offset: int, whence: int = 0, /) -> int: ...


def _octal(value: int, width: int) -> bytes:
    """``width - 1`` zero-padded octal digits and a NUL, as Go's ``formatOctal``."""
    return b"%0*o\0" % (width - 1, value)


def _text_field(text: str, width: int, what: str) -> bytes:
    encoded = text.encode("utf-8")
    if len(encoded) > width:
        raise OutputError(f"tar {what} too long for a USTAR header: {text!r}")
    return encoded.ljust(width, b"\0")


def padding_for(size: int) -> int:
    """How many NUL bytes follow ``size`` bytes of data to fill the last block."""
    return -size % BLOCK_SIZE


def build_header(
    name: str,
    typeflag: bytes,
    *,
    size: int = 0,
    mtime: int = 0,
    linkname: str = "",
    flavour: str = "20.10",
) -> bytes:
    """One 512-byte USTAR header for ``name`` (a directory name ends with ``/``)."""
    if flavour not in HEADER_FLAVOURS:
        raise UsageError(f"unknown tar header flavour {flavour!r}; use one of {HEADER_FLAVOURS}")
    if not 0 <= size <= MAX_OCTAL_11:
        raise OutputError(f"{name}: size {size} does not fit a USTAR header")
    if not 0 <= mtime <= MAX_OCTAL_11:
        raise OutputError(f"{name}: mtime {mtime} does not fit a USTAR header")
    mode = _PERMISSIONS[typeflag]
    if flavour != "24":
        mode |= _TYPE_BITS[typeflag]
    owner = "root" if flavour == "20.10" else ""
    header = bytearray(
        _text_field(name, 100, "name")
        + _octal(mode, 8)
        + _octal(0, 8)  # uid
        + _octal(0, 8)  # gid
        + _octal(size, 12)
        + _octal(mtime, 12)
        + b" " * 8  # checksum placeholder
        + typeflag
        + _text_field(linkname, 100, "link name")
        + b"ustar\x0000"
        + _text_field(owner, 32, "uname")
        + _text_field(owner, 32, "gname")
        + _octal(0, 8)  # devmajor
        + _octal(0, 8)  # devminor
    ).ljust(BLOCK_SIZE, b"\0")
    header[148:156] = _octal(sum(header), 7) + b" "
    return bytes(header)


def member_bytes(
    name: str,
    typeflag: bytes,
    *,
    mtime: int,
    data: bytes = b"",
    linkname: str = "",
    flavour: str = "20.10",
) -> bytes:
    """A whole member whose data is known: header, data, NUL padding to the block."""
    header = build_header(
        name, typeflag, size=len(data), mtime=mtime, linkname=linkname, flavour=flavour
    )
    return header + data + bytes(padding_for(len(data)))


class TarWriter:
    """Write a USTAR stream entry by entry to ``out`` (seekable for :meth:`add_stream`)."""

    def __init__(self, out: TarOutput, flavour: str = "20.10") -> None:
        if flavour not in HEADER_FLAVOURS:
            raise UsageError(
                f"unknown tar header flavour {flavour!r}; use one of {HEADER_FLAVOURS}"
            )
        self._out = out
        self._flavour = flavour

    def _header(
        self, name: str, typeflag: bytes, size: int, mtime: int, linkname: str = ""
    ) -> bytes:
        return build_header(
            name, typeflag, size=size, mtime=mtime, linkname=linkname, flavour=self._flavour
        )

    def add_member(
        self, name: str, typeflag: bytes, mtime: int, data: bytes = b"", linkname: str = ""
    ) -> None:
        """A member whose data is known (see :func:`member_bytes`)."""
        self._out.write(
            member_bytes(
                name, typeflag, mtime=mtime, data=data, linkname=linkname, flavour=self._flavour
            )
        )

    def add_directory(self, name: str, mtime: int) -> None:
        """A directory entry; ``name`` gets a trailing ``/`` if it lacks one."""
        self.add_member(name if name.endswith("/") else name + "/", TYPE_DIRECTORY, mtime)

    def add_symlink(self, name: str, target: str, mtime: int) -> None:
        """A symbolic link entry pointing at ``target``."""
        self.add_member(name, TYPE_SYMLINK, mtime, linkname=target)

    def add_bytes(self, name: str, data: bytes, mtime: int) -> None:
        """A regular file holding ``data``."""
        self.add_member(name, TYPE_FILE, mtime, data)

    def add_stream(self, name: str, chunks: Iterable[bytes], mtime: int) -> int:
        """A regular file whose data arrives in ``chunks`` of unknown total size.

        Writes a placeholder header, streams the chunks, then seeks back to patch the
        header with the real size and checksum. Returns the size. ``out`` must be seekable.
        """
        header_offset = self._out.tell()
        self._out.write(self._header(name, TYPE_FILE, 0, mtime))
        size = 0
        for chunk in chunks:
            size += len(chunk)
            if size > MAX_OCTAL_11:
                raise OutputError(f"{name}: larger than {MAX_OCTAL_11} bytes, not supported")
            self._out.write(chunk)
        self._out.write(b"\0" * padding_for(size))
        end_offset = self._out.tell()
        self._out.seek(header_offset)
        self._out.write(self._header(name, TYPE_FILE, size, mtime))
        self._out.seek(end_offset)
        return size

    def finish(self) -> None:
        """End the archive with two zero blocks (no record padding)."""
        self._out.write(END_OF_ARCHIVE)
