"""A corrupt cached blob found while writing the archive: moved out, fetched again.

Blobs are verified as they arrive in the cache and are not hashed again before each
pull (that would read every cached layer twice). The writers notice a blob that
rotted in the cache: the docker writer checks each layer's diff_id (and the
decompressor its CRC) as it writes the layer, the oci writers hash every blob an
earlier run cached as they copy it. When the writer fails with an integrity error,
:func:`write_repairing` hashes the cached blobs the writer read that this pull did
not download: each one whose bytes miss its digest is removed from the cache (a
warning names the file), fetched again, and the archive is written again from the
start. An integrity error with no corrupt cached blob behind it (the registry's
bytes were wrong) is raised as it was.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import Mapping
from pathlib import Path

import anyio

from .blob_gate import BlobGate, Writer, run_writer_in_thread
from .digest import Digest
from .download import BlobFetcher
from .errors import IntegrityError, leaf_error
from .manifest import Descriptor
from .reference import Reference

log = logging.getLogger("dockerdrag")

_READ_BYTES = 1 << 20

BlobSources = Mapping[Digest, tuple[Reference, Descriptor]]
"""Where each layer blob of a pull comes from: the repository and its descriptor."""


def blob_is_intact(path: Path, digest: Digest, size: int) -> bool:
    """Whether the file at ``path`` holds exactly ``size`` bytes hashing to ``digest``."""
    hasher = hashlib.sha256()
    length = 0
    with open(path, "rb") as handle:
        while block := handle.read(_READ_BYTES):
            hasher.update(block)
            length += len(block)
    return length == size and hasher.hexdigest() == digest.hex


async def write_repairing(
    write: Writer, gate: BlobGate, fetcher: BlobFetcher, sources: BlobSources
) -> None:
    """Run the writer (see :func:`run_writer_in_thread`), repairing corrupt cached blobs.

    Each blob is repaired at most once per pull, so the writer runs at most once
    more than there are corrupt blobs.
    """
    repaired: set[Digest] = set()
    while True:
        try:
            await run_writer_in_thread(write, gate)
            return
        except (IntegrityError, BaseExceptionGroup) as raised:
            error = leaf_error(raised)
            if not isinstance(error, IntegrityError):
                raise
            suspects = [
                digest
                for digest in gate.read_by_writer()
                if digest not in repaired and not gate.hashed_in_this_pull(digest)
            ]
            corrupt = [
                digest
                for digest in suspects
                if await _drop_if_corrupt(
                    fetcher, digest, gate.paths[digest], sources[digest][1].size
                )
            ]
            if not corrupt:
                raise error from None
            for digest in corrupt:
                repaired.add(digest)
                source, descriptor = sources[digest]
                path, _ = await fetcher.fetch_noting_download(source, descriptor)
                gate.mark_ready(digest, path, downloaded=True)
            gate.reopen()


async def _drop_if_corrupt(fetcher: BlobFetcher, digest: Digest, path: Path, size: int) -> bool:
    """Hash the cached blob at ``path``; drop it from its store and warn if it is corrupt.

    True: the blob must be fetched again (it was corrupt, or is gone). A blob of a
    read-only cache is only forgotten (fetched into the temporary store); one of a
    writable store is removed under its lock.
    """
    cache = fetcher.store
    in_read_only_cache = cache.read_only and path == cache.blob_path(digest)
    lock = contextlib.nullcontext() if in_read_only_cache else cache.for_writing().lock(digest)
    async with fetcher.open_blobs, lock:
        if not path.exists():
            return True
        if await anyio.to_thread.run_sync(
            blob_is_intact, path, digest, size, limiter=fetcher.disk_limiter
        ):
            return False
        if in_read_only_cache:
            log.warning(
                "cached blob %s is corrupt: fetching it again (the cache is read-only)", path
            )
            cache.forget(digest)
        else:
            log.warning("cached blob %s is corrupt: removed it, fetching it again", path)
            path.unlink(missing_ok=True)
    return True
