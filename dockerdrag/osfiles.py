"""Every call whose behaviour depends on the operating system, in one place.

Each function here picks its way by what the running system offers (a function or
flag in :mod:`os`, the :mod:`fcntl` or :mod:`msvcrt` module), never by
``sys.platform``, so a system that lacks one feature falls back for that feature
only. On Linux every fast path is the plain system call: ``pread``/``pwrite``,
``O_TMPFILE`` published with ``linkat``, ``O_DIRECT``, ``flock``.

What stands in where a feature is missing:

* positional reads and writes (no ``os.pread``/``os.pwrite``, as on Windows):
  ``lseek`` + ``read``/``write`` under a lock per descriptor, so several threads
  may write at different offsets of one file at once;
* an anonymous temp file (no ``O_TMPFILE``, as on macOS and Windows): a hidden
  named temp file beside the output, removed when not published;
* the cross-process lock: ``flock`` where :mod:`fcntl` exists, else
  ``msvcrt.locking`` on the first byte of the lock file; both die with the process;
* file mode without ``os.fchmod``: ``os.chmod`` by path;
* fsync of a directory where directories cannot be opened (Windows): skipped, as
  the file system there does not need it;
* ``os.replace`` refused with ``PermissionError`` (on Windows a virus scanner or
  indexer that holds the file open): tried again a few times before giving up;
* a rename onto an existing empty directory where rename never replaces (Windows):
  the empty directory is removed first;
* malloc tuning: only where the C library is glibc;
* starting the write-back of a file's range (``posix_fadvise``, as on Linux): nothing
  where it is missing; the fsync that follows writes it all.

The kernel copies, hard links and file owners that a copy of a blob may use instead of
reading and writing it are :mod:`dockerdrag.os_copies`' (none of them needs a module or
flag that only some systems have).
"""

from __future__ import annotations

import contextlib
import errno
import importlib
import os
import stat
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Final

__all__ = [
    "REPLACE_RETRY_DELAYS",
    "ProcessLock",
    "TempOutput",
    "fsync_dir",
    "limit_malloc_arenas",
    "move_dir_into_place",
    "open_read_write",
    "pread",
    "pwrite",
    "pwrite_all",
    "reopen_direct",
    "replace",
    "set_mode",
    "start_write_back",
]

Bytes = bytes | bytearray | memoryview


def _optional_module(name: str) -> ModuleType | None:
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


_fcntl: ModuleType | None = _optional_module("fcntl")
_msvcrt: ModuleType | None = None if _fcntl is not None else _optional_module("msvcrt")

_O_BINARY: Final[int] = getattr(os, "O_BINARY", 0)  # Windows: no newline translation
_O_CLOEXEC: Final[int] = getattr(os, "O_CLOEXEC", 0)
_O_DIRECT: Final[int] = getattr(os, "O_DIRECT", 0)
_O_DIRECTORY: Final[int] = getattr(os, "O_DIRECTORY", 0)
_O_TMPFILE: int = getattr(os, "O_TMPFILE", 0)
_fchmod: Callable[[int, int], None] | None = getattr(os, "fchmod", None)
_fadvise: Callable[[int, int, int, int], None] | None = getattr(os, "posix_fadvise", None)
_FADV_DONTNEED: Final[int] = getattr(os, "POSIX_FADV_DONTNEED", 0)


# ---------------------------------------------------------------------- opening files


def open_read_write(path: str | os.PathLike[str], mode: int = 0o666) -> int:
    """A binary read-write descriptor of ``path``, created with ``mode`` if missing.

    The process's umask applies to ``mode``, as for any file ``open()`` creates.
    """
    return os.open(path, os.O_RDWR | os.O_CREAT | _O_BINARY | _O_CLOEXEC, mode)


def reopen_direct(fd: int) -> int | None:
    """A second, write-only ``O_DIRECT`` descriptor of the file open as ``fd``.

    None where the system has no ``O_DIRECT`` or refuses it for this file.
    """
    if not _O_DIRECT:
        return None
    try:
        return os.open(f"/proc/self/fd/{fd}", os.O_WRONLY | _O_DIRECT | _O_CLOEXEC)
    except OSError:
        return None


def file_mode(fd: int) -> int:
    """The permission bits of the file open as ``fd``."""
    return stat.S_IMODE(os.fstat(fd).st_mode)


def set_mode(fd: int, path: str | os.PathLike[str], mode: int) -> None:
    """Set the permission bits of the file open as ``fd`` at ``path``."""
    if _fchmod is not None:
        _fchmod(fd, mode)
    else:
        os.chmod(path, mode)


# ---------------------------------------------------------------------- positional I/O

_seek_locks: dict[int, threading.Lock] = {}
_seek_locks_guard = threading.Lock()


def _seek_lock(fd: int) -> threading.Lock:
    with _seek_locks_guard:
        return _seek_locks.setdefault(fd, threading.Lock())


def _pwrite_by_seek(fd: int, data: Bytes, offset: int) -> int:
    """``pwrite`` where the system has none: seek and write, one thread per descriptor."""
    with _seek_lock(fd):
        os.lseek(fd, offset, os.SEEK_SET)
        return os.write(fd, data)


def _pread_by_seek(fd: int, size: int, offset: int) -> bytes:
    """``pread`` where the system has none: seek and read, one thread per descriptor."""
    with _seek_lock(fd):
        os.lseek(fd, offset, os.SEEK_SET)
        return os.read(fd, size)


pwrite: Callable[[int, Bytes, int], int] = getattr(os, "pwrite", None) or _pwrite_by_seek
"""Write ``data`` at ``offset`` of ``fd``; return how many bytes were written.

Several threads may write at different offsets of one descriptor at once. The
descriptor's own position is unspecified afterwards."""

pread: Callable[[int, int, int], bytes] = getattr(os, "pread", None) or _pread_by_seek
"""Read up to ``size`` bytes at ``offset`` of ``fd`` (fewer at the end of the file)."""


def pwrite_all(fd: int, data: Bytes, offset: int) -> None:
    """Write all of ``data`` at ``offset`` of ``fd``."""
    with memoryview(data) as view:
        done = 0
        while done < len(view):
            written = pwrite(fd, view[done:], offset + done)
            if written <= 0:  # pragma: no cover - pwrite reports errors by raising
                raise OSError(errno.EIO, "pwrite wrote nothing")
            done += written


def start_write_back(fd: int, offset: int, length: int) -> None:
    """Have the system start writing ``length`` bytes at ``offset`` of ``fd`` to the disk,
    without waiting: a later fsync of the file then finds them written, or on their way.

    Linux does it for ``posix_fadvise(POSIX_FADV_DONTNEED)``: it starts the write of the
    range's dirty pages and drops its clean ones from the page cache (so it suits bytes
    this process is done reading). A hint: nothing where the call is missing, and its
    errors are left to the fsync.
    """
    if _fadvise is not None:
        with contextlib.suppress(OSError):
            _fadvise(fd, offset, length, _FADV_DONTNEED)


# ---------------------------------------------------------------------- publishing files

REPLACE_RETRY_DELAYS: Final = (0.05, 0.1, 0.2, 0.4, 0.8)
"""Seconds to wait before each new try of a rename refused with ``PermissionError``."""


def _retrying(rename: Callable[[str, str], None], source: str, target: str) -> None:
    for delay in REPLACE_RETRY_DELAYS:
        try:
            rename(source, target)
            return
        except PermissionError:  # Windows: another program has the file open
            time.sleep(delay)
    rename(source, target)


_renames_open_files: bool | None = None


def renames_open_files(directory: Path) -> bool:
    """Whether a file in ``directory`` may be renamed while it is open: not on Windows,
    where Python opens files without ``FILE_SHARE_DELETE``. Tried once per process."""
    global _renames_open_files
    if _renames_open_files is None:
        probe = directory / f".rename-probe-{os.urandom(6).hex()}"
        moved = probe.with_name(probe.name + "-moved")
        try:
            with open(probe, "wb"):
                os.replace(probe, moved)
            _renames_open_files = True
        except OSError:
            _renames_open_files = False
        finally:
            for path in (probe, moved):
                with contextlib.suppress(OSError):
                    path.unlink(missing_ok=True)
    return _renames_open_files


def replace(source: str | os.PathLike[str], target: str | os.PathLike[str]) -> None:
    """``os.replace``, tried again for a moment while it is refused with ``PermissionError``."""
    _retrying(os.replace, os.fspath(source), os.fspath(target))


def move_dir_into_place(source: Path, target: Path) -> None:
    """Rename the directory ``source`` to ``target``, which is absent or an empty directory.

    A ``target`` that is not empty raises the system's error (``ENOTEMPTY`` or
    ``EEXIST``). Where rename never replaces (Windows) an empty ``target`` is
    removed first.
    """
    try:
        _retrying(os.rename, os.fspath(source), os.fspath(target))
    except FileExistsError:
        if target.is_symlink() or not target.is_dir():
            raise
        os.rmdir(target)  # refused unless empty
        _retrying(os.rename, os.fspath(source), os.fspath(target))


def fsync_dir(path: Path) -> None:
    """Make a rename in ``path`` durable; nothing where directories cannot be opened."""
    try:
        fd = os.open(path, os.O_RDONLY | _O_DIRECTORY | _O_CLOEXEC)
    except (PermissionError, IsADirectoryError):  # Windows: a directory is no file
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class TempOutput:
    """A new, empty file beside ``output`` that becomes ``output`` only by :meth:`publish`.

    Where the file system allows it the file is anonymous (``O_TMPFILE``) and gets a
    name only once complete, so even a SIGKILL leaves nothing behind; elsewhere it is
    a hidden ``.<name>.<random>.partial`` file beside ``output``. Use as a context
    manager: leaving it without :meth:`publish` removes the file.

    Its permission bits are set when it is created, before a byte is written: those
    ``open()`` gives a new file under the umask (``0o666 & ~umask``), and where
    ``output`` exists, no bit ``output`` lacks (a private file stays private).
    """

    def __init__(self, output: Path) -> None:
        self.output = output
        self.parent = output.parent if str(output.parent) else Path(".")
        self.fd, self.path = self._open()
        self._closed = False
        try:
            self.mode = file_mode(self.fd) & _existing_mode(output)
            # An anonymous file exists only where fchmod does; /proc names it otherwise.
            set_mode(self.fd, self.path or f"/proc/self/fd/{self.fd}", self.mode)
        except BaseException:
            self.discard()
            raise

    @property
    def anonymous(self) -> bool:
        """Whether the file has no name yet."""
        return self.path is None

    def publish(self) -> None:
        """fsync the file and rename it to ``output`` (replacing it)."""
        if self.path is None:
            self.path = self._name_anonymous_file()
        os.fsync(self.fd)
        self._close()
        replace(self.path, self.output)
        self.path = None

    def discard(self) -> None:
        """Close the file and remove it (if it has a name)."""
        self._close()
        if self.path is not None:
            self.path.unlink(missing_ok=True)
            self.path = None

    def __enter__(self) -> TempOutput:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.discard()

    def _close(self) -> None:
        if not self._closed:
            self._closed = True
            os.close(self.fd)

    def _open(self) -> tuple[int, Path | None]:
        """The file, created with ``0o666`` (so the umask decides its mode, as for open())."""
        if _O_TMPFILE:
            try:
                return os.open(self.parent, _O_TMPFILE | os.O_RDWR | _O_CLOEXEC, 0o666), None
            except OSError as exc:  # this file system has no anonymous files
                if exc.errno not in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL, errno.ENOENT):
                    raise
        flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | _O_BINARY | _O_CLOEXEC
        for _ in range(100):
            path = self.parent / f".{self.output.name}.{os.urandom(6).hex()}.partial"
            try:
                return os.open(path, flags, 0o666), path
            except FileExistsError:
                continue
        raise FileExistsError(errno.EEXIST, "no free name for a temporary file", str(self.parent))

    def _name_anonymous_file(self) -> Path:
        """Give the finished anonymous file a hidden name beside ``output``."""
        # linkat(AT_SYMLINK_FOLLOW) through /proc; src_dir_fd makes os.link use linkat.
        fd_dir = os.open("/proc/self/fd", os.O_RDONLY | _O_DIRECTORY | _O_CLOEXEC)
        try:
            for _ in range(100):
                candidate = self.parent / f".{self.output.name}.{os.urandom(6).hex()}.partial"
                try:
                    os.link(str(self.fd), candidate, src_dir_fd=fd_dir, follow_symlinks=True)
                    return candidate
                except FileExistsError:
                    continue
        finally:
            os.close(fd_dir)
        raise FileExistsError(errno.EEXIST, "no free name for a temporary file", str(self.parent))


def _existing_mode(path: Path) -> int:
    """The permission bits of the file at ``path``; all of them if there is none."""
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except (FileNotFoundError, NotADirectoryError):
        return 0o777


# ---------------------------------------------------------------------- locks

# msvcrt.locking refuses a region another process holds with EACCES (non-blocking
# mode) or EDEADLOCK (after its own retries).
_LOCK_HELD_ERRNOS: Final = frozenset({errno.EACCES, errno.EAGAIN, errno.EDEADLK})
_MSVCRT_LOCK_OFFSET: Final = 1 << 30  # Windows locks bytes past the end of a file too


class ProcessLock:
    """An exclusive lock on the file ``path`` (created if missing), between processes.

    ``flock`` where :mod:`fcntl` exists, else ``msvcrt.locking`` of one byte far past
    the file's end (Windows' locks are mandatory: a locked byte could not be read by
    the others, and the file's bytes are the holder's note, :meth:`note_holder`).
    The system drops the lock when the process ends, however it ends, so a killed
    process leaves no stale lock. Not for threads of one process. (A system
    with neither module, such as WASI, runs no other processes: the lock always succeeds.)
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._fd = open_read_write(path)
        self._held = False

    def try_acquire(self) -> bool:
        """Take the lock if no other process holds it; whether it was taken."""
        if _fcntl is not None:
            try:
                _fcntl.flock(self._fd, _fcntl.LOCK_EX | _fcntl.LOCK_NB)
            except BlockingIOError:
                return False
        elif _msvcrt is not None:
            os.lseek(self._fd, _MSVCRT_LOCK_OFFSET, os.SEEK_SET)
            try:
                _msvcrt.locking(self._fd, _msvcrt.LK_NBLCK, 1)
            except OSError as exc:
                if exc.errno in _LOCK_HELD_ERRNOS:
                    return False
                raise
        self._held = True
        return True

    def names_locked_file(self, path: str | os.PathLike[str]) -> bool:
        """Whether ``path`` still names the file this lock is on.

        A lock file removed (by ``dockerdrag cache prune``, holding the lock) while
        another process waited for it locks nothing once that process gets it.
        """
        try:
            on_disk = os.stat(path)
        except FileNotFoundError:
            return False
        mine = os.fstat(self._fd)
        return (on_disk.st_dev, on_disk.st_ino) == (mine.st_dev, mine.st_ino)

    def note_holder(self, note: str) -> None:
        """Write ``note`` (who holds the lock) into the lock file, replacing what it held."""
        os.ftruncate(self._fd, 0)
        pwrite_all(self._fd, note.encode("ascii"), 0)

    def close(self) -> None:
        """Release the lock (if held) and close the lock file."""
        try:
            if self._held:
                self._held = False
                if _fcntl is not None:
                    _fcntl.flock(self._fd, _fcntl.LOCK_UN)
                elif _msvcrt is not None:
                    os.lseek(self._fd, _MSVCRT_LOCK_OFFSET, os.SEEK_SET)
                    _msvcrt.locking(self._fd, _msvcrt.LK_UNLCK, 1)
        finally:
            os.close(self._fd)


# ---------------------------------------------------------------------- process tuning

_M_ARENA_MAX: Final = -8


def limit_malloc_arenas(arenas: int = 2) -> None:
    """At most ``arenas`` glibc malloc arenas; nothing where the C library is not glibc.

    Otherwise each worker thread keeps its own pool of freed 256 KiB-1 MiB buffers,
    which shows as peak RSS growing with image size (one arena would save more but
    slows the threads down through lock contention). ``mallopt`` is looked up among
    the symbols already loaded into the process (the C library is one), which needs
    no ``ldconfig`` run as ``ctypes.util.find_library`` would.
    """
    if not _is_glibc():
        return
    with contextlib.suppress(OSError, AttributeError, TypeError):
        import ctypes

        ctypes.CDLL(None).mallopt(_M_ARENA_MAX, arenas)


def _is_glibc() -> bool:
    confstr: Callable[[str], str | None] | None = getattr(os, "confstr", None)
    if confstr is None:
        return False
    try:
        return bool(confstr("CS_GNU_LIBC_VERSION"))
    except (ValueError, OSError):
        return False
