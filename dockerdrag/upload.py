"""The registry's write side: blob checks, cross-repository mounts, chunked uploads, manifests.

A blob goes to a repository in the first way that works:

1. ``HEAD /v2/<name>/blobs/<digest>``: the registry has it already, nothing is sent;
2. ``POST /v2/<name>/blobs/uploads/?mount=<digest>&from=<repo>`` when another repository of
   the same registry is known to hold it: ``201`` means mounted (nothing sent); a registry
   that does not mount answers ``202`` with an upload session, used for step 3;
3. an upload session (``POST``), the bytes in ``PATCH`` requests of at most ``chunk_size``
   bytes (``Content-Range: start-end``), and ``PUT <session>?digest=<digest>`` to commit.

A ``PATCH`` is sent once, never resent blindly: when it fails, the session's status
(``GET <session>``, whose ``Range`` says how many bytes the registry holds) tells where to
continue, so an interrupted upload resumes at the registry's offset. A registry that
dropped the session (distribution cancels one whose stored size differs from what its
last answer said, as after a body cut mid-way) answers ``404``: the blob then starts over
in a new session. Bodies stream from disk in ``READ_BLOCK`` steps; nothing holds a blob.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import BinaryIO, TypedDict, Unpack
from urllib.parse import quote, urlsplit

import anyio

from .auth import repository_scope
from .digest import Digest
from .errors import (
    BlobUnknownError,
    DigestMismatchError,
    NetworkError,
    NotFoundError,
    RegistryError,
)
from .reference import Reference
from .retry import RETRY_STATUSES
from .transfer_options import UPLOAD_CHUNK_SIZE
from .transport import RequestBody, Response, Transport

log = logging.getLogger("dockerdrag")

READ_BLOCK = 1 << 18
_OCTET_STREAM = "application/octet-stream"

UploadProgress = Callable[[Digest, int], None]
"""Called with a blob's digest and how far its upload got (bytes sent or, after a resume,
held by the registry), as the bytes go out."""


@dataclass(frozen=True)
class BlobSource:
    """A blob's bytes on disk: ``size`` bytes at ``offset`` of ``path`` (a tar member's data,
    or a whole file)."""

    digest: Digest
    size: int
    path: Path
    offset: int = 0


class BlobOutcome(StrEnum):
    """How a blob got into the repository."""

    EXISTS = "exists"
    MOUNTED = "mounted"
    UPLOADED = "uploaded"


@dataclass(frozen=True)
class _Session:
    """An upload session: its URL (path and query on the registry) and the bytes it holds."""

    url: str
    offset: int


def push_scope(repository: str, mount_from: str | None = None) -> str:
    """The token scope for pushing to ``repository`` (and reading a mount's source)."""
    scope = repository_scope(repository, "pull,push")
    if mount_from is not None and mount_from != repository:
        scope += " " + repository_scope(mount_from, "pull")
    return scope


def _blob_url(repository: str, digest: Digest) -> str:
    return f"/v2/{repository}/blobs/{digest}"


def _upload_what(repo: Reference, digest: Digest) -> str:
    """How requests and errors name the upload of blob ``digest`` to ``repo``."""
    return f"upload of blob {digest.short} to {repo.name}"


class _SessionRequest(TypedDict, total=False):
    """What the requests of one upload session set beyond URL, scope and description."""

    method: str
    headers: Mapping[str, str]
    allow_statuses: frozenset[int]
    body: RequestBody
    attempts: int


def _session_url(repo: Reference, digest: Digest, location: str | None) -> str:
    """The path and query of the ``Location`` of ``digest``'s upload session; it must stay
    on ``repo``'s registry."""
    host, what = repo.registry_host, _upload_what(repo, digest)
    if not location:
        raise RegistryError(f"{host} started no upload session for {what} (no Location)")
    parts = urlsplit(location)
    if parts.netloc and parts.netloc != host:
        raise RegistryError(
            f"{host} sent the {what} to another host ({parts.netloc}); "
            "uploads through another host are not supported"
        )
    if not parts.path.startswith("/v2/"):
        raise RegistryError(f"{host} sent an unusable upload URL for {what}")
    return parts.path + (f"?{parts.query}" if parts.query else "")


def _range_end(value: str | None) -> int | None:
    """The bytes a session holds, from its ``Range: 0-<last>`` header (None if absent)."""
    if not value:
        return None
    start, dash, last = value.strip().removeprefix("bytes=").partition("-")
    if not dash or start != "0" or not last.isdigit():
        raise RegistryError(f"registry sent an unusable upload Range {value[:60]!r}")
    return int(last) + 1


def _resumable(error: RegistryError | NotFoundError) -> bool:
    """Whether a failed ``PATCH`` may have left a session to continue (or to start over)."""
    if isinstance(error, NetworkError | NotFoundError):
        return True
    return error.status in RETRY_STATUSES or error.status == 416


async def _file_chunks(
    source: BlobSource, start: int, end: int, report: Callable[[int], None]
) -> AsyncIterator[bytes]:
    """Bytes ``start`` to ``end`` of the blob, read in a worker thread block by block."""
    handle: BinaryIO = await anyio.to_thread.run_sync(source.path.open, "rb")
    try:
        await anyio.to_thread.run_sync(handle.seek, source.offset + start)
        position = start
        while position < end:
            block = await anyio.to_thread.run_sync(handle.read, min(READ_BLOCK, end - position))
            if not block:
                raise RegistryError(f"{source.path} ended before blob {source.digest.short}")
            position += len(block)
            yield block
            report(position)
    finally:
        await anyio.to_thread.run_sync(handle.close)


class BlobUploader:
    """Blob and manifest writes to registries over a :class:`Transport`."""

    def __init__(
        self,
        transport: Transport,
        *,
        chunk_size: int = UPLOAD_CHUNK_SIZE,
        progress: UploadProgress | None = None,
    ) -> None:
        if chunk_size < 1:
            raise ValueError("chunk_size must be positive")
        self.transport = transport
        self.chunk_size = chunk_size
        self.progress = progress

    async def exists(self, repo: Reference, digest: Digest) -> bool:
        """Whether ``repo`` holds blob ``digest`` (``HEAD``)."""
        async with self.transport.request(
            repo.registry_host,
            _blob_url(repo.path, digest),
            what=f"blob {digest.short} of {repo.name}",
            scope=push_scope(repo.path),
            method="HEAD",
            not_found=BlobUnknownError,
            allow_statuses=frozenset({404}),
        ) as response:
            return response.status != 404

    async def push_blob(
        self, repo: Reference, source: BlobSource, mount_from: str | None = None
    ) -> BlobOutcome:
        """Put ``source`` into ``repo``: skipped if there, mounted if possible, else uploaded."""
        if await self.exists(repo, source.digest):
            return BlobOutcome.EXISTS
        session = await self.start_session(repo, source.digest, mount_from)
        if session is None:
            return BlobOutcome.MOUNTED
        await _BlobUpload(self, repo, source, session).send()
        return BlobOutcome.UPLOADED

    async def start_session(
        self, repo: Reference, digest: Digest, mount_from: str | None
    ) -> _Session | None:
        """A new upload session, or None when the registry mounted ``digest`` from
        ``mount_from`` instead."""
        path = f"/v2/{repo.path}/blobs/uploads/"
        if mount_from is not None:
            path += f"?mount={quote(str(digest))}&from={quote(mount_from, safe='/')}"
        what = _upload_what(repo, digest)
        async with self.transport.request(
            repo.registry_host,
            path,
            what=what,
            scope=push_scope(repo.path, mount_from),
            method="POST",
            headers={"Content-Length": "0"},
        ) as response:
            if response.status == 201 and mount_from is not None:
                log.info("mounted %s into %s from %s", digest.short, repo.name, mount_from)
                return None
            if response.status != 202:
                raise RegistryError(
                    f"{repo.registry_host} answered HTTP {response.status} to {what}",
                    response.status,
                )
            location = response.headers.get("Location")
        return _Session(_session_url(repo, digest, location), 0)

    async def put_manifest(
        self, repo: Reference, target: str, raw: bytes, media_type: str
    ) -> Digest:
        """``PUT`` manifest or index bytes under ``target`` (a tag or their digest) as they
        are; the registry must store them under their own digest."""
        digest = Digest.of(raw)
        async with self.transport.request(
            repo.registry_host,
            f"/v2/{repo.path}/manifests/{target}",
            what=f"manifest {repo.name}:{target}" if ":" not in target else f"manifest {digest}",
            scope=push_scope(repo.path),
            method="PUT",
            headers={"Content-Type": media_type},
            body=lambda: raw,
        ) as response:
            claimed = response.headers.get("Docker-Content-Digest")
        if claimed and claimed != str(digest):
            raise DigestMismatchError(
                f"{repo.registry_host} stored the manifest {digest} as {claimed[:80]}"
            )
        return digest


class _BlobUpload:
    """One blob's upload to one repository in an upload session: its chunks ``PATCH``ed
    once each, continued at the registry's offset after a failure (in a new session when
    the registry dropped this one), then committed."""

    def __init__(
        self, uploader: BlobUploader, repo: Reference, source: BlobSource, session: _Session
    ) -> None:
        self.uploader = uploader
        self.repo = repo
        self.source = source
        self.session = session

    async def send(self) -> None:
        """Send the blob in chunks, resuming at the registry's offset after a failure."""
        retry = self.uploader.transport.config.retry
        failures = reconnects = 0
        while self.session.offset < self.source.size:
            end = min(self.session.offset + self.uploader.chunk_size, self.source.size)
            try:
                self.session = await self._patch(end)
                failures = 0
                continue
            except (RegistryError, NotFoundError) as exc:
                if not _resumable(exc):
                    raise
                reconnects += 1
                if reconnects > retry.max_reconnects:
                    raise
                error = exc
            before = self.session.offset
            self.session = await self._resume()
            log.info(
                "upload of %s to %s broke (%s); continuing at byte %d",
                self.source.digest.short,
                self.repo.name,
                error,
                self.session.offset,
            )
            if self.session.offset <= before:
                failures += 1
                if failures >= retry.attempts:
                    raise error
                await anyio.sleep(retry.delay(failures - 1, None))
        await self._commit()

    def _report(self, done: int) -> None:
        if self.uploader.progress is not None:
            self.uploader.progress(self.source.digest, done)

    async def _patch(self, end: int) -> _Session:
        """Send bytes ``session.offset`` to ``end`` once; the session as the registry
        answered."""
        start = self.session.offset

        def body() -> AsyncIterator[bytes]:
            self._report(start)
            return _file_chunks(self.source, start, end, self._report)

        async with self._request(
            self.session.url,
            method="PATCH",
            headers={
                "Content-Type": _OCTET_STREAM,
                "Content-Length": str(end - start),
                "Content-Range": f"{start}-{end - 1}",
            },
            body=body,
            attempts=1,
        ) as response:
            location = response.headers.get("Location")
            held = _range_end(response.headers.get("Range"))
        return _Session(_session_url(self.repo, self.source.digest, location), held or end)

    async def _resume(self) -> _Session:
        """Where the session stands (``GET``), or a new session if the registry dropped it."""
        repo, digest = self.repo, self.source.digest
        async with self._request(self.session.url, allow_statuses=frozenset({404})) as response:
            if response.status != 404:
                location = response.headers.get("Location") or self.session.url
                held = _range_end(response.headers.get("Range")) or 0
                return _Session(_session_url(repo, digest, location), held)
        log.info("%s dropped the upload of %s; starting it again", repo.registry_host, digest)
        fresh = await self.uploader.start_session(repo, digest, None)
        assert fresh is not None  # no mount was asked for
        return fresh

    def _request(
        self, url: str, **options: Unpack[_SessionRequest]
    ) -> AbstractAsyncContextManager[Response]:
        """A request of the upload session, at ``url`` on the repository's registry."""
        return self.uploader.transport.request(
            self.repo.registry_host,
            url,
            what=_upload_what(self.repo, self.source.digest),
            scope=push_scope(self.repo.path),
            **options,
        )

    async def _commit(self) -> None:
        """``PUT <session>?digest=``: the registry checks the digest and stores the blob."""
        repo, digest = self.repo, self.source.digest
        separator = "&" if "?" in self.session.url else "?"
        try:
            async with self._request(
                f"{self.session.url}{separator}digest={quote(str(digest))}",
                method="PUT",
                headers={"Content-Length": "0"},
            ) as response:
                claimed = response.headers.get("Docker-Content-Digest")
        except (NotFoundError, RegistryError):
            # A commit whose answer was lost leaves no session behind: check the blob.
            if await self.uploader.exists(repo, digest):
                return
            raise
        if claimed and claimed != str(digest):
            raise DigestMismatchError(
                f"{repo.registry_host} stored blob {digest} as {claimed[:80]}"
            )
