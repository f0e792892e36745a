"""Layer decompression by magic bytes, as Docker does (format section 2.1)."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import tarfile
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import pytest
import zstandard

from dockerdrag.errors import IntegrityError
from dockerdrag.layers import (
    CHUNK_SIZE,
    Compression,
    open_decompressed,
    read_ahead,
    sniff_compression,
)


def make_layer_tar(payload_size: int = 3000, trailing_zeros: int = 0) -> bytes:
    """A small layer tar (one file), optionally with extra trailing zeros."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as archive:
        info = tarfile.TarInfo("file.bin")
        info.size = payload_size
        archive.addfile(info, io.BytesIO(os.urandom(payload_size)))
    return buffer.getvalue() + b"\0" * trailing_zeros


def _zstd_two_frames(data: bytes) -> bytes:
    compressor = zstandard.ZstdCompressor()
    half = len(data) // 2
    return compressor.compress(data[:half]) + compressor.compress(data[half:])


def _gzip_two_members(data: bytes) -> bytes:
    half = len(data) // 2
    return gzip.compress(data[:half]) + gzip.compress(data[half:])


COMPRESSORS: dict[str, tuple[Compression, Callable[[bytes], bytes]]] = {
    "gzip": (Compression.GZIP, gzip.compress),
    "gzip-multi-member": (Compression.GZIP, _gzip_two_members),
    "bzip2": (Compression.BZIP2, bz2.compress),
    "xz": (Compression.XZ, lzma.compress),
    "zstd": (Compression.ZSTD, lambda data: zstandard.ZstdCompressor().compress(data)),
    "zstd-multi-frame": (Compression.ZSTD, _zstd_two_frames),
    "uncompressed": (Compression.NONE, lambda data: data),
}


def read_all(stream: BinaryIO) -> bytes:
    parts = []
    while chunk := stream.read(CHUNK_SIZE):
        parts.append(chunk)
    return b"".join(parts)


@pytest.mark.parametrize("name", sorted(COMPRESSORS))
def test_open_decompressed_round_trip(tmp_path: Path, name: str) -> None:
    compression, compress = COMPRESSORS[name]
    layer = make_layer_tar(trailing_zeros=3072)
    path = tmp_path / "blob"
    path.write_bytes(compress(layer))
    assert sniff_compression(path.read_bytes()[:6]) is compression
    with open_decompressed(path) as stream:
        assert read_all(stream) == layer


def test_large_layer_is_read_in_chunks(tmp_path: Path) -> None:
    layer = make_layer_tar(payload_size=3 * CHUNK_SIZE + 17)
    path = tmp_path / "blob"
    path.write_bytes(gzip.compress(layer, compresslevel=1))
    with open_decompressed(path) as stream:
        first = stream.read(CHUNK_SIZE)
        assert 0 < len(first) <= CHUNK_SIZE
        assert first + read_all(stream) == layer


def test_gzip_is_inflated_straight_into_the_callers_buffer(tmp_path: Path) -> None:
    """With isal, readinto fills the caller's buffer without a bytes object as big as it
    (igzip.GzipFile's buffered layer made one per call and copied it)."""
    pytest.importorskip("isal")
    layer = make_layer_tar(payload_size=16 * CHUNK_SIZE)
    path = tmp_path / "blob"
    path.write_bytes(gzip.compress(layer, compresslevel=1))
    target = bytearray(8 * CHUNK_SIZE)
    with open_decompressed(path) as stream:
        tracemalloc.start()
        try:
            count = stream.readinto(target)  # type: ignore[attr-defined]
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert count > 0
    assert target[:count] == layer[:count]
    assert peak < CHUNK_SIZE


@pytest.mark.parametrize(
    ("head", "compression"),
    [
        (b"\x1f\x8b\x08\x00", Compression.GZIP),
        (b"\x1f\x8b\x09", Compression.NONE),
        (b"BZh91AY", Compression.BZIP2),
        (b"\xfd7zXZ\x00\x00", Compression.XZ),
        (b"\xfd7zXZ", Compression.NONE),
        (b"\x28\xb5\x2f\xfd\x00", Compression.ZSTD),
        (b"file.txt\0\0", Compression.NONE),
        (b"", Compression.NONE),
    ],
)
def test_sniff_compression(head: bytes, compression: Compression) -> None:
    assert sniff_compression(head) is compression


@pytest.mark.parametrize("name", ["gzip", "bzip2", "xz"])
def test_truncated_data_raises_integrity_error(tmp_path: Path, name: str) -> None:
    _, compress = COMPRESSORS[name]
    compressed = bytearray(compress(make_layer_tar(payload_size=20000)))
    del compressed[len(compressed) // 2 :]  # truncated download
    path = tmp_path / "blob"
    path.write_bytes(bytes(compressed))
    with pytest.raises(IntegrityError), open_decompressed(path) as stream:
        read_all(stream)


def test_truncated_zstd_yields_short_output_that_the_diff_id_check_catches(tmp_path: Path) -> None:
    layer = make_layer_tar(payload_size=20000)
    compressed = zstandard.ZstdCompressor().compress(layer)
    path = tmp_path / "blob"
    path.write_bytes(compressed[: len(compressed) // 2])
    with open_decompressed(path) as stream:
        assert read_all(stream) != layer


def test_corrupt_zstd_raises_integrity_error(tmp_path: Path) -> None:
    compressed = bytearray(zstandard.ZstdCompressor().compress(make_layer_tar()))
    compressed[4:] = b"\xff" * (len(compressed) - 4)
    path = tmp_path / "blob"
    path.write_bytes(bytes(compressed))
    with pytest.raises(IntegrityError), open_decompressed(path) as stream:
        read_all(stream)


def test_uncompressed_blob_is_returned_as_is(tmp_path: Path) -> None:
    path = tmp_path / "blob"
    path.write_bytes(b"x" * 10)
    with open_decompressed(path) as stream:
        assert stream.read() == b"x" * 10


# --- read_ahead ---------------------------------------------------------------------


class _EndlessStream(io.RawIOBase):
    """Chunks forever; counts how many were read."""

    def __init__(self) -> None:
        self.reads = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        self.reads += 1
        return b"x" * max(size, 1)


def test_read_ahead_stops_its_reader_when_the_consumer_stops_early() -> None:
    stream = _EndlessStream()
    chunks = read_ahead(lambda: stream, 4, depth=2)  # type: ignore[arg-type, return-value]
    assert next(chunks) == b"xxxx"
    chunks.close()  # joins the reader, which was blocked on the full hand-over
    reads = stream.reads
    assert stream.closed
    assert reads <= 4  # one taken, at most depth queued, one dropped


def test_read_ahead_raises_the_readers_error_in_the_consumer() -> None:
    def broken() -> io.BytesIO:
        raise OSError("cannot open")

    with pytest.raises(OSError, match="cannot open"):
        list(read_ahead(broken, 4))
