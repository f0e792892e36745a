"""The meeting point of the event loop's downloads and the archive writer's thread.

The writer thread waits on a :class:`BlobGate` for each blob the event loop is still
fetching; :func:`run_writer_in_thread` runs the writer so that cancellation is prompt
and clean: the thread is never abandoned; a stop flag (and :meth:`BlobGate.cancel`)
makes it raise :class:`WriterCancelled` at its next chunk or wait, and only once it has
ended does the cancellation propagate.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Iterable
from pathlib import Path

import anyio
import anyio.lowlevel

from .digest import Digest
from .manifest import Descriptor
from .store import BlobStore

Writer = Callable[[threading.Event], None]
"""Writes the archive (in a worker thread); must stop soon once the event is set."""


class WriterCancelled(Exception):
    """Raised inside the writer thread once the pull was cancelled."""


class BlobGate:
    """Lets the writer thread wait for blobs the event loop is still fetching.

    It also hears, from any thread, the uncompressed size a big layer claims before its
    blob arrives (:mod:`size_claims`) and how far each blob's download has its bytes on
    disk (:meth:`note_prefix`): a decoder reads a layer while it arrives through it
    (:class:`~dockerdrag.blob_follow.GrowingBlobs`), waiting on that blob's own condition,
    so a blob's progress wakes only its readers.
    """

    def __init__(
        self,
        store: BlobStore,
        descriptors: Iterable[Descriptor],
    ) -> None:
        self.paths: dict[Digest, Path] = {d.digest: store.blob_path(d.digest) for d in descriptors}
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._blob_moved: dict[Digest, threading.Condition] = {}  # wait_beyond's, by blob
        self._ready: set[Digest] = set()
        self._cancelled = False
        self._hashed_now: set[Digest] = set()
        self._read: set[Digest] = set()
        self._claimed_sizes: dict[Digest, int] = {}
        self._claims_pending = False
        self._prefixes: dict[Digest, tuple[Path, int]] = {}  # partial file, bytes on disk
        self._restarts: dict[Digest, int] = {}  # times each download started its blob over
        self._watched: dict[Digest, int] = {}  # readers waiting for each blob's bytes

    def mark_ready(self, digest: Digest, path: Path, downloaded: bool = False) -> None:
        """Called on the event loop once ``digest`` is verified at ``path``.

        ``downloaded``: its bytes were hashed as this pull wrote them, a moment ago.
        """
        with self._changed:
            self.paths[digest] = path
            if downloaded:
                self._hashed_now.add(digest)
            self._ready.add(digest)
            self._changed.notify_all()
            if digest in self._blob_moved:
                self._blob_moved[digest].notify_all()

    def expect_claims(self) -> None:
        """Size claims are on their way: :meth:`wait_for_size` waits until they settle, so
        the writer places every layer it can before decoders take the largest."""
        with self._changed:
            self._claims_pending = True

    def claims_settled(self) -> None:
        """Every size claim expected was heard or given up."""
        with self._changed:
            self._claims_pending = False
            self._changed.notify_all()

    def note_claimed_size(self, digest: Digest, size: int) -> None:
        """The blob ``digest`` claims ``size`` uncompressed bytes (to be checked)."""
        with self._changed:
            self._claimed_sizes[digest] = size
            self._changed.notify_all()

    def note_prefix(self, digest: Digest, partial: Path, end: int) -> None:
        """The download of ``digest`` has its bytes ``[0, end)`` on disk in ``partial``
        (``end`` goes back to 0 when it starts the blob over). Any thread may call it."""
        if digest not in self.paths:
            return
        with self._changed:
            before = self._prefixes.get(digest, (partial, 0))[1]
            if end < before:
                self._restarts[digest] = self._restarts.get(digest, 0) + 1
            self._prefixes[digest] = (partial, end)
            # The readers of this blob's bytes hear of its progress (each blob has its own
            # condition: one reader per blob wakes, not all), and those waiting for any blob
            # to have bytes hear when one has some (or none left).
            if self._watched.get(digest):
                self._blob_moved[digest].notify_all()
            if (before == 0) != (end == 0):
                self._changed.notify_all()

    def restarts(self, digest: Digest) -> int:
        """How often the download of ``digest`` went back below bytes it had on disk (a
        reader of its partial file that saw bytes before may have read unverified ones)."""
        with self._changed:
            return self._restarts.get(digest, 0)

    def is_ready(self, digest: Digest) -> bool:
        """Whether ``digest`` is verified already (waiting for it returns at once)."""
        return digest in self._ready

    def size_known(self, digest: Digest) -> bool:
        """Whether :meth:`wait_for_size` answers at once (claims settled, and the blob is
        ready or claims a size)."""
        return not self._claims_pending and (digest in self._ready or digest in self._claimed_sizes)

    def wait_for_size(self, digest: Digest) -> Path | int:
        """Block until the claims expected have settled and ``digest`` is ready (its path)
        or claims a size (that size)."""
        with self._changed:
            self._changed.wait_for(lambda: self.size_known(digest) or self._cancelled)
            if self._cancelled:
                raise WriterCancelled("pull cancelled")
            if digest in self._ready:
                return self.paths[digest]
            return self._claimed_sizes[digest]

    def wait_beyond(self, digest: Digest, position: int) -> tuple[Path, int, bool]:
        """Block until the blob's bytes on disk reach past ``position`` (or fell short of
        it: the download started over) or it is ready; the file, how far its bytes reach,
        whether it is ready (verified). Raise once cancelled."""

        def moved() -> bool:
            end = self._prefixes.get(digest, (None, position))[1]
            return end != position or digest in self._ready or self._cancelled

        with self._changed:
            condition = self._blob_moved.setdefault(digest, threading.Condition(self._lock))
            self._watched[digest] = self._watched.get(digest, 0) + 1
            try:
                condition.wait_for(moved)
            finally:
                self._watched[digest] -= 1
            if self._cancelled:
                raise WriterCancelled("pull cancelled")
            self._read.add(digest)
            if digest in self._ready:
                return self.paths[digest], -1, True
            partial, end = self._prefixes[digest]
            return partial, end, False

    def cancel(self) -> None:
        """Wake every waiting writer thread: from now on :meth:`wait` raises."""
        with self._changed:
            self._cancelled = True
            self._changed.notify_all()
            for condition in self._blob_moved.values():
                condition.notify_all()

    def hashed_in_this_pull(self, digest: Digest) -> bool:
        """Whether the ready blob ``digest`` was downloaded and hashed by this pull."""
        return digest in self._hashed_now

    def read_by_writer(self) -> set[Digest]:
        """The blobs the writer opened to read their bytes (once it has stopped)."""
        return set(self._read)

    def reopen(self) -> None:
        """Let a new run of the writer wait again after the last one ended (was cancelled)."""
        with self._changed:
            self._cancelled = False

    def wait_to_read(self, digest: Digest) -> Path:
        """As :meth:`wait`, for a writer about to read the blob's bytes (it is noted)."""
        path = self.wait(digest)
        self._read.add(digest)
        return path

    def wait_for_any(self, digests: Collection[Digest]) -> Digest:
        """Block (in the writer thread) until one of ``digests`` is ready (the least, if
        several are) and return it; raise once cancelled."""
        with self._changed:
            self._changed.wait_for(lambda: self._cancelled or not self._ready.isdisjoint(digests))
            if self._cancelled:
                raise WriterCancelled("pull cancelled")
            return min(self._ready.intersection(digests))

    def wait_for_any_or_arriving(self, digests: Collection[Digest]) -> tuple[Digest, bool]:
        """Block (in the writer thread) until one of ``digests`` is ready or, failing that,
        has bytes on disk; the least such blob, and whether it is still arriving (not
        ready). Raise once cancelled."""

        def arriving() -> list[Digest]:
            return [d for d in digests if self._prefixes.get(d, (None, 0))[1] > 0]

        with self._changed:
            self._changed.wait_for(
                lambda: self._cancelled or not self._ready.isdisjoint(digests) or arriving()
            )
            if self._cancelled:
                raise WriterCancelled("pull cancelled")
            ready = self._ready.intersection(digests)
            if ready:
                return min(ready), False
            return min(arriving()), True

    def wait(self, digest: Digest) -> Path:
        """Block (in the writer thread) until ``digest`` is ready; raise once cancelled."""
        with self._changed:
            self._changed.wait_for(lambda: digest in self._ready or self._cancelled)
            if self._cancelled:
                raise WriterCancelled("pull cancelled")
            return self.paths[digest]


async def run_writer_in_thread(write: Writer, gate: BlobGate) -> None:
    """Run ``write`` in a worker thread; on cancellation stop it (the stop event, and the
    ``gate`` it may be waiting on), wait for it, propagate."""
    stop = threading.Event()

    async def set_stop_when_cancelled() -> None:
        try:
            await anyio.sleep_forever()
        finally:
            stop.set()
            gate.cancel()

    async with anyio.create_task_group() as group:
        group.start_soon(set_stop_when_cancelled)
        try:
            await anyio.to_thread.run_sync(write, stop)
        except WriterCancelled:
            # Only raised once ``stop`` was set by a cancellation, which the enclosing
            # scope delivers right here: leave the group and let it propagate.
            await anyio.lowlevel.checkpoint()
            raise
        finally:
            group.cancel_scope.cancel()
