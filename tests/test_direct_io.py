"""DirectFileWriter: the bytes on disk are exactly what a plain file would hold."""

from __future__ import annotations

import errno
import hashlib
import io
import os
import random
from pathlib import Path

import pytest

from dockerdrag import direct_io, direct_regions, osfiles
from dockerdrag.direct_io import DirectFileWriter

BLOCK = 1 << 16


def _replay(path: Path, seed: int, *, direct: bool = True) -> bytes:
    """Random appends (written or read in by fill_from) and tar-style patches through the
    writer; the expected bytes."""
    rng = random.Random(seed)
    expected = bytearray()
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with DirectFileWriter(fd, block_size=BLOCK) as writer:
            assert writer.direct is direct
            for _ in range(60):
                if expected and rng.random() < 0.3:
                    at = rng.randrange(len(expected))
                    patch = rng.randbytes(min(rng.randrange(1, 600), len(expected) - at))
                    writer.seek(at)
                    writer.write(patch)
                    expected[at : at + len(patch)] = patch
                    assert writer.tell() == at + len(patch)
                    writer.seek(0, os.SEEK_END)
                else:
                    data = rng.randbytes(rng.choice([1, 511, 512, 4096, BLOCK - 3, 3 * BLOCK + 7]))
                    if rng.random() < 0.5:
                        writer.write(data)
                    else:  # read straight into the writer's block, as the oci tar does
                        stream, hasher = io.BytesIO(data), hashlib.sha256()
                        while writer.fill_from(stream, rng.randrange(1, 2 * BLOCK), hasher):
                            pass
                        assert hasher.hexdigest() == hashlib.sha256(data).hexdigest()
                    expected += data
                assert writer.tell() == len(expected)
            writer.finish()
    finally:
        os.close(fd)
    return bytes(expected)


@pytest.mark.parametrize("seed", range(8))
def test_random_appends_and_patches_land_exactly(tmp_path: Path, seed: int) -> None:
    path = tmp_path / "out.bin"
    expected = _replay(path, seed)
    assert path.read_bytes() == expected


def test_without_o_direct_everything_goes_buffered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(direct_io, "reopen_direct", lambda fd: None)
    path = tmp_path / "out.bin"
    expected = _replay(path, 99, direct=False)
    assert path.read_bytes() == expected


def refuse_direct_writes(monkeypatch: pytest.MonkeyPatch) -> set[int]:
    """Make every write through an O_DIRECT descriptor fail with EINVAL, as some file
    systems do though they accept the open; returns the set of those descriptors."""
    real_pwrite = osfiles.pwrite
    direct_fds: set[int] = set()
    real_reopen = direct_io.reopen_direct

    def reopen(fd: int) -> int | None:
        direct = real_reopen(fd)
        if direct is not None:
            direct_fds.add(direct)
        return direct

    def pwrite(fd: int, data: object, offset: int) -> int:
        if fd in direct_fds:
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_pwrite(fd, data, offset)  # type: ignore[arg-type]

    monkeypatch.setattr(direct_io, "reopen_direct", reopen)
    monkeypatch.setattr(direct_regions, "reopen_direct", reopen)
    monkeypatch.setattr(osfiles, "pwrite", pwrite)
    return direct_fds


def test_a_direct_write_refused_with_einval_falls_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    refuse_direct_writes(monkeypatch)
    path = tmp_path / "out.bin"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        with DirectFileWriter(fd, block_size=BLOCK) as writer:
            if not writer.direct:
                pytest.skip("this file system refuses O_DIRECT at open")
            data = os.urandom(5 * BLOCK + 100)
            writer.write(data)
            writer.finish()
            assert not writer.direct
    finally:
        os.close(fd)
    assert path.read_bytes() == data


def test_an_error_of_the_helper_thread_reaches_the_caller(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ENOSPC in the helper is raised by a later write or by finish(), never lost."""

    def full(fd: int, data: object, offset: int) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    fd = os.open(tmp_path / "out.bin", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        with DirectFileWriter(fd, block_size=BLOCK) as writer:
            monkeypatch.setattr(osfiles, "pwrite", full)
            with pytest.raises(OSError) as caught:
                for _ in range(100):
                    writer.write(b"x" * BLOCK)
                writer.finish()
            assert caught.value.errno == errno.ENOSPC
    finally:
        os.close(fd)


def test_seeking_past_the_end_or_writing_after_finish_is_refused(tmp_path: Path) -> None:
    fd = os.open(tmp_path / "out.bin", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        with DirectFileWriter(fd, block_size=BLOCK) as writer:
            writer.write(b"abc")
            with pytest.raises(ValueError):
                writer.seek(4)
            writer.seek(2)
            with pytest.raises(ValueError):
                writer.write(b"xyz")  # would run past the end
            writer.seek(0, os.SEEK_END)
            writer.finish()
            with pytest.raises(ValueError):
                writer.write(b"more")
    finally:
        os.close(fd)
    assert (tmp_path / "out.bin").read_bytes() == b"abc"


def test_an_output_is_written_in_regions_or_sequentially_never_both(tmp_path: Path) -> None:
    from dockerdrag.direct_regions import DirectOutput

    fd = os.open(tmp_path / "out.bin", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        with DirectOutput(fd) as output:
            regions = output.regions()
            regions.write_at(b"region", 100)
            with pytest.raises(ValueError, match="discard"):
                output.sequential()
            regions.discard()
            writer = output.sequential()
            with pytest.raises(ValueError):
                output.regions()
            writer.write(b"front to back")
            output.finish()
    finally:
        os.close(fd)
    assert (tmp_path / "out.bin").read_bytes() == b"front to back"


def test_fill_from_appends_only(tmp_path: Path) -> None:
    fd = os.open(tmp_path / "out.bin", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        with DirectFileWriter(fd, block_size=BLOCK) as writer:
            writer.write(b"abc")
            writer.seek(1)
            with pytest.raises(ValueError, match="appends"):
                writer.fill_from(io.BytesIO(b"x"), 1, hashlib.sha256())
    finally:
        os.close(fd)
