"""Layers decoded by worker processes into their regions of an archive file (Linux).

Real processes, real files: a blob complete on disk, one growing while a worker reads
it, a corrupt one, a worker killed mid-job, a stop; no process outlives the pool.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import random
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from dockerdrag.blob_follow import FollowLost
from dockerdrag.decoder_processes import DecoderProcesses
from dockerdrag.digest import Digest
from dockerdrag.errors import IntegrityError, OutputError

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="decoder processes: Linux")

LAYER = random.Random(5).randbytes(3_000_000)
START = 1000  # not on a page boundary


class Stopped(Exception):
    """What the test's source raises once stopped (the pull's WriterCancelled)."""


def worker_pids(parent: int | None = None) -> set[int]:
    """The decoder processes whose parent is ``parent`` (this process if None)."""
    parent = os.getpid() if parent is None else parent
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:  # ended meanwhile
            continue
        if int(stat.rpartition(")")[2].split()[1]) == parent and b"decoder_worker" in cmdline:
            found.add(int(entry.name))
    return found


class GrowingSource:
    """A blob written by the test in steps: the partial file, then the verified blob."""

    def __init__(self, directory: Path, blob: bytes) -> None:
        self.partial = directory / "blob.partial"
        self.blob_path = directory / "blob"
        self.partial.write_bytes(b"")
        self._blob = blob
        self._end = 0
        self._verified = False
        self._stopped = False
        self._changed = threading.Condition()
        self.unverified_answers = 0
        self.on_wait: list[object] = []

    @property
    def digest(self) -> Digest:
        return Digest(hashlib.sha256(self._blob).hexdigest())

    @property
    def size(self) -> int:
        return len(self._blob)

    def grow(self, step: int) -> None:
        with self._changed:
            with open(self.partial, "ab") as handle:
                handle.write(self._blob[self._end : self._end + step])
            self._end = min(len(self._blob), self._end + step)
            self._changed.notify_all()

    def verify(self) -> None:
        with self._changed:
            self.partial.rename(self.blob_path)
            self._verified = True
            self._changed.notify_all()

    def stop(self) -> None:
        with self._changed:
            self._stopped = True
            self._changed.notify_all()

    def wait_beyond(self, position: int) -> tuple[Path, int, bool]:
        for action in self.on_wait:
            action()  # type: ignore[operator]
        with self._changed:
            self._changed.wait_for(lambda: self._end != position or self._verified or self._stopped)
            if self._stopped:
                raise Stopped
            if self._verified:
                return self.blob_path, -1, True
            self.unverified_answers += 1
            return self.partial, self._end, False

    def wait_verified(self) -> Path:
        with self._changed:
            self._changed.wait_for(lambda: self._verified or self._stopped)
            if self._stopped:
                raise Stopped
            return self.blob_path

    def check_stop(self) -> None:
        if self._stopped:
            raise Stopped


class CompleteSource(GrowingSource):
    def __init__(self, directory: Path, blob: bytes) -> None:
        super().__init__(directory, blob)
        self.grow(len(blob))
        self.verify()


@pytest.fixture
def archive(tmp_path: Path) -> Iterator[int]:
    fd = os.open(tmp_path / "archive", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        yield fd
    finally:
        os.close(fd)


def region_bytes(fd: int, size: int) -> bytes:
    return os.pread(fd, size + 512, START)


def test_a_layer_is_inflated_hashed_and_written_by_another_process(
    tmp_path: Path, archive: int
) -> None:
    source = CompleteSource(tmp_path, gzip.compress(LAYER, compresslevel=1))
    with DecoderProcesses(archive, 2) as decoders:
        assert len(worker_pids()) == 2
        result = decoders.decode(START, len(LAYER), source, follow=False, failed=threading.Event())
    assert not worker_pids()  # none outlives the pool
    assert result == (len(LAYER), Digest(hashlib.sha256(LAYER).hexdigest()))
    padding = -len(LAYER) % 512
    assert region_bytes(archive, len(LAYER))[: len(LAYER) + padding] == LAYER + bytes(padding)


def test_a_layer_is_read_as_its_blob_arrives(tmp_path: Path, archive: int) -> None:
    blob = gzip.compress(LAYER, compresslevel=1)
    source = GrowingSource(tmp_path, blob)
    arrived = [0]

    def arrive() -> None:  # 100 kB more each time the worker has read all there was
        arrived[0] += 100_000
        if arrived[0] < len(blob):
            source.grow(100_000)
        elif not source.blob_path.exists():
            source.grow(100_000)
            source.verify()

    source.on_wait.append(arrive)
    with DecoderProcesses(archive, 1) as decoders:
        result = decoders.decode(START, len(LAYER), source, follow=True, failed=threading.Event())
    assert result is not None and result[0] == len(LAYER)
    assert source.unverified_answers >= len(blob) // 100_000
    assert region_bytes(archive, len(LAYER))[: len(LAYER)] == LAYER


def test_a_longer_layer_is_told_by_its_count(tmp_path: Path, archive: int) -> None:
    source = CompleteSource(tmp_path, gzip.compress(LAYER))
    with DecoderProcesses(archive, 1) as decoders:
        result = decoders.decode(START, 1000, source, follow=False, failed=threading.Event())
    assert result is not None and result[0] == 1001


def test_corrupt_data_is_an_integrity_error_and_the_worker_goes_on(
    tmp_path: Path, archive: int
) -> None:
    blob = bytearray(gzip.compress(LAYER))
    blob[len(blob) // 2] ^= 0xFF
    (tmp_path / "bad").mkdir()
    bad = CompleteSource(tmp_path / "bad", bytes(blob))
    good = CompleteSource(tmp_path, gzip.compress(LAYER))
    with DecoderProcesses(archive, 1) as decoders:
        with pytest.raises(IntegrityError, match=bad.digest.hex):
            decoders.decode(START, len(LAYER), bad, follow=False, failed=threading.Event())
        (worker,) = worker_pids()
        result = decoders.decode(START, len(LAYER), good, follow=False, failed=threading.Event())
        assert worker_pids() == {worker}
    assert result is not None and result[0] == len(LAYER)


def test_a_download_that_starts_over_under_the_worker_is_follow_lost(
    tmp_path: Path, archive: int
) -> None:
    source = GrowingSource(tmp_path, gzip.compress(LAYER))
    source.grow(300_000)
    answers = iter([(source.partial, 300_000, False), (source.partial, 0, False)])
    source.wait_beyond = lambda _position: next(answers)  # type: ignore[method-assign]
    with DecoderProcesses(archive, 1) as decoders, pytest.raises(FollowLost):
        decoders.decode(START, len(LAYER), source, follow=True, failed=threading.Event())


def test_a_killed_worker_is_a_clear_error_and_no_process_remains(
    tmp_path: Path, archive: int
) -> None:
    source = GrowingSource(tmp_path, gzip.compress(LAYER))
    source.grow(200_000)

    def kill_the_worker() -> None:
        for pid in worker_pids():
            os.kill(pid, signal.SIGKILL)
        source.grow(200_000)

    source.on_wait.append(kill_the_worker)
    with (
        DecoderProcesses(archive, 1) as decoders,
        pytest.raises(OutputError, match="decoder process ended unexpectedly"),
    ):
        decoders.decode(START, len(LAYER), source, follow=True, failed=threading.Event())
    assert not worker_pids()


def test_a_stop_while_the_worker_reads_kills_it(tmp_path: Path, archive: int) -> None:
    fifo = tmp_path / "blob"
    os.mkfifo(fifo)  # nothing is ever written: the worker waits in its read
    source = GrowingSource(tmp_path, b"")
    source.wait_verified = lambda: fifo  # type: ignore[method-assign]
    threading.Timer(0.3, source.stop).start()
    with DecoderProcesses(archive, 2) as decoders:
        with pytest.raises(Stopped):
            decoders.decode(START, 10, source, follow=False, failed=threading.Event())
        assert len(worker_pids()) == 1  # the other is idle
    assert not worker_pids()


def test_another_decoders_failure_ends_the_job(tmp_path: Path, archive: int) -> None:
    fifo = tmp_path / "blob"
    os.mkfifo(fifo)
    source = GrowingSource(tmp_path, b"")
    source.wait_verified = lambda: fifo  # type: ignore[method-assign]
    failed = threading.Event()
    threading.Timer(0.3, failed.set).start()
    with DecoderProcesses(archive, 1) as decoders:
        assert decoders.decode(START, 10, source, follow=False, failed=failed) is None
        assert not worker_pids()  # killed
        # A new worker takes the killed one's place for the next job.
        (tmp_path / "good").mkdir()
        good = CompleteSource(tmp_path / "good", gzip.compress(LAYER))
        result = decoders.decode(START, len(LAYER), good, follow=False, failed=threading.Event())
        assert result is not None and result[0] == len(LAYER)
    assert not worker_pids()
