"""dockerdrag.osfiles: every fallback for a feature the running system lacks.

Linux has every fast path, so each fallback is forced here by taking the feature
away from the module (as the emulated platforms of tests/test_platform_profiles.py
do for whole pulls).
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from dockerdrag import os_copies, osfiles
from tests.support import msvcrt_standin

ROOT = Path(__file__).resolve().parent.parent


def test_positional_writes_through_the_fallback_from_many_threads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without os.pwrite: threads writing interleaved blocks of one descriptor at once."""
    monkeypatch.setattr(osfiles, "pwrite", osfiles._pwrite_by_seek)
    monkeypatch.setattr(osfiles, "pread", osfiles._pread_by_seek)
    real_lseek = os.lseek

    def lseek_then_yield(fd: int, position: int, how: int) -> int:
        moved = real_lseek(fd, position, how)
        time.sleep(0.0001)  # let other threads run between the seek and the write
        return moved

    monkeypatch.setattr(os, "lseek", lseek_then_yield)
    threads, blocks, size = 8, 50, 1000
    fd = osfiles.open_read_write(tmp_path / "blob")
    errors: list[BaseException] = []
    start = threading.Barrier(threads)

    def fill(worker: int) -> None:
        try:
            start.wait()
            for block in range(blocks):
                index = block * threads + worker  # neighbours belong to other threads
                osfiles.pwrite_all(fd, bytes([index % 251]) * size, index * size)
                assert osfiles.pread(fd, size, index * size) == bytes([index % 251]) * size
        except BaseException as exc:
            errors.append(exc)

    try:
        workers = [threading.Thread(target=fill, args=(n,)) for n in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
    finally:
        os.close(fd)
    assert not errors, errors[0]
    expected = b"".join(bytes([i % 251]) * size for i in range(threads * blocks))
    assert (tmp_path / "blob").read_bytes() == expected


def test_a_short_read_at_the_end_through_the_fallback(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"0123456789")
    fd = osfiles.open_read_write(tmp_path / "f")
    try:
        assert osfiles._pread_by_seek(fd, 100, 6) == b"6789"
        assert osfiles._pread_by_seek(fd, 4, 10) == b""
    finally:
        os.close(fd)


@pytest.mark.parametrize("anonymous", [True, False], ids=["O_TMPFILE", "named"])
def test_temp_output_is_published_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, anonymous: bool
) -> None:
    if not anonymous:
        monkeypatch.setattr(osfiles, "_O_TMPFILE", 0)
        monkeypatch.setattr(osfiles, "_fchmod", None)  # the mode is set by path
    output = tmp_path / "out.tar"
    output.write_bytes(b"old")
    with osfiles.TempOutput(output) as temp:
        assert temp.anonymous is anonymous
        osfiles.pwrite_all(temp.fd, b"new bytes", 0)
        hidden = [p.name for p in tmp_path.iterdir() if p.name != "out.tar"]
        if anonymous:
            assert hidden == []
        else:
            assert len(hidden) == 1
            assert hidden[0].startswith(".out.tar.")
            assert hidden[0].endswith(".partial")
        assert output.read_bytes() == b"old"
        temp.publish()
    assert output.read_bytes() == b"new bytes"
    assert output.stat().st_mode & 0o777 == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["out.tar"]


def test_temp_output_left_unpublished_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(osfiles, "_O_TMPFILE", 0)
    output = tmp_path / "out.tar"
    with pytest.raises(RuntimeError), osfiles.TempOutput(output) as temp:
        osfiles.pwrite_all(temp.fd, b"half", 0)
        raise RuntimeError("cancelled")
    assert list(tmp_path.iterdir()) == []


def test_a_replace_refused_twice_is_tried_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(osfiles, "REPLACE_RETRY_DELAYS", (0.01, 0.01, 0.01))
    real_replace = os.replace
    calls: list[str] = []

    def refused_twice(source: str, target: str) -> None:
        calls.append(source)
        if len(calls) <= 2:
            raise PermissionError(errno.EACCES, "The process cannot access the file", target)
        real_replace(source, target)

    monkeypatch.setattr(os, "replace", refused_twice)
    (tmp_path / "a").write_bytes(b"a")
    osfiles.replace(tmp_path / "a", tmp_path / "b")
    assert len(calls) == 3
    assert (tmp_path / "b").read_bytes() == b"a"
    assert not (tmp_path / "a").exists()


def test_a_replace_refused_every_time_gives_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(osfiles, "REPLACE_RETRY_DELAYS", (0.01, 0.01))
    calls: list[str] = []

    def refused(source: str, target: str) -> None:
        calls.append(source)
        raise PermissionError(errno.EACCES, "Access is denied", target)

    monkeypatch.setattr(os, "replace", refused)
    with pytest.raises(PermissionError):
        osfiles.replace(tmp_path / "a", tmp_path / "b")
    assert len(calls) == 3


def _rename_that_never_replaces(monkeypatch: pytest.MonkeyPatch) -> None:
    """os.rename as on Windows: an existing target is an error."""
    real_rename = os.rename

    def rename(source: str, target: str) -> None:
        if os.path.lexists(target):
            raise FileExistsError(errno.EEXIST, "Cannot create a file when it already exists")
        real_rename(source, target)

    monkeypatch.setattr(os, "rename", rename)


@pytest.mark.parametrize("windows_rename", [False, True], ids=["posix", "windows"])
def test_a_directory_moves_onto_an_empty_directory_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, windows_rename: bool
) -> None:
    if windows_rename:
        _rename_that_never_replaces(monkeypatch)
    source, target = tmp_path / "new", tmp_path / "target"
    source.mkdir()
    (source / "file").write_bytes(b"x")
    target.mkdir()
    osfiles.move_dir_into_place(source, target)
    assert (target / "file").read_bytes() == b"x"
    assert not source.exists()

    source.mkdir()
    with pytest.raises(OSError) as refused:
        osfiles.move_dir_into_place(source, target)  # target is not empty now
    assert refused.value.errno in (errno.ENOTEMPTY, errno.EEXIST)
    assert (target / "file").read_bytes() == b"x"
    assert source.is_dir()


def test_fsync_of_a_directory_that_cannot_be_opened_is_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_open = os.open
    opened: list[str] = []

    def open_no_directories(path: str, flags: int, mode: int = 0o777) -> int:
        opened.append(str(path))
        if os.path.isdir(path):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, flags, mode)

    monkeypatch.setattr(os, "open", open_no_directories)
    osfiles.fsync_dir(tmp_path)
    assert opened == [str(tmp_path)]


LOCK_HOLDER = """
import sys, time
{setup}
from dockerdrag.osfiles import ProcessLock
lock = ProcessLock(sys.argv[1])
assert lock.try_acquire()
print("held", flush=True)
time.sleep(60)
"""

USE_MSVCRT = """
from tests.support import msvcrt_standin
from dockerdrag import osfiles
osfiles._fcntl, osfiles._msvcrt = None, msvcrt_standin
"""


@pytest.mark.parametrize("primitive", ["fcntl", "msvcrt"])
def test_the_lock_excludes_other_processes_and_dies_with_its_holder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, primitive: str
) -> None:
    if primitive == "msvcrt":
        monkeypatch.setattr(osfiles, "_fcntl", None)
        monkeypatch.setattr(osfiles, "_msvcrt", msvcrt_standin)
    path = tmp_path / "blob.lock"
    holder_code = LOCK_HOLDER.format(setup=USE_MSVCRT if primitive == "msvcrt" else "")
    holder = subprocess.Popen(
        [sys.executable, "-c", holder_code, str(path)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline() == "held\n"
        lock = osfiles.ProcessLock(path)
        try:
            assert not lock.try_acquire()
            holder.kill()  # SIGKILL: no chance to unlock
            holder.wait(timeout=30)
            assert lock.try_acquire()
        finally:
            lock.close()
    finally:
        holder.kill()
        holder.wait()
    # Released by close(): another process takes it at once.
    again = subprocess.run(
        [sys.executable, "-c", holder_code.replace("time.sleep(60)", ""), str(path)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert again.stdout == "held\n", again.stderr


def test_malloc_tuning_is_harmless_where_the_c_library_cannot_be_loaded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import ctypes

    loads: list[str | None] = []

    def no_libc(name: str | None, *args: object, **kwargs: object) -> None:
        loads.append(name)
        raise TypeError("LoadLibrary() argument 1 must be str, not None")  # as on Windows

    monkeypatch.setattr(ctypes, "CDLL", no_libc)
    monkeypatch.setattr(osfiles, "_is_glibc", lambda: True)
    osfiles.limit_malloc_arenas()
    assert loads == [None]
    monkeypatch.setattr(osfiles, "_is_glibc", lambda: False)  # macOS, musl: not even looked up
    osfiles.limit_malloc_arenas()
    assert loads == [None]


# ---------------------------------------------------------------------- write-back


def test_a_write_back_where_the_system_has_none_leaves_the_bytes_to_the_fsync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(osfiles, "_fadvise", None)  # macOS, Windows
    fd = osfiles.open_read_write(tmp_path / "blob")
    try:
        osfiles.pwrite_all(fd, b"x" * 100_000, 0)
        osfiles.start_write_back(fd, 0, 100_000)
        os.fsync(fd)
    finally:
        os.close(fd)
    assert (tmp_path / "blob").read_bytes() == b"x" * 100_000


def test_a_write_back_the_system_refuses_is_left_to_the_fsync() -> None:
    read_end, write_end = os.pipe()
    try:
        fadvise = getattr(os, "posix_fadvise", None)
        if fadvise is not None:  # what start_write_back meets: the system refuses a pipe
            with pytest.raises(OSError):
                fadvise(write_end, 0, 1, osfiles._FADV_DONTNEED)
        osfiles.start_write_back(write_end, 0, 1)
    finally:
        os.close(read_end)
        os.close(write_end)


# ---------------------------------------------------------------------- kernel copies


def _copy_files(tmp_path: Path, data: bytes) -> tuple[int, int]:
    source = os.open(tmp_path / "source", os.O_RDWR | os.O_CREAT, 0o600)
    os.write(source, data)
    target = os.open(tmp_path / "target", os.O_RDWR | os.O_CREAT, 0o600)
    return source, target


def test_copy_file_range_copies_between_offsets_in_the_kernel(tmp_path: Path) -> None:
    data = os.urandom(3 << 20)
    source, target = _copy_files(tmp_path, data)
    try:
        os.write(target, b"head")
        copied = os_copies.copy_file_range(
            source, target, len(data) - 100, src_offset=100, dst_offset=4
        )
        assert copied == len(data) - 100
        assert os.lseek(target, 0, os.SEEK_CUR) == 4  # the positions did not move
        assert os.lseek(source, 0, os.SEEK_CUR) == len(data)
        # Past the source's end: what there is.
        assert (
            os_copies.copy_file_range(source, target, 500, src_offset=len(data) - 10, dst_offset=0)
            == 10
        )
    finally:
        os.close(source)
        os.close(target)
    assert (tmp_path / "target").read_bytes() == data[-10:] + data[106:]


def test_copy_file_range_copies_nothing_where_the_system_has_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os_copies, "_copy_file_range", None)
    source, target = _copy_files(tmp_path, b"x" * 1000)
    try:
        assert os_copies.copy_file_range(source, target, 1000, src_offset=0, dst_offset=0) == 0
    finally:
        os.close(source)
        os.close(target)
    assert (tmp_path / "target").read_bytes() == b""


@pytest.mark.parametrize("refusal", [errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP])
def test_copy_file_range_refused_part_way_says_how_much_it_copied(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, refusal: int
) -> None:
    """The first call copies 300 bytes (a short copy, as the kernel may do), the second is
    refused: 300 is returned, and the caller copies the rest from there."""
    calls: list[int] = []
    real = os.copy_file_range

    def first_then_refused(src: int, dst: int, count: int, src_off: int, dst_off: int) -> int:
        calls.append(count)
        if len(calls) == 1:
            return real(src, dst, 300, src_off, dst_off)
        raise OSError(refusal, os.strerror(refusal))

    monkeypatch.setattr(os_copies, "_copy_file_range", first_then_refused)
    data = os.urandom(1000)
    source, target = _copy_files(tmp_path, data)
    try:
        assert os_copies.copy_file_range(source, target, 1000, src_offset=0, dst_offset=0) == 300
    finally:
        os.close(source)
        os.close(target)
    assert calls == [1000, 700]
    assert (tmp_path / "target").read_bytes() == data[:300]


def test_copy_file_range_raises_what_is_not_a_refusal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(*args: int) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os_copies, "_copy_file_range", full)
    source, target = _copy_files(tmp_path, b"x" * 10)
    try:
        with pytest.raises(OSError) as caught:
            os_copies.copy_file_range(source, target, 10, src_offset=0, dst_offset=0)
        assert caught.value.errno == errno.ENOSPC
    finally:
        os.close(source)
        os.close(target)
