"""What the blob cache holds, and pruning it safely while other pulls run.

:func:`summarize` counts the verified blobs, the partial downloads and the bytes
under the cache root. :func:`prune` removes blobs and partials, each under its
blob's lock (taken without waiting: a blob another process is fetching is left
alone), and never a blob a running pull has recorded as in use
(:mod:`cache_use`). A lock file is removed with the last file of its blob, while
held; a process that waited on it locks the new file instead (:mod:`blob_lock`).
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

from .cache_use import InUseUnknown, blobs_in_use
from .osfiles import ProcessLock
from .store import BlobStore

_HEX = re.compile(r"[0-9a-f]{64}")
_PARTIAL_SUFFIXES = (".partial", ".ranges", ".ranges.tmp")
SECONDS_PER_DAY = 86400


@dataclass(frozen=True)
class CacheSummary:
    """What a cache holds."""

    root: Path
    total_bytes: int
    blobs: int
    blob_bytes: int
    partials: int
    partial_bytes: int


@dataclass(frozen=True)
class PruneResult:
    """What :func:`prune` removed, and how many blobs it kept because they were in use."""

    blobs: int = 0
    partials: int = 0
    bytes_freed: int = 0
    kept_in_use: int = 0


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def summarize(root: Path) -> CacheSummary:
    """Count the blobs, partial downloads and bytes of the cache at ``root``."""
    store = BlobStore(root)
    blobs = blob_bytes = partials = partial_bytes = total = 0
    if root.is_dir():
        for path in root.rglob("*"):
            if path.is_file():
                total += _size(path)
    if store.blob_dir.is_dir():
        for path in store.blob_dir.iterdir():
            if _HEX.fullmatch(path.name):
                blobs += 1
                blob_bytes += _size(path)
            elif path.name.endswith(".partial"):
                partials += 1
                partial_bytes += _size(path)
    return CacheSummary(root, total, blobs, blob_bytes, partials, partial_bytes)


def _digests(store: BlobStore) -> list[str]:
    """Every digest (hex) the cache holds a blob, partial or lock file of."""
    found: set[str] = set()
    for directory in (store.blob_dir, store.lock_dir):
        if directory.is_dir():
            for path in directory.iterdir():
                hex_digest = path.name.split(".", 1)[0]
                if _HEX.fullmatch(hex_digest):
                    found.add(hex_digest)
    return sorted(found)


def prune(
    root: Path, *, partials_only: bool = False, unused_days: float | None = None
) -> PruneResult:
    """Remove blobs and partial downloads from the cache at ``root``.

    Everything by default; only partial downloads with ``partials_only``; with
    ``unused_days``, the blobs and partials not used (written, or found by a pull)
    for that many days. Blobs being fetched, and blobs running pulls use, stay.
    """
    store = BlobStore(root)
    cutoff = None if unused_days is None else time.time() - unused_days * SECONDS_PER_DAY
    result = PruneResult()
    for hex_digest in _digests(store):
        result = _prune_one(store, hex_digest, partials_only, cutoff, result)
    return result


def _prune_one(
    store: BlobStore, hex_digest: str, partials_only: bool, cutoff: float | None, done: PruneResult
) -> PruneResult:
    lock_path = store.lock_dir / f"{hex_digest}.lock"
    blob = store.blob_dir / hex_digest
    partial_files = [store.blob_dir / f"{hex_digest}{suffix}" for suffix in _PARTIAL_SUFFIXES]
    lock = ProcessLock(lock_path)
    try:
        if not lock.try_acquire() or not lock.names_locked_file(lock_path):
            return done  # another process is fetching it
        try:
            in_use = hex_digest in blobs_in_use(store.root)
        except InUseUnknown:
            in_use = True
        blobs, partials, freed, kept = done.blobs, done.partials, done.bytes_freed, done.kept_in_use
        if blob.exists() and not partials_only:
            if in_use:
                kept += 1
            elif _unused(blob, cutoff):
                freed += _remove(blob)
                blobs += 1
        partial_here = any(path.exists() for path in partial_files)
        if partial_here and not in_use and _unused(partial_files[0], cutoff):
            partials += 1
            freed += sum(_remove(path) for path in partial_files)
        if not blob.exists() and not any(path.exists() for path in partial_files):
            with contextlib.suppress(OSError):
                lock_path.unlink()  # held: a waiting process notices and locks a new file
        return PruneResult(blobs, partials, freed, kept)
    finally:
        lock.close()


def _unused(path: Path, cutoff: float | None) -> bool:
    """Whether ``path`` was last used before ``cutoff`` (always without one): written or
    marked used (its access time: see :meth:`BlobStore.note_use`), whichever is later."""
    if cutoff is None:
        return True
    try:
        found = path.stat()
        return max(found.st_atime, found.st_mtime) < cutoff
    except FileNotFoundError:
        return True


def _remove(path: Path) -> int:
    """Remove ``path``; the bytes freed."""
    size = _size(path)
    try:
        os.unlink(path)
    except FileNotFoundError:
        return 0
    return size
