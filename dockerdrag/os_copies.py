"""Copies of a file that need not go through Python: in the kernel, or as a second name.

Each function tries the fast way the running system offers and says when it did
nothing, so the caller (:mod:`dockerdrag.blob_copy`) copies the bytes itself:

* a copy between two files inside the kernel (``copy_file_range``, which reflinks
  where the file system can): where it is missing or refused for the pair of files,
  nothing is copied and the caller copies the bytes itself;
* a second name for a file (a hard link): where the system has none, or refuses it
  for the pair (another file system, no links there, too many links, not permitted),
  nothing is done and the caller copies the file;
* the owner of a file (no ``os.geteuid``, as on Windows): every file counts as this
  user's.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from typing import Final

__all__ = ["copy_file_range", "link_file", "owned_by_this_user"]

_copy_file_range: Callable[[int, int, int, int, int], int] | None = getattr(
    os, "copy_file_range", None
)

# What copy_file_range answers when it cannot copy between these two files (across
# file systems on older kernels, a file system or sandbox without it, an output that
# is no regular file or is open for appending): the bytes are then copied by reading
# and writing. Every other error (ENOSPC, EIO) is the caller's.
_KERNEL_COPY_REFUSED: Final = frozenset(
    {
        errno.EXDEV,
        errno.EINVAL,
        errno.ENOSYS,
        errno.EOPNOTSUPP,
        errno.ENOTSUP,
        errno.EBADF,
        errno.EPERM,
        errno.ESPIPE,
        errno.ETXTBSY,
        errno.EISDIR,
    }
)


def copy_file_range(
    src_fd: int, dst_fd: int, count: int, *, src_offset: int, dst_offset: int
) -> int:
    """Copy ``count`` bytes from ``src_offset`` of ``src_fd`` to ``dst_offset`` of ``dst_fd``
    inside the kernel (a reflink where the file system shares blocks); neither
    descriptor's position moves.

    Returns how many bytes were copied: ``count``, fewer where the source ends, or
    fewer (down to 0) where the system has no kernel copy or refuses it for these
    files; the caller then copies the rest itself, from where this stopped.
    """
    if _copy_file_range is None:
        return 0
    done = 0
    while done < count:
        try:
            copied = _copy_file_range(
                src_fd, dst_fd, count - done, src_offset + done, dst_offset + done
            )
        except OSError as exc:
            if exc.errno in _KERNEL_COPY_REFUSED:
                return done
            raise
        if copied <= 0:  # the source ends here
            return done
        done += copied
    return done


_LINK_REFUSED: Final = frozenset(
    {
        errno.EXDEV,
        errno.EPERM,
        errno.EACCES,
        errno.EMLINK,
        errno.ENOSYS,
        errno.EOPNOTSUPP,
        errno.ENOTSUP,
    }
)
_link: Callable[[str, str], None] | None = getattr(os, "link", None)
_geteuid: Callable[[], int] | None = getattr(os, "geteuid", None)


def link_file(source: str | os.PathLike[str], target: str | os.PathLike[str]) -> bool:
    """Give the file ``source`` the new, second name ``target`` (a hard link: one file,
    two names). False, and nothing done, where the system has no links or refuses this
    one (another file system, one without links, too many links, not permitted)."""
    if _link is None:
        return False
    try:
        _link(os.fspath(source), os.fspath(target))
    except OSError as exc:
        if exc.errno in _LINK_REFUSED:
            return False
        raise
    return True


def owned_by_this_user(found: os.stat_result) -> bool:
    """Whether the file ``found`` describes belongs to the user this process runs as."""
    return _geteuid is None or found.st_uid == _geteuid()
