"""Write a file in regions at known offsets, several threads at once, past the page cache.

A file whose layout is known up front (every member's offset follows from the sizes)
is filled by :class:`DirectRegionFile`: each thread writes one region front to back
through a :class:`RegionWriter` (its whole pages with ``O_DIRECT``, see
:mod:`dockerdrag.direct_io`), and the bytes around the regions are written with
:meth:`DirectRegionFile.write_at`. A direct write returns only once the disk has the
data, so each region's full blocks are written by a helper thread of the file while
the region's own thread fills the next block (write-behind: the thread decompressing
a layer does not wait for the disk), unless the file has no helper threads (the
region's thread then writes its own blocks: many regions written at once, each by a
thread that mostly waits for its bytes, need no more threads) or the region is shorter
than :data:`BEHIND_MIN_BYTES`. The blocks of a region that is done serve the next
region (:class:`BlockPool`): the kernel faults in and zeroes every page of a new block
on first touch, a cost an image of many small layers would pay per layer. A file
written front to back, with headers patched afterwards, is
:class:`~dockerdrag.direct_io.DirectFileWriter`'s job: the two protocols never share a
file, and :class:`DirectOutput` hands a new file to one of them at a time.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Final

from .closing import ClosedOnExit
from .direct_io import (
    DIRECT_BLOCK,
    PAGE,
    DirectFileWriter,
    Hasher,
    Readable,
    pwrite_past_cache,
    read_hashed,
)
from .osfiles import pwrite_all, reopen_direct

__all__ = ["BEHIND_MIN_BYTES", "BlockPool", "DirectOutput", "DirectRegionFile", "RegionWriter"]

BEHIND_MIN_BYTES: Final = 8 << 20
"""The shortest region, of a length given up front, whose full blocks go to the file's
helper threads. A shorter one (a layer of a few megabytes) has few blocks whose writing
could be hidden, and each block handed over wakes a helper thread: it writes its own."""


class BlockPool:
    """Page-aligned blocks of ``block_size`` bytes, handed out and taken back by the
    regions of one file (any thread); a block taken back serves the next region. It keeps
    only blocks given back, so it never holds more than were in use at once."""

    def __init__(self, block_size: int) -> None:
        self.block_size = block_size
        self._free: list[mmap.mmap] = []
        self._lock = threading.Lock()

    def take(self) -> mmap.mmap:
        """A block (its bytes are whatever its last user left)."""
        with self._lock:
            if self._free:
                return self._free.pop()
        return mmap.mmap(-1, self.block_size)

    def give(self, block: mmap.mmap) -> None:
        """Take ``block`` back (no write of it may be in flight)."""
        with self._lock:
            self._free.append(block)

    def close(self) -> None:
        """Free the blocks held (a traceback may still hold a view of one: then it is
        freed with the view)."""
        with self._lock:
            free, self._free = self._free, []
        for block in free:
            with contextlib.suppress(BufferError):
                block.close()


class DirectRegionFile(ClosedOnExit):
    """An empty file filled in regions at offsets, over the open descriptor ``fd``.

    ``fd`` must be open for writing and stays owned by the caller. :meth:`region` hands
    out a writer of the bytes from an offset on (one per thread), :meth:`write_at`
    writes bytes between regions, :meth:`discard` empties the file again. The regions'
    full blocks of ``block_size`` bytes (a multiple of the page size) are written by up to
    ``writers`` helper threads (started when a region first needs them; with none, or
    for a short region, by the region's own thread); the blocks of a closed region are
    kept for the next one (as many as were in use at once, at most).
    """

    def __init__(self, fd: int, *, writers: int = 4, block_size: int = DIRECT_BLOCK) -> None:
        self._fd = fd
        self._direct_fd = reopen_direct(fd)
        self._written = False
        self._closed = False
        self._writers = writers
        self._block_writer: ThreadPoolExecutor | None = None
        self._starting = threading.Lock()  # regions may be opened by several threads
        self._blocks = BlockPool(block_size)

    @property
    def fd(self) -> int:
        """The descriptor of the file (the caller's)."""
        return self._fd

    @property
    def direct(self) -> bool:
        """Whether the regions' whole pages go past the page cache."""
        return self._direct_fd is not None

    @property
    def empty(self) -> bool:
        """Whether nothing was written since the file was opened or last discarded."""
        return not self._written

    def write_at(self, data: bytes, offset: int) -> None:
        """Write ``data`` at ``offset`` through the ordinary descriptor."""
        self._check_open()
        self._written = True
        with memoryview(data) as view:
            pwrite_all(self._fd, view, offset)

    def region(self, start: int, length: int | None = None) -> RegionWriter:
        """A writer of the bytes from ``start`` on, for one thread; full pages go direct.

        A region whose ``length`` is given and under :data:`BEHIND_MIN_BYTES` writes
        its own blocks, even where the file has helper threads."""
        self._check_open()
        self._written = True
        behind = None
        if length is None or length >= BEHIND_MIN_BYTES:
            with self._starting:
                if self._block_writer is None and self._writers:
                    self._block_writer = ThreadPoolExecutor(
                        self._writers, thread_name_prefix="dockerdrag-region-write"
                    )
            behind = self._block_writer
        return RegionWriter(self._fd, self._direct_fd, start, behind=behind, blocks=self._blocks)

    def discard(self) -> None:
        """Empty the file (every region writer has stopped) so it can be written afresh."""
        self._check_open()
        os.ftruncate(self._fd, 0)
        self._written = False

    def close(self) -> None:
        """Stop the helper threads and close the direct descriptor (not ``fd``)."""
        if self._closed:
            return
        self._closed = True
        if self._block_writer is not None:
            self._block_writer.shutdown()  # every region has waited for its writes
        self._blocks.close()
        if self._direct_fd is not None:
            os.close(self._direct_fd)
            self._direct_fd = None

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError("write to a closed DirectRegionFile")


class DirectOutput(ClosedOnExit):
    """A new, empty output file handed to one writer: in regions or front to back.

    :meth:`regions` first, if at all; :meth:`sequential` only while the file is empty
    (never written in regions, or discarded), so the two protocols never mix in one
    file. :meth:`finish` writes what the sequential writer still holds;
    :meth:`close` closes the writers (``fd`` stays the caller's).
    """

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._regions: DirectRegionFile | None = None
        self._sequential: DirectFileWriter | None = None

    def regions(self, writers: int = 4, block_size: int = DIRECT_BLOCK) -> DirectRegionFile:
        """The file as regions at offsets (once, before any sequential writing), in blocks
        of ``block_size`` bytes written by ``writers`` helper threads (0: by each region's
        thread)."""
        if self._regions is not None or self._sequential is not None:
            raise ValueError("the output already has a writer")
        self._regions = DirectRegionFile(self._fd, writers=writers, block_size=block_size)
        return self._regions

    def sequential(self) -> DirectFileWriter:
        """The file written front to back (once; refused after regions were written)."""
        if self._sequential is not None:
            raise ValueError("the output already has a sequential writer")
        if self._regions is not None:
            if not self._regions.empty:
                raise ValueError("the output was written in regions: discard them first")
            self._regions.close()
        self._sequential = DirectFileWriter(self._fd)
        return self._sequential

    def finish(self) -> None:
        """Write every byte the sequential writer still holds (call before fsync)."""
        if self._sequential is not None:
            self._sequential.finish()

    def close(self) -> None:
        """Close the writers handed out."""
        try:
            if self._sequential is not None:
                self._sequential.close()
        finally:
            if self._regions is not None:
                self._regions.close()


class RegionWriter(ClosedOnExit):
    """Writes one region of a file front to back, from ``start``, for one thread.

    Bytes are read into a page-aligned block (no copy) and written once it is full:
    the whole pages with ``O_DIRECT`` when ``direct_fd`` is given, the partial pages
    at the region's ends through ``fd``. A region's whole pages hold no byte of any
    other region, so regions of one file can be written at once by several threads
    and bytes around them with :meth:`DirectRegionFile.write_at`. With ``behind``, a
    full block is written by that executor while the caller fills a second block (one
    write in flight at most); its error is raised by the next call that waits for it:
    the next full block or :meth:`finish`. The blocks come from ``blocks`` and go back
    to it on :meth:`close` (a pool of its own if none is given).
    """

    def __init__(
        self,
        fd: int,
        direct_fd: int | None,
        start: int,
        *,
        behind: ThreadPoolExecutor | None = None,
        blocks: BlockPool | None = None,
    ) -> None:
        self._fd = fd
        self._direct_fd = direct_fd
        self._behind = behind
        self._own_pool = blocks is None
        self._pool = BlockPool(DIRECT_BLOCK) if blocks is None else blocks
        self._block = self._pool.take()
        self._spare: mmap.mmap | None = None  # the block in flight, or free, with ``behind``
        self._in_flight: Future[None] | None = None
        self._closed = False
        self._size = self._pool.block_size
        self._base = start - start % PAGE  # file offset of the block's first byte
        self._done = start - self._base  # block bytes before this are written (or not ours)
        self._fill = self._done  # block bytes before this hold data

    def fill_from(self, stream: Readable, limit: int, hasher: Hasher) -> int:
        """Read up to ``limit`` bytes of ``stream`` into the region, hashing them; 0 at EOF."""
        count = read_hashed(stream, self._block, self._fill, limit, hasher)
        if count:
            self._advance(count)
        return count

    def zero_fill(self, count: int) -> None:
        """Append ``count`` NUL bytes."""
        while count:
            step = min(count, self._size - self._fill)
            self._block[self._fill : self._fill + step] = bytes(step)
            self._advance(step)
            count -= step

    def finish(self) -> None:
        """Write what the block still holds, once the block in flight is written."""
        self._wait()
        if self._fill > self._done:
            self._write(self._block, self._base, self._done, self._fill)
            self._done = self._fill

    def close(self) -> None:
        """Wait for the block in flight, hand the blocks back to the pool (what was not
        finished is not written)."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(OSError):  # the caller is already failing: its error wins
            self._wait()
        for block in (self._block, self._spare):
            if block is not None:
                self._pool.give(block)
        self._spare = None
        if self._own_pool:
            self._pool.close()

    def _advance(self, count: int) -> None:
        self._fill += count
        if self._fill == self._size:
            self._hand_over()
            self._base += self._size
            self._done = self._fill = 0

    def _hand_over(self) -> None:
        """Write the full block: by the helper (swapping in the spare block) or here."""
        full, base, low, high = self._block, self._base, self._done, self._fill
        if self._behind is None:
            self._write(full, base, low, high)
            return
        self._wait()
        self._in_flight = self._behind.submit(self._write, full, base, low, high)
        if self._spare is None:
            self._spare = self._pool.take()
        self._block, self._spare = self._spare, full

    def _wait(self) -> None:
        """Wait for the block in flight to be written; raise its error."""
        in_flight, self._in_flight = self._in_flight, None
        if in_flight is not None:
            in_flight.result()

    def _write(self, block_buffer: mmap.mmap, base: int, low: int, high: int) -> None:
        """Write bytes ``[low, high)`` of ``block_buffer``, whose byte 0 is at ``base``."""
        first_page = min(high, -(-low // PAGE) * PAGE)
        last_page = max(first_page, high - high % PAGE)
        with memoryview(block_buffer) as block:
            if low < first_page:
                pwrite_all(self._fd, block[low:first_page], base + low)
            if first_page < last_page:
                self._write_pages(block[first_page:last_page], base + first_page)
            if last_page < high:
                pwrite_all(self._fd, block[last_page:high], base + last_page)

    def _write_pages(self, pages: memoryview, offset: int) -> None:
        if not pwrite_past_cache(self._direct_fd, self._fd, pages, offset):
            self._direct_fd = None
