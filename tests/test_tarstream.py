"""The strict streaming tar reader against tars Python's tarfile writes."""

from __future__ import annotations

import io
import tarfile

import pytest

from dockerdrag.errors import CorruptArchiveError
from dockerdrag.tarstream import MemberKind, normalize_name, read_tar

LONG = "d/" + "x" * 150 + "/file.txt"


def build(tar_format: int, **members: bytes) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tar_format) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name.replace("__", "/"))
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("link")
        link.type = tarfile.SYMTYPE
        link.linkname = "y" * (60 if tar_format == tarfile.USTAR_FORMAT else 120)
        tar.addfile(link)
        directory = tarfile.TarInfo("dir")
        directory.type = tarfile.DIRTYPE
        tar.addfile(directory)
    return buffer.getvalue()


def read_all(data: bytes) -> list[tuple[str, MemberKind, bytes, str, int]]:
    return [
        (m.name, m.kind, m.data.read(), m.link_target, m.offset)
        for m in read_tar(io.BytesIO(data), "t.tar")
    ]


@pytest.mark.parametrize(
    "tar_format", [tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT]
)
def test_names_kinds_data_and_offsets(tar_format: int) -> None:
    members = {"a.txt": b"hello", "b__c.bin": bytes(1000)}
    if tar_format != tarfile.USTAR_FORMAT:
        members[LONG.replace("/", "__")] = b"long"
    data = build(tar_format, **members)
    found = read_all(data)
    names = [name for name, *_ in found]
    assert names[:2] == ["a.txt", "b/c.bin"]
    assert found[0][2] == b"hello" and found[1][2] == bytes(1000)
    assert data[found[1][4] : found[1][4] + 1000] == bytes(1000)
    if tar_format != tarfile.USTAR_FORMAT:
        assert found[2][:3] == (LONG, MemberKind.FILE, b"long")
        assert found[-2][:2] == ("link", MemberKind.SYMLINK) and found[-2][3] == "y" * 120
    assert found[-1][:2] == ("dir/", MemberKind.DIRECTORY)


def test_unread_data_is_skipped() -> None:
    data = build(tarfile.USTAR_FORMAT, a=b"1" * 3000, b=b"2")
    members = read_tar(io.BytesIO(data), "t.tar")
    assert next(members).name == "a"
    second = next(members)
    assert (second.name, second.data.read()) == ("b", b"2")


def test_a_damaged_header_is_an_error() -> None:
    data = bytearray(build(tarfile.USTAR_FORMAT, a=b"1", b=b"2"))
    data[1024 + 10] ^= 1  # the second member's name
    with pytest.raises(CorruptArchiveError, match="byte 1024 is damaged"):
        read_all(bytes(data))


@pytest.mark.parametrize("cut", [100, 600, 1024, 1500, 2048])
def test_truncation_is_an_error(cut: int) -> None:
    data = build(tarfile.USTAR_FORMAT, a=b"1" * 700)
    with pytest.raises(CorruptArchiveError, match="truncated"):
        read_all(data[:cut])


def test_data_after_the_end_marker_is_an_error() -> None:
    data = build(tarfile.USTAR_FORMAT, a=b"1")
    end = 4 * 512  # after a's header and data, the link's and the directory's headers
    assert data[end : end + 1024] == bytes(1024)
    with pytest.raises(CorruptArchiveError, match="data after an end-of-archive block"):
        read_all(data[: end + 512] + b"x" * 512)


def test_not_a_tar() -> None:
    with pytest.raises(CorruptArchiveError, match="not a tar archive"):
        read_all(b"# a README, not a tar\n" * 40)


def test_normalize_name() -> None:
    assert normalize_name("./blobs//sha256/ab/") == "blobs/sha256/ab"
    assert normalize_name("../../etc/passwd") == "etc/passwd"
    assert normalize_name("./") == ""
