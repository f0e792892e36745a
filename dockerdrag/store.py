"""Content-addressed blob cache and atomic output files.

Layout under the cache root::

    blobs/sha256/<hex>            verified blobs (size and sha256 checked before rename)
    blobs/sha256/<hex>.partial    bytes received so far; resumable
    locks/<hex>.lock              per-digest lock files (fcntl) shared between processes

Nothing reaches its final name unverified: a partial file is renamed to its
digest only after :func:`commit` re-checks size and hash, and the archive is
written to a hidden temp file beside the output and ``os.replace``d into place.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import anyio

from .digest import Digest
from .errors import OutputError

HASH_CHUNK = 1 << 20


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/dockerdrag``, else ``~/.cache/dockerdrag``."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "dockerdrag"


def hash_file(path: Path, limit: int | None = None) -> tuple[hashlib._Hash, int]:
    """Hash the first ``limit`` bytes of ``path`` (all when None); return (state, size)."""
    state = hashlib.sha256()
    size = 0
    with open(path, "rb") as handle:
        while limit is None or size < limit:
            want = HASH_CHUNK if limit is None else min(HASH_CHUNK, limit - size)
            chunk = handle.read(want)
            if not chunk:
                break
            state.update(chunk)
            size += len(chunk)
    return state, size


def describe_os_error(exc: OSError, what: str) -> str:
    """A message for an OSError that a user can act on."""
    if exc.errno == errno.ENOSPC:
        return f"no space left on device while {what}"
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"permission denied while {what}: {exc.filename or ''}".rstrip(": ")
    return f"{exc.strerror or exc} while {what}"


@dataclass
class BlobStore:
    """A directory of verified blobs plus resumable partial downloads."""

    root: Path
    _locks: dict[str, anyio.Lock] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        self.blob_dir = self.root / "blobs" / "sha256"
        self.lock_dir = self.root / "locks"

    def ensure(self) -> None:
        """Create the cache directories."""
        try:
            self.blob_dir.mkdir(parents=True, exist_ok=True)
            self.lock_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(
                describe_os_error(exc, f"creating the cache directory {self.root}")
            ) from exc

    def blob_path(self, digest: Digest) -> Path:
        """Where the verified blob lives."""
        return self.blob_dir / digest.hex

    def partial_path(self, digest: Digest) -> Path:
        """Where the bytes of an unfinished download live."""
        return self.blob_dir / f"{digest.hex}.partial"

    def has(self, digest: Digest, size: int) -> bool:
        """True if a committed blob of the expected size exists."""
        try:
            return self.blob_path(digest).stat().st_size == size
        except FileNotFoundError:
            return False

    def commit(self, digest: Digest) -> Path:
        """fsync the partial file and rename it to its digest (caller verified it)."""
        partial = self.partial_path(digest)
        with open(partial, "rb+") as handle:
            os.fsync(handle.fileno())
        final = self.blob_path(digest)
        os.replace(partial, final)
        return final

    @contextlib.asynccontextmanager
    async def lock(self, digest: Digest) -> AsyncIterator[None]:
        """Hold the per-digest lock: in this process (anyio) and across processes (flock)."""
        local = self._locks.setdefault(digest.hex, anyio.Lock())
        async with local:
            lock_path = self.lock_dir / f"{digest.hex}.lock"
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                await _flock(fd)
                yield
            finally:
                with anyio.CancelScope(shield=True):
                    fcntl.flock(fd, fcntl.LOCK_UN)
                    os.close(fd)


async def _flock(fd: int) -> None:
    """Take an exclusive flock without blocking the event loop."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return
    except BlockingIOError:
        pass
    while True:
        await anyio.sleep(0.05)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            continue


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
def atomic_output(output: Path) -> Iterator[BinaryIO]:
    """Yield a temp file beside ``output``; on success fsync and rename it into place.

    On any exception (including cancellation) the temp file is removed and the
    output path is left untouched.
    """
    check_output_path(output)
    parent = output.parent if str(output.parent) else Path(".")
    try:
        fd, temp_name = tempfile.mkstemp(prefix=f".{output.name}.", suffix=".partial", dir=parent)
    except OSError as exc:
        raise OutputError(describe_os_error(exc, f"creating a file in {parent}")) from exc
    temp_path = Path(temp_name)
    try:
        with os.fdopen(fd, "w+b") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp_path, 0o644)
        os.replace(temp_path, output)
    except OSError as exc:
        temp_path.unlink(missing_ok=True)
        raise OutputError(describe_os_error(exc, f"writing {output}")) from exc
    except BaseException:
        temp_path.unlink(missing_ok=True)
        raise
