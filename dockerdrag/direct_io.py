"""Write a large output file past the page cache (``O_DIRECT``), in a helper thread.

Why: an archive is gigabytes written once, then fsynced. Through the page cache every
byte is copied into freshly allocated cache pages, and on virtual machines whose memory
the host hands out lazily that allocation costs more than the disk: there, writing and
fsyncing a big layer with ``O_DIRECT`` takes a fraction of the system time it takes through
the page cache (the figures: benchmarks/README.md, "Measurements behind the defaults").
The final fsync has nothing left to flush.

How: :class:`DirectFileWriter` gathers writes into page-aligned blocks and hands each
full block to a :class:`BlockWriter`, whose helper thread writes it with ``pwrite`` on a
second descriptor of the same file opened with ``O_DIRECT``, while the caller goes on
producing the next block. Everything
that cannot be written aligned goes through the ordinary descriptor: the unaligned tail
and overwrites of bytes already handed to the helper (a tar header patched after its
data, see ``TarWriter.add_stream``), both at :meth:`DirectFileWriter.finish` once the
helper has drained (overwrites are kept until then, up to 1 MiB of them). Aligned
direct writes and buffered writes therefore never touch the same page. Where
``O_DIRECT`` is refused (tmpfs on older kernels, some network file systems, or a first
direct write answered with ``EINVAL``) every write goes through the ordinary
descriptor, which is as correct and only slower.

A file filled in regions at known offsets by several threads at once is written by
:mod:`dockerdrag.direct_regions` instead (the two are never mixed in one file).

Errors of the helper thread (``ENOSPC`` above all) are raised as the original
:class:`OSError` by the next call of the writer, and by :meth:`DirectFileWriter.finish`.
"""

from __future__ import annotations

import errno
import mmap
import os
import queue
import threading
from typing import Final, Protocol

from .closing import ClosedOnExit
from .osfiles import pwrite_all, reopen_direct

__all__ = [
    "DIRECT_BLOCK",
    "PAGE",
    "BlockWriter",
    "DirectFileWriter",
    "Hasher",
    "Readable",
    "pwrite_past_cache",
    "read_hashed",
]

DIRECT_BLOCK: Final = 1 << 19
"""Bytes per direct write (a multiple of every block size O_DIRECT may require)."""

PAGE: Final = mmap.PAGESIZE
"""The page size: direct writes cover whole pages."""
_MAX_PATCH_BYTES: Final = 1 << 20  # deferred overwrites kept in memory at most
_DEPTH: Final = 1  # full blocks queued for the helper at most (memory: DEPTH + 2 blocks)


class DirectFileWriter(ClosedOnExit):
    """A write-only, sequential, seek-to-patch file writer over the open descriptor ``fd``.

    ``fd`` must be open for writing (and stays owned by the caller); the file must be
    empty. Supports :meth:`write`, :meth:`fill_from`, :meth:`tell`, :meth:`seek` (to any
    offset up to the end, to overwrite what was written, then back to the end),
    :meth:`fileno`, :meth:`finish` (write everything: call before fsync) and
    :meth:`close`. It keeps the logical file (position, end, the block being filled,
    overwrites of bytes already handed over); a :class:`BlockWriter` writes the full
    blocks. A file written in regions at offsets is
    :class:`~dockerdrag.direct_regions.DirectRegionFile`'s job, never mixed with this one.
    """

    def __init__(self, fd: int, *, block_size: int = DIRECT_BLOCK) -> None:
        if block_size <= 0 or block_size % mmap.PAGESIZE:
            raise ValueError("block_size must be a positive multiple of the page size")
        self._fd = fd
        self._block_size = block_size
        self._blocks = BlockWriter(fd, block_size)
        self._end = 0  # bytes written so far (the logical file size)
        self._pos = 0  # where the next write goes
        self._base = 0  # file offset of the current block's first byte
        self._fill = 0  # bytes in the current block
        self._block: mmap.mmap | None = None
        self._closed = False
        self._finished = False
        self._patches: list[tuple[int, bytes]] = []  # overwrites of handed-over bytes
        self._patch_bytes = 0

    # ------------------------------------------------------------------ the file API

    def fileno(self) -> int:
        """The caller's (buffered) descriptor of the file."""
        return self._fd

    def tell(self) -> int:
        """The offset the next write goes to."""
        return self._pos

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        """Move to ``offset`` (from the start, the current position or the end)."""
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._pos, os.SEEK_END: self._end}[whence]
        target = base + offset
        if not 0 <= target <= self._end:
            raise ValueError(f"cannot seek to {target}: the file holds {self._end} bytes")
        self._pos = target
        return target

    def write(self, data: bytes | bytearray | memoryview) -> int:
        """Write ``data`` at the current position; return its length."""
        self._check_open()
        with memoryview(data) as view, view.cast("B") as raw:
            if self._pos < self._end:
                self._overwrite(raw)
            else:
                self._append(raw)
            return len(raw)

    def fill_from(self, stream: Readable, limit: int, hasher: Hasher) -> int:
        """Append up to ``limit`` (> 0) bytes of ``stream``, read straight into the block
        that goes to the file, hashing them; 0 at the end of ``stream``.

        Raises ValueError unless the position is the end of the file. Whatever
        ``hasher`` raises leaves the bytes just read unwritten.
        """
        self._check_open()
        if self._pos != self._end:
            raise ValueError("fill_from() appends: seek to the end of the file first")
        if self._block is None:
            self._block = self._blocks.take()
        count = read_hashed(stream, self._block, self._fill, limit, hasher)
        if count:
            self._fill += count
            self._pos += count
            self._end = self._pos
            if self._fill == self._block_size:
                self._hand_over()
        return count

    def flush(self) -> None:
        """Raise a pending error of the helper thread (data is written by :meth:`finish`)."""
        self._blocks.raise_error()

    def finish(self) -> None:
        """Write every byte (the last, partial block through the buffered descriptor)."""
        self._check_open()
        self._apply_patches()
        if self._fill and self._block is not None:
            pwrite_all(self._fd, memoryview(self._block)[: self._fill], self._base)
            self._base += self._fill
            self._fill = 0
        self._finished = True

    def close(self) -> None:
        """Stop the helper thread and close the direct descriptor (not ``fd``)."""
        if self._closed:
            return
        self._closed = True
        self._blocks.close()

    @property
    def direct(self) -> bool:
        """Whether full blocks still go past the page cache."""
        return self._blocks.direct

    # ------------------------------------------------------------------ internals

    def _check_open(self) -> None:
        if self._closed or self._finished:
            raise ValueError("write to a finished or closed DirectFileWriter")
        self._blocks.raise_error()

    def _append(self, raw: memoryview) -> None:
        done = 0
        while done < len(raw):
            if self._block is None:
                self._block = self._blocks.take()
            room = self._block_size - self._fill
            step = min(room, len(raw) - done)
            self._block[self._fill : self._fill + step] = raw[done : done + step]
            self._fill += step
            done += step
            if self._fill == self._block_size:
                self._hand_over()
        self._pos += len(raw)
        self._end = self._pos

    def _overwrite(self, raw: memoryview) -> None:
        """Overwrite bytes already written: in the current block, or on disk."""
        if self._pos + len(raw) > self._end:
            raise ValueError("an overwrite may not run past the end of the file")
        pos = self._pos
        below = max(0, min(len(raw), self._base - pos))  # bytes already handed over
        if below:
            # Written at finish(), after the last direct write: no wait for the helper now.
            self._patches.append((pos, bytes(raw[:below])))
            self._patch_bytes += below
            if self._patch_bytes > _MAX_PATCH_BYTES:
                self._apply_patches()
        if below < len(raw) and self._block is not None:
            start = pos + below - self._base
            self._block[start : start + len(raw) - below] = raw[below:]
        self._pos += len(raw)

    def _hand_over(self) -> None:
        """Hand the full current block to the block writer."""
        block, self._block = self._block, None
        assert block is not None
        offset, length = self._base, self._fill
        self._base += length
        self._fill = 0
        self._blocks.write(block, offset, length)

    def _apply_patches(self) -> None:
        """Write the deferred overwrites, in order, once the helper has written its blocks."""
        self._blocks.drain()
        for offset, data in self._patches:
            pwrite_all(self._fd, memoryview(data), offset)
        self._patches.clear()
        self._patch_bytes = 0


class BlockWriter:
    """Writes full, page-aligned blocks of a file past the page cache, in a helper thread.

    The blocks come from :meth:`take` (reused once written) and go to :meth:`write`,
    which queues them for the helper thread (started with the first one), or writes
    them at once through ``fd`` where ``O_DIRECT`` is not available. The helper's first
    error is kept and raised by the next :meth:`write`, :meth:`drain` or
    :meth:`raise_error`.
    """

    def __init__(self, fd: int, block_size: int) -> None:
        self._fd = fd
        self._block_size = block_size
        self._direct_fd = reopen_direct(fd)
        self._direct_refused = False  # set by the helper on EINVAL: write buffered from then on
        self._spare: queue.SimpleQueue[mmap.mmap] = queue.SimpleQueue()
        self._full: queue.Queue[tuple[mmap.mmap, int, int] | None] = queue.Queue(_DEPTH)
        self._error: OSError | None = None
        self._thread: threading.Thread | None = None

    @property
    def direct(self) -> bool:
        """Whether blocks still go past the page cache."""
        return self._direct_fd is not None and not self._direct_refused

    def take(self) -> mmap.mmap:
        """An empty block: a written one, or a new one."""
        try:
            return self._spare.get_nowait()
        except queue.Empty:
            return mmap.mmap(-1, self._block_size)  # anonymous: page aligned

    def write(self, block: mmap.mmap, offset: int, length: int) -> None:
        """Write the first ``length`` bytes of ``block`` at ``offset`` (queued if direct)."""
        if self._direct_fd is None:
            pwrite_all(self._fd, memoryview(block)[:length], offset)
            self._spare.put(block)
            return
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._write_blocks, name="dockerdrag-direct-writer", daemon=True
            )
            self._thread.start()
        while True:
            try:
                self._full.put((block, offset, length), timeout=0.5)
                break
            except queue.Full:
                if not self._thread.is_alive():  # pragma: no cover - the helper never dies early
                    raise OSError(errno.EIO, "the direct writer thread stopped") from None
        self.raise_error()

    def drain(self) -> None:
        """Wait until the helper has written every queued block; raise its error."""
        if self._thread is not None:
            self._full.join()
        self.raise_error()

    def raise_error(self) -> None:
        """Raise the helper's error, if it had one."""
        if self._error is not None:
            raise self._error

    def close(self) -> None:
        """Stop the helper thread and close the direct descriptor (not ``fd``)."""
        try:
            if self._thread is not None:
                while self._thread.is_alive():
                    try:
                        self._full.put(None, timeout=0.5)
                        break
                    except queue.Full:  # pragma: no cover - the helper is still writing
                        continue
                self._thread.join()
        finally:
            if self._direct_fd is not None:
                os.close(self._direct_fd)
                self._direct_fd = None

    def _write_blocks(self) -> None:
        """The helper thread: write queued blocks until told to stop."""
        while True:
            item = self._full.get()
            try:
                if item is None:
                    return
                block, offset, length = item
                if self._error is None:
                    try:
                        self._write_direct(block, offset, length)
                    except OSError as exc:
                        self._error = exc
                self._spare.put(block)
            finally:
                self._full.task_done()

    def _write_direct(self, block: mmap.mmap, offset: int, length: int) -> None:
        direct = None if self._direct_refused else self._direct_fd
        if not pwrite_past_cache(direct, self._fd, memoryview(block)[:length], offset):
            self._direct_refused = True


class Readable(Protocol):
    """A stream the ``fill_from`` methods of the writers read from."""

    def readinto(self, buffer: memoryview, /) -> int | None: ...


class Hasher(Protocol):
    """What the ``fill_from`` methods of the writers feed the bytes they read to."""

    def update(self, data: memoryview, /) -> None: ...


def read_hashed(stream: Readable, block: mmap.mmap, start: int, limit: int, hasher: Hasher) -> int:
    """Read up to ``limit`` bytes of ``stream`` into ``block`` from ``start`` (no further
    than its end), feeding them to ``hasher``; how many were read, 0 at its end."""
    room = memoryview(block)[start : start + min(limit, len(block) - start)]
    count = stream.readinto(room) or 0
    if count:
        hasher.update(room[:count])
    del room  # a block is reused or freed: no view of it outlives the call
    return count


def pwrite_past_cache(direct_fd: int | None, fd: int, data: memoryview, offset: int) -> bool:
    """Write aligned ``data`` with ``O_DIRECT`` through ``direct_fd``, else through ``fd``.

    A file system may take ``O_DIRECT`` at open but refuse the writes (``EINVAL``):
    then the data goes through ``fd``. Returns whether ``direct_fd`` is still usable.
    """
    if direct_fd is not None:
        try:
            pwrite_all(direct_fd, data, offset)
            return True
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise
    pwrite_all(fd, data, offset)
    return False
