"""Hand-written USTAR headers like Docker's Go archive/tar output (format section 4.2)."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from dockerdrag.errors import OutputError, UsageError
from dockerdrag.tarwriter import (
    BLOCK_SIZE,
    MAX_OCTAL_11,
    TYPE_DIRECTORY,
    TYPE_FILE,
    TYPE_SYMLINK,
    TarWriter,
    build_header,
    padding_for,
)

FIXTURE = (
    Path(__file__).parent / "fixtures" / "docker-save-20.10" / "emptylayers" / "docker-save.tar"
)


def test_file_header_fields_for_20_10() -> None:
    header = build_header("a/json", TYPE_FILE, size=826, mtime=1672628645)
    assert len(header) == BLOCK_SIZE
    assert header[:100] == b"a/json".ljust(100, b"\0")
    assert header[100:108] == b"0100644\0"
    assert header[108:116] == b"0000000\0"
    assert header[116:124] == b"0000000\0"
    assert header[124:136] == b"%011o\0" % 826
    assert header[136:148] == b"%011o\0" % 1672628645
    assert header[156:157] == b"0"
    assert header[157:257] == b"\0" * 100
    assert header[257:265] == b"ustar\x0000"
    assert header[265:297] == b"root".ljust(32, b"\0")
    assert header[297:329] == b"root".ljust(32, b"\0")
    assert header[329:345] == b"0000000\x000000000\0"
    assert header[345:] == b"\0" * (BLOCK_SIZE - 345)
    checksum = sum(header[:148]) + 8 * ord(" ") + sum(header[156:])
    assert header[148:156] == b"%06o\0 " % checksum


def test_header_equals_a_real_docker_header() -> None:
    data = FIXTURE.read_bytes()
    with tarfile.open(FIXTURE) as archive:
        for member in archive.getmembers():
            typeflag = member.type
            name = member.name + "/" if member.isdir() else member.name
            expected = data[member.offset : member.offset + BLOCK_SIZE]
            built = build_header(name, typeflag, size=member.size, mtime=int(member.mtime))
            assert built == expected, member.name


@pytest.mark.parametrize(
    ("flavour", "modes", "owner"),
    [
        ("20.10", (b"0040755\0", b"0100644\0", b"0120777\0"), b"root"),
        ("23", (b"0040755\0", b"0100644\0", b"0120777\0"), b""),
        ("24", (b"0000755\0", b"0000644\0", b"0000777\0"), b""),
    ],
)
def test_header_flavours(flavour: str, modes: tuple[bytes, bytes, bytes], owner: bytes) -> None:
    for typeflag, mode in zip((TYPE_DIRECTORY, TYPE_FILE, TYPE_SYMLINK), modes, strict=True):
        header = build_header("x", typeflag, linkname="../y", flavour=flavour)
        assert header[100:108] == mode
        assert header[265:297] == owner.ljust(32, b"\0")
    symlink = build_header("x", TYPE_SYMLINK, linkname="../y/layer.tar", flavour=flavour)
    assert symlink[157:257] == b"../y/layer.tar".ljust(100, b"\0")


def test_unknown_flavour_and_out_of_range_fields() -> None:
    with pytest.raises(UsageError):
        build_header("x", TYPE_FILE, flavour="25")
    with pytest.raises(UsageError):
        TarWriter(io.BytesIO(), "19")
    with pytest.raises(OutputError):
        build_header("x", TYPE_FILE, size=MAX_OCTAL_11 + 1)
    with pytest.raises(OutputError):
        build_header("x", TYPE_FILE, mtime=-1)
    with pytest.raises(OutputError):
        build_header("n" * 101, TYPE_FILE)


def test_padding() -> None:
    assert [padding_for(n) for n in (0, 1, 511, 512, 513)] == [0, 511, 1, 0, 511]


def test_archive_layout_has_no_record_padding() -> None:
    out = io.BytesIO()
    writer = TarWriter(out)
    writer.add_directory("d", 5)
    writer.add_bytes("d/VERSION", b"1.0", 5)
    writer.add_symlink("d/layer.tar", "../e/layer.tar", 6)
    writer.finish()
    data = out.getvalue()
    assert len(data) == 4 * BLOCK_SIZE + 2 * BLOCK_SIZE
    assert data[-2 * BLOCK_SIZE :] == b"\0" * (2 * BLOCK_SIZE)
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        names = [(m.name, m.type, m.mtime, m.linkname) for m in archive.getmembers()]
        assert names == [
            ("d", tarfile.DIRTYPE, 5, ""),
            ("d/VERSION", tarfile.REGTYPE, 5, ""),
            ("d/layer.tar", tarfile.SYMTYPE, 6, "../e/layer.tar"),
        ]
        member = archive.extractfile("d/VERSION")
        assert member is not None and member.read() == b"1.0"


def test_stream_entry_is_patched_with_its_size(tmp_path: Path) -> None:
    chunks = [b"a" * 1000, b"", b"b" * 24, b"c" * 2000]
    path = tmp_path / "out.tar"
    with path.open("wb") as out:
        writer = TarWriter(out)
        size = writer.add_stream("layer.tar", iter(chunks), 42)
        writer.add_bytes("after", b"x", 1)
        writer.finish()
    assert size == 3024
    data = path.read_bytes()
    assert data[:BLOCK_SIZE] == build_header("layer.tar", TYPE_FILE, size=3024, mtime=42)
    assert data[BLOCK_SIZE : BLOCK_SIZE + 3024] == b"".join(chunks)
    assert data[BLOCK_SIZE + 3024 : BLOCK_SIZE + 3072] == b"\0" * 48
    after = BLOCK_SIZE + 3072
    assert data[after : after + BLOCK_SIZE] == build_header("after", TYPE_FILE, size=1, mtime=1)
    assert len(data) == after + 2 * BLOCK_SIZE + 2 * BLOCK_SIZE


def test_stream_entry_of_block_multiple_and_empty() -> None:
    out = io.BytesIO()
    writer = TarWriter(out)
    assert writer.add_stream("a", iter([b"z" * 512]), 0) == 512
    assert writer.add_stream("b", iter([]), 0) == 0
    writer.finish()
    assert len(out.getvalue()) == 3 * BLOCK_SIZE + 2 * BLOCK_SIZE + 0
