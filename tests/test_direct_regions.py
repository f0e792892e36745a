"""Regions written behind: a region's full blocks go to the file's helper threads while its
own thread fills the next block; the bytes land exactly, and a helper's error is raised."""

from __future__ import annotations

import errno
import hashlib
import io
import mmap
import os
import threading
from pathlib import Path

import pytest

from dockerdrag import direct_regions, osfiles
from dockerdrag.direct_io import DIRECT_BLOCK
from dockerdrag.direct_regions import BEHIND_MIN_BYTES, DirectRegionFile


@pytest.mark.parametrize(("helpers", "block_size"), [(4, DIRECT_BLOCK), (0, DIRECT_BLOCK // 2)])
def test_full_blocks_are_written_by_helper_threads_and_land_exactly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, helpers: int, block_size: int
) -> None:
    """Two regions (unaligned starts, several blocks each) written at once: every byte in
    place, and the whole blocks were written by helper threads, not the region's own (by
    the region's own where the file has no helpers)."""
    real_pwrite = osfiles.pwrite
    writers: set[str] = set()

    def pwrite(fd: int, data: bytes, offset: int) -> int:
        writers.add(threading.current_thread().name)
        return real_pwrite(fd, data, offset)

    monkeypatch.setattr(osfiles, "pwrite", pwrite)
    first = os.urandom(3 * DIRECT_BLOCK + 12345)
    second = os.urandom(2 * DIRECT_BLOCK + 777)
    starts = (100, 100 + len(first) + 50)
    path = tmp_path / "out.bin"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        with DirectRegionFile(fd, writers=helpers, block_size=block_size) as out:

            def fill(start: int, data: bytes) -> None:
                with out.region(start) as region:
                    stream = io.BytesIO(data)
                    while region.fill_from(stream, len(data), hashlib.sha256()):
                        pass
                    region.finish()

            threads = [
                threading.Thread(target=fill, args=(start, data), name=f"region-{start}")
                for start, data in zip(starts, (first, second), strict=True)
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            out.write_at(b"H" * 100, 0)
            out.write_at(b"M" * 50, 100 + len(first))
    finally:
        os.close(fd)
    assert path.read_bytes() == b"H" * 100 + first + b"M" * 50 + second
    helped = any(name.startswith("dockerdrag-region-write") for name in writers)
    assert helped == bool(helpers)
    assert helpers or {"region-100", f"region-{starts[1]}"} <= writers


def test_a_short_region_writes_its_own_blocks_and_a_long_one_hands_them_over(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With helper threads at hand, a region whose length is given and is under
    BEHIND_MIN_BYTES writes its full blocks in its own thread (and starts no helper); one
    of BEHIND_MIN_BYTES hands them to the helpers. Both land exactly."""
    real_pwrite = osfiles.pwrite
    writers: dict[int, set[str]] = {}

    def pwrite(fd: int, data: bytes, offset: int) -> int:
        writers.setdefault(offset // BEHIND_MIN_BYTES, set()).add(threading.current_thread().name)
        return real_pwrite(fd, data, offset)

    monkeypatch.setattr(osfiles, "pwrite", pwrite)
    short = os.urandom(3 * DIRECT_BLOCK + 5)
    long = os.urandom(BEHIND_MIN_BYTES)
    path = tmp_path / "out.bin"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        with DirectRegionFile(fd, writers=2) as out:
            for start, data in ((0, short), (2 * BEHIND_MIN_BYTES, long)):
                with out.region(start, len(data)) as region:
                    stream = io.BytesIO(data)
                    while region.fill_from(stream, len(data), hashlib.sha256()):
                        pass
                    region.finish()
                if start == 0:
                    started = {thread.name for thread in threading.enumerate()}
                    assert not any(n.startswith("dockerdrag-region-write") for n in started)
    finally:
        os.close(fd)
    content = path.read_bytes()
    assert content[: len(short)] == short
    assert content[2 * BEHIND_MIN_BYTES :] == long
    assert writers[0] == {threading.current_thread().name}
    assert any(name.startswith("dockerdrag-region-write") for name in writers[2])


def test_an_error_of_a_block_written_behind_reaches_the_region(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ENOSPC while a helper writes a block is raised by the region's next block or finish."""

    def full(fd: int, data: object, offset: int) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    fd = os.open(tmp_path / "out.bin", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        with DirectRegionFile(fd) as out, out.region(0) as region:
            monkeypatch.setattr(osfiles, "pwrite", full)
            stream = io.BytesIO(bytes(3 * DIRECT_BLOCK))
            with pytest.raises(OSError) as caught:
                while region.fill_from(stream, 3 * DIRECT_BLOCK, hashlib.sha256()):
                    pass
                region.finish()
            assert caught.value.errno == errno.ENOSPC
    finally:
        os.close(fd)


def test_the_blocks_of_a_region_that_is_done_serve_the_next(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ten regions one after another (as a decoder writes the layers of an image) take
    their blocks from those the previous regions gave back: two blocks allocated in all,
    not two per region. What a block held before is never written: regions at unaligned
    starts, with the bytes between them written after them, land exactly."""
    allocated: list[int] = []
    real_mmap = direct_regions.mmap.mmap

    def counting_mmap(fileno: int, length: int) -> mmap.mmap:
        allocated.append(length)
        return real_mmap(fileno, length)

    monkeypatch.setattr(direct_regions.mmap, "mmap", counting_mmap)
    pieces = [os.urandom(2 * DIRECT_BLOCK + 1000 * number + 1) for number in range(10)]
    gap = b"G" * 333
    path = tmp_path / "out.bin"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        with DirectRegionFile(fd) as out:
            position, gaps = 0, []
            for piece in pieces:
                gaps.append(position)
                position += len(gap)
                with out.region(position) as region:
                    stream = io.BytesIO(piece)
                    while region.fill_from(stream, len(piece), hashlib.sha256()):
                        pass
                    region.finish()
                position += len(piece)
            for offset in gaps:
                out.write_at(gap, offset)
    finally:
        os.close(fd)
    assert path.read_bytes() == b"".join(gap + piece for piece in pieces)
    assert allocated == [DIRECT_BLOCK, DIRECT_BLOCK]
