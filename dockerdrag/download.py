"""Resumable, verified blob downloads into the blob store, with bounded fan-out.

A blob is streamed into ``<hex>.partial`` while it is hashed; a dropped
connection resumes at the bytes already on disk (``Range: bytes=N-``), and the
partial is renamed to its digest only once size and sha256 match.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import aiofiles
import anyio

from .digest import Digest, VerifyingHasher
from .errors import (
    DigestMismatchError,
    DockerDragError,
    NetworkError,
    OutputError,
    RegistryError,
    SizeMismatchError,
)
from .events import LayerPhase, LayerProgress, ProgressCallback
from .manifest import Descriptor
from .reference import Reference
from .registry import RegistryClient
from .store import BlobStore, describe_os_error, hash_file

log = logging.getLogger("dockerdrag")

READ_CHUNK = 1 << 20
MAX_RECONNECTS_WITHOUT_PROGRESS = 5
MAX_RECONNECTS = 20
_CONTENT_RANGE_RE = re.compile(r"bytes (\d+)-(\d+)/(\d+)")


@dataclass
class _Attempt:
    """State carried between reconnects of one blob download."""

    hasher: VerifyingHasher
    offset: int


class BlobFetcher:
    """Fetch blobs of one repository into a :class:`BlobStore`."""

    def __init__(
        self,
        client: RegistryClient,
        store: BlobStore,
        progress: ProgressCallback | None = None,
    ) -> None:
        self.client = client
        self.store = store
        self.progress = progress

    def _emit(self, descriptor: Descriptor, phase: LayerPhase, done: int) -> None:
        if self.progress is not None:
            self.progress(LayerProgress(descriptor.digest, phase, done, descriptor.size))

    async def fetch(self, reference: Reference, descriptor: Descriptor) -> Path:
        """Make sure the verified blob is in the store; return its path."""
        digest = descriptor.digest
        async with self.store.lock(digest):
            if self.store.has(digest, descriptor.size):
                self._emit(descriptor, LayerPhase.EXISTS, descriptor.size)
                return self.store.blob_path(digest)
            try:
                return await self._fetch_locked(reference, descriptor)
            except OSError as exc:
                raise OutputError(
                    describe_os_error(exc, f"writing blob {digest.short} to the cache")
                ) from exc

    async def _fetch_locked(self, reference: Reference, descriptor: Descriptor) -> Path:
        attempt = await anyio.to_thread.run_sync(self._resume_state, descriptor)
        refetched = False
        reconnects = 0
        stalled = 0
        while True:
            if attempt.offset < descriptor.size:
                before = attempt.offset
                try:
                    await self._stream(reference, descriptor, attempt)
                except NetworkError as exc:
                    reconnects += 1
                    stalled = 0 if attempt.offset > before else stalled + 1
                    if stalled >= MAX_RECONNECTS_WITHOUT_PROGRESS or reconnects > MAX_RECONNECTS:
                        raise
                    log.debug(
                        "blob %s: %s; resuming at %d", descriptor.digest.short, exc, attempt.offset
                    )
                    continue
            self._emit(descriptor, LayerPhase.VERIFYING, attempt.offset)
            try:
                attempt.hasher.verify()
            except (DigestMismatchError, SizeMismatchError):
                if refetched:
                    raise
                refetched = True
                log.debug("blob %s failed verification; fetching it again", descriptor.digest.short)
                attempt = self._restart(descriptor)
                continue
            path = await anyio.to_thread.run_sync(self.store.commit, descriptor.digest)
            self._emit(descriptor, LayerPhase.COMPLETE, descriptor.size)
            return path

    def _resume_state(self, descriptor: Descriptor) -> _Attempt:
        """Rebuild the hash state from the bytes already on disk."""
        partial = self.store.partial_path(descriptor.digest)
        hasher = VerifyingHasher(descriptor.digest, descriptor.size)
        try:
            on_disk = partial.stat().st_size
        except FileNotFoundError:
            partial.touch()
            return _Attempt(hasher, 0)
        if on_disk > descriptor.size:
            return self._restart(descriptor)
        state, size = hash_file(partial)
        hasher.copy_state_from(state, size)
        if size:
            log.debug("blob %s: resuming from %d bytes on disk", descriptor.digest.short, size)
        return _Attempt(hasher, size)

    def _restart(self, descriptor: Descriptor) -> _Attempt:
        """Throw the partial bytes away and start from zero."""
        with open(self.store.partial_path(descriptor.digest), "wb"):
            pass
        return _Attempt(VerifyingHasher(descriptor.digest, descriptor.size), 0)

    async def _stream(
        self, reference: Reference, descriptor: Descriptor, attempt: _Attempt
    ) -> None:
        """One request: append body bytes to the partial file, hashing them."""
        size = descriptor.size
        async with self.client.open_blob(reference, descriptor.digest, attempt.offset) as response:
            if response.status == 416:
                # The body of a 416 is never read (registries lie about its length).
                log.debug("blob %s: range not satisfiable; restarting", descriptor.digest.short)
                attempt.hasher, attempt.offset = self._restart(descriptor).hasher, 0
                raise NetworkError(f"registry refused the range for blob {descriptor.digest.short}")
            if response.status == 206:
                self._check_content_range(
                    response.headers.get("Content-Range"), attempt.offset, size
                )
            elif attempt.offset:
                log.debug("blob %s: registry ignored Range; restarting", descriptor.digest.short)
                restarted = self._restart(descriptor)
                attempt.hasher, attempt.offset = restarted.hasher, 0
            self._check_content_length(
                response.headers.get("Content-Length"), size - attempt.offset, descriptor
            )
            self._emit(descriptor, LayerPhase.DOWNLOADING, attempt.offset)
            partial = self.store.partial_path(descriptor.digest)
            async with aiofiles.open(partial, "ab") as handle:
                while True:
                    chunk = await response.read_chunk(READ_CHUNK)
                    if not chunk:
                        break
                    attempt.hasher.update(chunk)
                    await handle.write(chunk)
                    attempt.offset += len(chunk)
                    self._emit(descriptor, LayerPhase.DOWNLOADING, attempt.offset)
                await handle.flush()
        if attempt.offset < size:
            raise NetworkError(
                f"blob {descriptor.digest.short} ended early at {attempt.offset} of {size} bytes"
            )

    @staticmethod
    def _check_content_range(header: str | None, offset: int, size: int) -> None:
        match = _CONTENT_RANGE_RE.fullmatch((header or "").strip())
        if not match or (int(match[1]), int(match[2]), int(match[3])) != (offset, size - 1, size):
            raise RegistryError(
                f"registry answered a range request with Content-Range {header!r}; "
                f"expected bytes {offset}-{size - 1}/{size}"
            )

    @staticmethod
    def _check_content_length(header: str | None, expected: int, descriptor: Descriptor) -> None:
        if header is not None and header.strip().isdigit() and int(header) != expected:
            raise SizeMismatchError(
                f"blob {descriptor.digest} announced {header} bytes where {expected} were expected"
            )


async def fetch_all(
    fetcher: BlobFetcher,
    reference: Reference,
    descriptors: Sequence[Descriptor],
    concurrency: int,
) -> dict[Digest, Path]:
    """Fetch every distinct blob of ``descriptors``, at most ``concurrency`` at a time."""
    limiter = anyio.CapacityLimiter(max(1, concurrency))
    paths: dict[Digest, Path] = {}
    unique = list({d.digest: d for d in descriptors}.values())

    async def one(descriptor: Descriptor) -> None:
        async with limiter:
            paths[descriptor.digest] = await fetcher.fetch(reference, descriptor)

    try:
        async with anyio.create_task_group() as group:
            for descriptor in unique:
                if fetcher.progress is not None:
                    fetcher.progress(
                        LayerProgress(descriptor.digest, LayerPhase.WAITING, 0, descriptor.size)
                    )
                group.start_soon(one, descriptor)
    except BaseExceptionGroup as group_error:
        raise first_error(group_error) from None
    return paths


def first_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The most meaningful exception of a task group: a DockerDragError if there is one."""
    leaves: list[BaseException] = []

    def walk(exc: BaseException) -> None:
        if isinstance(exc, BaseExceptionGroup):
            for inner in exc.exceptions:
                walk(inner)
        else:
            leaves.append(exc)

    walk(group)
    for exc in leaves:
        if isinstance(exc, DockerDragError):
            return exc
    return leaves[0]


def partial_bytes(store: BlobStore, digest: Digest) -> int:
    """Bytes of ``digest`` already downloaded but not yet verified."""
    try:
        return os.stat(store.partial_path(digest)).st_size
    except FileNotFoundError:
        return 0
