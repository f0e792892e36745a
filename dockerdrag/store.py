"""Content-addressed blob cache and atomic output files.

Layout under the cache root::

    blobs/sha256/<hex>            verified blobs (size and sha256 checked before rename)
    blobs/sha256/<hex>.partial    bytes received so far; resumable
    blobs/sha256/<hex>.ranges     which byte ranges of a chunked partial are on disk
    locks/<hex>.lock              per-digest lock files shared between processes (the
                                  holder's pid; see :mod:`blob_lock`)
    pulls/<pid>-<random>.inuse    the blobs a running pull uses (see :mod:`cache_use`)

Nothing reaches its final name unverified: a partial file is renamed to its
digest only after the downloader checked size and hash (:meth:`BlobStore.commit`
re-checks the size), and the archive is written to a hidden temp file beside the
output and renamed into place.

Resume state. A partial written front to back (one stream) is its own record:
its length is the number of bytes received. A partial written in parallel
chunks has holes, so a small JSON sidecar ``<hex>.ranges`` lists the byte
ranges already written (``{"size": N, "ranges": [[start, end], ...]}``, end
exclusive). A range is added to the sidecar only after its bytes were handed to
the kernel, so a killed process loses at most what was written since the last
sidecar update (an OS crash may lose more; the final hash catches that). The
sidecar is written before the first out-of-order byte, so a partial with holes
never exists without one.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .blob_lock import LockWait, take_blob_lock
from .digest import Digest
from .direct_regions import DirectOutput
from .errors import OutputError, SizeMismatchError
from .osfiles import TempOutput, open_read_write, replace

log = logging.getLogger("dockerdrag")

_NOT_WRITABLE_ERRNOS = frozenset({errno.EROFS, errno.EACCES, errno.EPERM})


def describe_os_error(exc: OSError, what: str) -> str:
    """A message for an OSError that a user can act on."""
    if exc.errno == errno.ENOSPC:
        return f"no space left on device while {what}"
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"permission denied while {what}: {exc.filename or ''}".rstrip(": ")
    return f"{exc.strerror or exc} while {what}"


class ByteRanges:
    """A set of byte offsets kept as sorted, disjoint, non-adjacent ``[start, end)`` ranges."""

    def __init__(self, ranges: Iterable[tuple[int, int]] = ()) -> None:
        self._ranges: list[tuple[int, int]] = []
        for start, end in ranges:
            self.add(start, end)

    def __repr__(self) -> str:
        return f"ByteRanges({self._ranges!r})"

    def add(self, start: int, end: int) -> None:
        """Mark ``[start, end)`` as present, merging with touching ranges."""
        if end <= start:
            return
        merged: list[tuple[int, int]] = []
        for lo, hi in self._ranges:
            if hi < start or lo > end:
                merged.append((lo, hi))
            else:
                start, end = min(lo, start), max(hi, end)
        merged.append((start, end))
        merged.sort()
        self._ranges = merged

    def as_list(self) -> list[tuple[int, int]]:
        """The ranges, sorted."""
        return list(self._ranges)

    def total(self) -> int:
        """How many bytes are present."""
        return sum(end - start for start, end in self._ranges)

    def prefix(self) -> int:
        """Length of the run of present bytes that starts at offset 0."""
        if self._ranges and self._ranges[0][0] == 0:
            return self._ranges[0][1]
        return 0

    def gaps(self, size: int) -> list[tuple[int, int]]:
        """The missing ``[start, end)`` ranges of ``[0, size)``."""
        missing: list[tuple[int, int]] = []
        cursor = 0
        for start, end in self._ranges:
            if start > cursor:
                missing.append((cursor, min(start, size)))
            cursor = max(cursor, end)
        if cursor < size:
            missing.append((cursor, size))
        return [(lo, hi) for lo, hi in missing if lo < hi]

    def clipped(self, limit: int) -> ByteRanges:
        """The ranges cut at ``limit``."""
        return ByteRanges((lo, min(hi, limit)) for lo, hi in self._ranges if lo < limit)


@dataclass
class BlobStore:
    """A directory of verified blobs plus resumable partial downloads.

    A cache this process may not write (a read-only mount, another user's directory)
    is used read-only (:attr:`read_only`, found by :meth:`ensure`): it serves the
    blobs it holds, without locks (nothing changes them), and the blobs it lacks go
    to a writable store in a new temporary directory (:meth:`for_writing`), removed
    by :meth:`close`.
    """

    root: Path
    lock_wait: LockWait = field(default_factory=LockWait)
    read_only: bool = field(default=False, init=False)
    _scratch: BlobStore | None = field(default=None, init=False, repr=False)
    _unusable: set[Digest] = field(default_factory=set, init=False, repr=False)

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        self.blob_dir = self.root / "blobs" / "sha256"
        self.lock_dir = self.root / "locks"

    def ensure(self) -> None:
        """Create the cache directories, or find that the cache can only be read."""
        try:
            self.blob_dir.mkdir(parents=True, exist_ok=True)
            self.lock_dir.mkdir(parents=True, exist_ok=True)
            writable = os.access(self.blob_dir, os.W_OK) and os.access(self.lock_dir, os.W_OK)
        except OSError as exc:
            if exc.errno not in _NOT_WRITABLE_ERRNOS:
                raise OutputError(
                    describe_os_error(exc, f"creating the cache directory {self.root}")
                ) from exc
            writable = False
        if not writable and not self.read_only:
            self.read_only = True
            log.info("the cache %s is read-only: it serves the blobs it holds", self.root)

    def for_writing(self) -> BlobStore:
        """This store, or for a read-only one the temporary store of the blobs it lacks."""
        if not self.read_only:
            return self
        if self._scratch is None:
            try:
                scratch = BlobStore(Path(tempfile.mkdtemp(prefix="dockerdrag-")), self.lock_wait)
            except OSError as exc:
                raise OutputError(
                    describe_os_error(exc, "creating a temporary directory for blobs")
                ) from exc
            scratch.ensure()
            log.info(
                "the cache %s is read-only: blobs it lacks go to %s (removed afterwards)",
                self.root,
                scratch.root,
            )
            self._scratch = scratch
        return self._scratch

    def close(self) -> None:
        """Remove the temporary store of a read-only cache, if one was made."""
        if self._scratch is not None:
            shutil.rmtree(self._scratch.root, ignore_errors=True)
            self._scratch = None

    def forget(self, digest: Digest) -> None:
        """Drop a blob found corrupt: removed, or in a read-only cache never used again."""
        if self.read_only:
            self._unusable.add(digest)
        else:
            self.blob_path(digest).unlink(missing_ok=True)

    def blob_path(self, digest: Digest) -> Path:
        """Where the verified blob lives."""
        return self.blob_dir / digest.hex

    def partial_path(self, digest: Digest) -> Path:
        """Where the bytes of an unfinished download live."""
        return self.blob_dir / f"{digest.hex}.partial"

    def has(self, digest: Digest, size: int) -> bool:
        """True if a committed blob of the expected size exists (and was not forgotten)."""
        if digest in self._unusable:
            return False
        try:
            return self.blob_path(digest).stat().st_size == size
        except FileNotFoundError:
            return False

    def note_use(self, digest: Digest) -> None:
        """Mark the blob as used now, for pruning blobs unused for a while: its access
        time (the later of it and the mtime counts); the mtime stays, as an ``oci-dir``
        layout that links the file gave it."""
        with contextlib.suppress(OSError):
            path = self.blob_path(digest)
            os.utime(path, ns=(time.time_ns(), path.stat().st_mtime_ns))

    def ranges_path(self, digest: Digest) -> Path:
        """Where the written ranges of a chunked partial are recorded."""
        return self.blob_dir / f"{digest.hex}.ranges"

    def open_partial(self, digest: Digest) -> int:
        """Open (creating it) the partial file for positional reads and writes."""
        return open_read_write(self.partial_path(digest))

    def load_ranges(self, digest: Digest, size: int) -> ByteRanges:
        """What an earlier download left of ``digest`` on disk, as byte ranges.

        Without a sidecar the partial is a prefix (its length counts). A sidecar
        that is unreadable, or describes another size, makes the partial
        worthless: it is emptied. Anything beyond ``size`` is cut off.
        """
        try:
            on_disk = self.partial_path(digest).stat().st_size
        except FileNotFoundError:
            self.ranges_path(digest).unlink(missing_ok=True)
            return ByteRanges()
        recorded = self._read_sidecar(digest, size)
        if recorded is None:
            if self.ranges_path(digest).exists() or on_disk > size:
                self.reset_partial(digest)
                return ByteRanges()
            return ByteRanges([(0, on_disk)])
        return recorded.clipped(min(on_disk, size))

    def _read_sidecar(self, digest: Digest, size: int) -> ByteRanges | None:
        try:
            doc = json.loads(self.ranges_path(digest).read_text(encoding="utf-8"))
            if doc["size"] != size:
                return None
            pairs = [(int(lo), int(hi)) for lo, hi in doc["ranges"]]
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if any(lo < 0 or hi > size for lo, hi in pairs):
            return None
        return ByteRanges(pairs)

    def save_ranges(self, digest: Digest, size: int, ranges: ByteRanges) -> None:
        """Atomically record the written ranges of a chunked partial."""
        target = self.ranges_path(digest)
        temp = target.with_name(f"{target.name}.tmp")
        payload = {"size": size, "ranges": [list(pair) for pair in ranges.as_list()]}
        temp.write_text(json.dumps(payload), encoding="utf-8")
        replace(temp, target)

    def forget_ranges(self, digest: Digest) -> None:
        """Drop the sidecar (the partial is a plain prefix again, or gone)."""
        self.ranges_path(digest).unlink(missing_ok=True)

    def reset_partial(self, digest: Digest) -> None:
        """Empty the partial file and drop its sidecar: the next download starts at 0."""
        self.forget_ranges(digest)
        with open(self.partial_path(digest), "wb"):
            pass

    def commit(self, digest: Digest, size: int | None = None) -> Path:
        """Rename the partial file to its digest (caller verified the hash).

        ``size``, when given, is checked once more against the file on disk. The file is
        not fsynced: a pull would wait for the disk once per blob, and nothing relies
        on a cached blob surviving an OS crash intact. Every reader checks a blob an
        earlier run cached before its bytes count (the docker writer its diff_id, the
        oci writers its digest, :mod:`cache_repair` fetches a rotten one again), and
        each output is fsynced before it gets its name.
        """
        partial = self.partial_path(digest)
        if size is not None and partial.stat().st_size != size:
            raise SizeMismatchError(
                f"partial blob {digest} is not {size} bytes long; refusing to commit it"
            )
        self.forget_ranges(digest)
        final = self.blob_path(digest)
        replace(partial, final)
        return final

    @contextlib.asynccontextmanager
    async def lock(self, digest: Digest) -> AsyncIterator[None]:
        """Hold the per-digest lock, in this process and across processes (a lock file;
        see :mod:`blob_lock` for how a pull waits for it)."""
        held = await take_blob_lock(
            self.lock_dir / f"{digest.hex}.lock",
            [self.partial_path(digest), self.ranges_path(digest)],
            digest.short,
            self.root,
            self.lock_wait,
        )
        try:
            yield
        finally:
            held.release()


def check_output_path(output: Path) -> None:
    """Fail early, before any download, if ``output`` cannot be written."""
    parent = output.parent if str(output.parent) else Path(".")
    if not parent.is_dir():
        raise OutputError(f"output directory {parent} does not exist")
    if output.is_dir():
        raise OutputError(f"output path {output} is a directory")
    if not os.access(parent, os.W_OK):
        raise OutputError(f"output directory {parent} is not writable")


@contextlib.contextmanager
def atomic_output(output: Path) -> Iterator[DirectOutput]:
    """Yield a temp file beside ``output`` to write (:meth:`DirectOutput.sequential` or
    :meth:`DirectOutput.regions`); on success fsync and rename it.

    On any exception (including cancellation) the temp file is removed and the
    output path is left untouched. Where the file system allows it the temp file
    is anonymous and gets a name only once complete, so even a SIGKILL leaves
    nothing behind (:class:`~dockerdrag.osfiles.TempOutput`). Full blocks bypass the
    page cache (:mod:`~dockerdrag.direct_io`, :mod:`~dockerdrag.direct_regions`): an
    archive is written once.
    """
    check_output_path(output)
    try:
        temp = TempOutput(output)
    except OSError as exc:
        raise OutputError(describe_os_error(exc, f"creating a file in {output.parent}")) from exc
    with temp:
        try:
            with DirectOutput(temp.fd) as handle:
                yield handle
                handle.finish()
            temp.publish()
        except OSError as exc:
            raise OutputError(describe_os_error(exc, f"writing {output}")) from exc
