"""A stand-in for Windows' ``msvcrt`` module on Linux: ``locking`` on the kernel's record locks.

``msvcrt.locking(fd, mode, nbytes)`` locks ``nbytes`` from the descriptor's current
position, as the C runtime's ``_locking`` does: ``LK_NBLCK``/``LK_NBRLCK`` fail at
once with ``EACCES`` while another process holds the region, ``LK_LOCK``/``LK_RLCK``
try ten times a second apart and then fail with ``EDEADLOCK``, ``LK_UNLCK`` unlocks.
Here the regions are POSIX record locks (``fcntl.lockf``), which the kernel drops
when the process dies, as Windows drops a dead process's locks. Unlike Windows they
do not exclude descriptors of one process from each other.

The emulated Windows profile (``tests.support.platform_profiles``) imports this
module while ``fcntl`` is still importable, then hides ``fcntl``.
"""

from __future__ import annotations

import errno
import fcntl
import os
import time

LK_UNLCK = 0
LK_LOCK = 1
LK_NBLCK = 2
LK_RLCK = 3
LK_NBRLCK = 4

_BLOCKING_TRIES = 10


def locking(fd: int, mode: int, nbytes: int) -> None:
    """Lock, or unlock, ``nbytes`` of ``fd`` from its current position."""
    start = os.lseek(fd, 0, os.SEEK_CUR)
    if mode == LK_UNLCK:
        fcntl.lockf(fd, fcntl.LOCK_UN, nbytes, start)
        return
    kind = fcntl.LOCK_EX if mode in (LK_LOCK, LK_NBLCK) else fcntl.LOCK_SH
    tries = _BLOCKING_TRIES if mode in (LK_LOCK, LK_RLCK) else 1
    for attempt in range(tries):
        try:
            fcntl.lockf(fd, kind | fcntl.LOCK_NB, nbytes, start)
            return
        except OSError as exc:
            if exc.errno not in (errno.EACCES, errno.EAGAIN):
                raise
        if attempt + 1 < tries:
            time.sleep(1)
    code = errno.EDEADLK if tries > 1 else errno.EACCES
    raise OSError(code, os.strerror(code))
