"""Emulated platforms: this Linux process without what macOS or Windows lack.

``python tests/support/platform_profiles.py PROFILE [ARGS...]`` takes away what
``PROFILE`` lacks, then runs the ``dockerdrag`` command with ``ARGS`` (the
``PYTHONPATH`` given decides which checkout). ``sys.platform`` stays ``linux``:
dockerdrag must pick its way by what the system offers, not by the platform's name.

* ``macos``: no ``os.O_TMPFILE``, ``os.O_DIRECT`` nor the other Linux-only calls
  (``fdatasync``, ``posix_fadvise``, ``copy_file_range``, ...).
* ``windows``: all of that, and no ``fcntl`` module but an ``msvcrt`` whose
  ``locking`` maps onto the kernel's record locks (tests/support/msvcrt_standin.py);
  no ``os.pread``, ``os.pwrite``, ``os.fchmod``, ``os.O_DIRECTORY``, ``os.O_CLOEXEC``,
  ``os.getuid``; ``os.rename`` onto an existing path raises ``FileExistsError``; a file
  this process has open cannot be removed, renamed or replaced (``PermissionError``,
  Windows' sharing violation: Python opens files without ``FILE_SHARE_DELETE``);
  ``os.open`` of a directory raises ``PermissionError`` and ``dir_fd`` is not
  implemented; ``ctypes.CDLL(None)`` raises ``TypeError``; no ``uvloop`` (it has no
  Windows build): the command runs on asyncio's own loop.
* ``windows-arm64``: ``windows`` without ``isal`` (no wheel there): gzip through zlib.

The standard library and third-party modules are imported before the ``msvcrt``
stand-in appears: ``subprocess``, ``getpass`` and others take a present ``msvcrt``
for Windows itself.
"""

from __future__ import annotations

import contextlib
import errno
import importlib
import importlib.util
import os
import sys
from pathlib import Path
from typing import Any

PROFILES = ("macos", "windows", "windows-arm64")

# Present on Linux, missing on macOS (and Windows).
LINUX_ONLY = (
    "O_TMPFILE",
    "O_DIRECT",
    "O_PATH",
    "O_NOATIME",
    "O_LARGEFILE",
    "fdatasync",
    "posix_fadvise",
    "posix_fallocate",
    "copy_file_range",
    "splice",
    "memfd_create",
    "eventfd",
    "pidfd_open",
    "sched_getaffinity",
)
# Present on Linux and macOS, missing on Windows.
POSIX_ONLY = ("pread", "pwrite", "fchmod", "O_DIRECTORY", "O_CLOEXEC", "getuid")

# Imported before the msvcrt stand-in exists: what dockerdrag imports, and what the
# standard library decides about at import time by trying ``import msvcrt``.
PRELOADED = (
    "asyncio",
    "subprocess",
    "getpass",
    "ssl",
    "json",
    "shutil",
    "tempfile",
    "urllib.request",
    "aiohttp",
    "anyio",
    "anyio._backends._asyncio",
    "anyio.to_thread",
    "rich.console",
    "rich.live",
    "rich.progress",
    "zstandard",
)


def install(profile: str) -> None:
    """Take away from this process what ``profile`` lacks (before dockerdrag is imported)."""
    if profile not in PROFILES:
        raise SystemExit(f"unknown profile {profile!r}: choose from {', '.join(PROFILES)}")
    if any(name == "dockerdrag" or name.startswith("dockerdrag.") for name in sys.modules):
        raise RuntimeError("dockerdrag was imported before the platform profile")
    for name in LINUX_ONLY:
        _remove(os, name)
    if profile == "windows-arm64":
        sys.modules["isal"] = None  # type: ignore[assignment]  # ``import isal`` fails
    if profile.startswith("windows"):
        _install_windows()


def _remove(module: Any, name: str) -> None:
    if hasattr(module, name):
        delattr(module, name)


def _install_windows() -> None:
    for name in PRELOADED:
        importlib.import_module(name)
    for name in ("isal.isal_zlib", "isal.igzip"):  # optional: only where a wheel exists
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    import ctypes
    import shutil

    standin = _load_msvcrt_standin()  # imports the real fcntl: before it is hidden
    sys.modules["msvcrt"] = standin
    sys.modules["fcntl"] = None  # type: ignore[assignment]  # ``import fcntl`` fails
    sys.modules["uvloop"] = None  # type: ignore[assignment]  # ``import uvloop`` fails
    for name in POSIX_ONLY:
        _remove(os, name)
    os.rename = _refusing_open_files(_rename_never_replacing(os.rename))  # type: ignore[assignment]
    os.replace = _refusing_open_files(os.replace)  # type: ignore[assignment]
    os.unlink = os.remove = _refusing_open_files(os.unlink)  # type: ignore[assignment]
    os.open = _open_refusing_directories(os.open)  # type: ignore[assignment]
    shutil._use_fd_functions = False  # type: ignore[attr-defined]  # as on Windows
    ctypes.CDLL = _cdll_without_global_namespace(ctypes.CDLL)  # type: ignore[misc]


def _load_msvcrt_standin() -> Any:
    path = Path(__file__).with_name("msvcrt_standin.py")
    spec = importlib.util.spec_from_file_location("msvcrt", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _rename_never_replacing(real_rename: Any) -> Any:
    def rename(source: Any, target: Any, **kwargs: Any) -> None:
        if os.path.lexists(target):
            raise FileExistsError(
                errno.EEXIST, "Cannot create a file when that file already exists", target
            )
        real_rename(source, target, **kwargs)

    return rename


def _open_files() -> set[str]:
    """The paths of the files this process has open."""
    paths = set()
    for name in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            paths.add(os.readlink(f"/proc/self/fd/{name}"))
    return paths


def _refusing_open_files(real_call: Any) -> Any:
    """``real_call(path, ...)`` refused while one of its paths is open, as on Windows."""

    def call(*paths: Any, **kwargs: Any) -> Any:
        held = _open_files()
        for path in paths:
            if os.path.realpath(path) in held:
                raise PermissionError(
                    errno.EACCES,
                    "The process cannot access the file because it is being used by another"
                    " process",
                    path,
                )
        return real_call(*paths, **kwargs)

    return call


def _open_refusing_directories(real_open: Any) -> Any:
    def open_(path: Any, flags: int, mode: int = 0o777, *, dir_fd: int | None = None) -> int:
        if dir_fd is not None:
            raise NotImplementedError("dir_fd unavailable on this platform")
        if os.path.isdir(path):
            raise PermissionError(errno.EACCES, "Permission denied", path)
        fd: int = real_open(path, flags, mode)
        return fd

    return open_


def _cdll_without_global_namespace(real_cdll: Any) -> Any:
    class CDLL(real_cdll):  # type: ignore[misc,valid-type]
        def __init__(self, name: Any, *args: Any, **kwargs: Any) -> None:
            if name is None:  # Windows' LoadLibrary needs a name
                raise TypeError("LoadLibrary() argument 1 must be str, not None")
            super().__init__(name, *args, **kwargs)

    return CDLL


def main() -> int:
    """Apply the profile named by the first argument, then run ``dockerdrag`` with the rest."""
    if len(sys.argv) < 2:
        raise SystemExit(f"usage: {sys.argv[0]} {{{','.join(PROFILES)}}} [DOCKERDRAG ARGS...]")
    profile = sys.argv[1]
    sys.argv = ["dockerdrag", *sys.argv[2:]]
    # Run as a script, this file's directory leads sys.path: it must not shadow modules.
    here = str(Path(__file__).resolve().parent)
    sys.path[:] = [entry for entry in sys.path if os.path.abspath(entry or ".") != here]
    install(profile)
    from dockerdrag.__main__ import run

    code: int = run()
    return code


if __name__ == "__main__":
    sys.exit(main())
