"""dockerdrag.blob_copy: blob files copied into the oci tar and the oci-dir layout.

The kernel copy of a blob verified in this pull, its fallback where the call is missing
or refused, the tar's direct-block path, checks that still catch a wrong file, and a
cancelled copy that leaves nothing behind.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from dockerdrag import blob_copy, os_copies
from dockerdrag.blob_copy import BlobFile, copy_blob_into_tar, copy_blob_to_file
from dockerdrag.digest import Digest
from dockerdrag.direct_io import DirectFileWriter
from dockerdrag.errors import DigestMismatchError, SizeMismatchError
from dockerdrag.oci_archive import OciImage, OciManifest, write_oci_archive, write_oci_dir
from dockerdrag.store import atomic_output
from tests.support import images as im
from tests.test_oci_archive import parsed

DATA = os.urandom((3 << 20) + 12345)  # several kernel-copy steps and direct blocks


def blob_file(tmp_path: Path, data: bytes = DATA, *, stored: bytes | None = None) -> BlobFile:
    """A blob of ``data`` whose cache file holds ``stored`` (default: ``data``)."""
    path = tmp_path / "cached-blob"
    path.write_bytes(data if stored is None else stored)
    return BlobFile(Digest.of(data), len(data), path)


def verified(digest: Digest) -> bool:
    return True  # as the pull says of a blob it downloaded and hashed itself


def not_verified(digest: Digest) -> None:
    return None  # cached by an earlier run: hash it again


def spy_kernel_copy(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the bytes the real kernel copy moves."""
    real = os.copy_file_range
    copied: list[int] = []

    def spy(src: int, dst: int, count: int, src_off: int, dst_off: int) -> int:
        done = real(src, dst, count, src_off, dst_off)
        copied.append(done)
        return done

    monkeypatch.setattr(os_copies, "_copy_file_range", spy)
    monkeypatch.setattr(blob_copy, "KERNEL_COPY_STEP", 1 << 20)
    return copied


def refused_after(first: int) -> Callable[[int, int, int, int, int], int]:
    """A kernel copy that copies ``first`` bytes, then answers EXDEV."""
    real = os.copy_file_range
    calls = 0

    def copy(src: int, dst: int, count: int, src_off: int, dst_off: int) -> int:
        nonlocal calls
        calls += 1
        if calls == 1 and first:
            return real(src, dst, min(count, first), src_off, dst_off)
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    return copy


def test_a_verified_blob_is_copied_by_the_kernel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    copied = spy_kernel_copy(monkeypatch)
    chunks: list[int] = []
    copy_blob_to_file(tmp_path / "out", blob_file(tmp_path), chunks.append, verified)
    assert (tmp_path / "out").read_bytes() == DATA
    assert sum(copied) == len(DATA) and len(copied) == 4  # 1 MiB steps
    assert chunks == copied  # on_chunk (which may cancel) between the steps


@pytest.mark.parametrize(
    "kernel_copy",
    [None, refused_after(0), refused_after(100_000)],
    ids=["missing", "refused", "refused-part-way"],
)
def test_without_the_kernel_copy_the_bytes_are_copied_by_reading(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    kernel_copy: Callable[[int, int, int, int, int], int] | None,
) -> None:
    monkeypatch.setattr(os_copies, "_copy_file_range", kernel_copy)
    chunks: list[int] = []
    copy_blob_to_file(tmp_path / "out", blob_file(tmp_path), chunks.append, verified)
    assert (tmp_path / "out").read_bytes() == DATA
    assert sum(chunks) == len(DATA)


def test_a_blob_cached_earlier_is_hashed_not_kernel_copied(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    copied = spy_kernel_copy(monkeypatch)
    rotted = bytearray(DATA)
    rotted[len(rotted) // 2] ^= 1
    blob = blob_file(tmp_path, stored=bytes(rotted))
    with pytest.raises(DigestMismatchError, match="is corrupt"):
        copy_blob_to_file(tmp_path / "out", blob, None, not_verified)
    assert copied == []


@pytest.mark.parametrize("stored", [DATA[:-1], DATA + b"x"], ids=["short", "long"])
def test_a_verified_blob_of_the_wrong_size_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stored: bytes
) -> None:
    spy_kernel_copy(monkeypatch)
    with pytest.raises(SizeMismatchError, match="is corrupt"):
        copy_blob_to_file(tmp_path / "out", blob_file(tmp_path, stored=stored), None, verified)


def direct_tar_bytes(tmp_path: Path, blob: BlobFile, before_blob: object) -> bytes:
    """A 512-byte header, the blob through copy_blob_into_tar, a trailer."""
    path = tmp_path / "out.tar"
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with DirectFileWriter(fd) as out:
            out.write(b"h" * 512)
            copy_blob_into_tar(out, blob, None, before_blob)  # type: ignore[arg-type]
            assert out.tell() == 512 + blob.size
            out.write(b"t" * 3)
            out.finish()
    finally:
        os.close(fd)
    return path.read_bytes()


@pytest.mark.parametrize("before_blob", [verified, not_verified])
def test_the_tar_reads_the_blob_straight_into_the_direct_writer(
    tmp_path: Path, before_blob: object
) -> None:
    data = direct_tar_bytes(tmp_path, blob_file(tmp_path), before_blob)
    assert data == b"h" * 512 + DATA + b"t" * 3


@pytest.mark.parametrize("before_blob", [verified, not_verified])
@pytest.mark.parametrize("stored", [DATA[:-1], DATA + b"x"], ids=["short", "long"])
def test_the_tar_refuses_a_file_of_the_wrong_size(
    tmp_path: Path, before_blob: object, stored: bytes
) -> None:
    with pytest.raises(SizeMismatchError, match="is corrupt"):
        direct_tar_bytes(tmp_path, blob_file(tmp_path, stored=stored), before_blob)


class Cancelled(Exception):
    pass


def cancel_on_second_piece() -> Callable[[int], None]:
    pieces = 0

    def on_chunk(size: int) -> None:
        nonlocal pieces
        pieces += 1
        if pieces == 2:
            raise Cancelled

    return on_chunk


def big_image(tmp_path: Path) -> OciImage:
    layer = im.layer({"big.bin": DATA}, "none")
    built = im.build_image([layer], media_types="oci")
    path = tmp_path / "cache" / layer.digest.removeprefix("sha256:")
    path.parent.mkdir()
    path.write_bytes(layer.blob)
    paths = {Digest.parse(layer.digest): path}
    return OciImage([OciManifest(parsed(built), built.config, paths)], ["big:1"])


@pytest.mark.parametrize("output_format", ["oci", "oci-dir"])
def test_a_copy_cancelled_midway_leaves_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, output_format: str
) -> None:
    """Cancelled at the second piece of a verified blob (kernel-copied into oci-dir, read
    into the direct writer for the tar): no output, no temp file or directory."""
    copied = spy_kernel_copy(monkeypatch)
    image = big_image(tmp_path)
    output = tmp_path / "out"
    with pytest.raises(Cancelled):
        if output_format == "oci-dir":
            write_oci_dir(output, [image], on_chunk=cancel_on_second_piece(), before_blob=verified)
        else:
            with atomic_output(output) as handle:
                write_oci_archive(
                    handle.sequential(),
                    [image],
                    on_chunk=cancel_on_second_piece(),
                    before_blob=verified,
                )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache"]
    assert bool(copied) == (output_format == "oci-dir")
