"""Read a blob file past the page cache (``O_DIRECT``), where the system allows.

A big blob is written past the page cache (:mod:`dockerdrag.partial_blob`), then read
once or twice (its prefix hashed, its layer inflated). Read through the page cache, each
byte would first land in a page the cache allocates for it, which on virtual machines
whose memory the host hands out lazily costs about what the write past the cache saved
(benchmarks/README.md, "Measurements behind the defaults"). :class:`DirectReads` reads
whole pages into a page-aligned buffer taken from the process's pool for each read;
bytes that went through the page cache (a buffered write of a block's unaligned tail)
are flushed to the disk by the kernel before a direct read of them, so every read sees
every byte written. Where ``O_DIRECT`` is missing or refused, it reads through the page cache.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
from collections.abc import Callable, Iterator
from typing import Any

from .closing import ClosedOnExit
from .direct_io import PAGE
from .direct_regions import BlockPool
from .osfiles import pread, reopen_direct

__all__ = ["READ_SIZE", "DirectFile", "DirectReads"]

BUFFER_SIZE = 1 << 20
"""Bytes of the aligned buffer."""
READ_SIZE = BUFFER_SIZE - PAGE
"""The most one read returns wherever it starts: the buffer less the page it may start in."""


_preadv: Callable[[int, list[memoryview], int], int] | None = getattr(os, "preadv", None)
"""One read into a buffer at an offset (every system with ``O_DIRECT`` has it)."""

_BUFFERS = BlockPool(BUFFER_SIZE)
"""The aligned buffers of every :class:`DirectReads` of the process, each taken for one
read: the process holds as many as were read into at once (not one per open file)."""


class DirectReads(ClosedOnExit):
    """Positional reads of the file at ``path``, past the page cache where possible."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._file = open(path, "rb", buffering=0)  # noqa: SIM115 - closed by close()
        fd = self._file.fileno()
        self._direct_fd = None if _preadv is None else reopen_direct(fd, reading=True)

    @contextlib.contextmanager
    def read(self, offset: int, size: int) -> Iterator[memoryview | bytes]:
        """Up to ``size`` (at most :data:`READ_SIZE`) bytes from ``offset``, fewer at the
        end of the file, for the ``with`` block (a view of a buffer taken back after it)."""
        if self._direct_fd is not None:
            start = offset - offset % PAGE
            length = min(BUFFER_SIZE, -(-(offset + size - start) // PAGE) * PAGE)
            buffer = _BUFFERS.take()
            try:
                with memoryview(buffer) as view:
                    try:
                        assert _preadv is not None  # no direct descriptor without it
                        count = _preadv(self._direct_fd, [view[:length]], start)
                    except OSError as exc:
                        if exc.errno != errno.EINVAL:
                            raise
                        self._stop_direct()  # refused for this file: the page cache from now on
                    else:
                        skip = offset - start
                        with view[skip : skip + max(0, min(count - skip, size))] as data:
                            yield data
                        return
            finally:
                _BUFFERS.give(buffer)
        yield pread(self._file.fileno(), size, offset)

    def close(self) -> None:
        self._stop_direct()
        self._file.close()

    def _stop_direct(self) -> None:
        if self._direct_fd is not None:
            os.close(self._direct_fd)
            self._direct_fd = None


class DirectFile(io.RawIOBase):
    """The file at ``path`` as a readable, seekable stream over :class:`DirectReads`."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        super().__init__()
        self._reads = DirectReads(path)
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        if whence == os.SEEK_CUR:
            offset += self._position
        elif whence != os.SEEK_SET:
            raise io.UnsupportedOperation("seek from the end")
        self._position = offset
        return offset

    def tell(self) -> int:
        return self._position

    def readinto(self, buffer: Any) -> int:
        with (
            memoryview(buffer) as view,
            view.cast("B") as target,
            self._reads.read(self._position, min(len(target), READ_SIZE)) as data,
        ):
            count = len(data)
            target[:count] = data
        self._position += count
        return count

    def close(self) -> None:
        if not self.closed:
            self._reads.close()
        super().close()
