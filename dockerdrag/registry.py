"""The registry API: resolve a reference, fetch manifests, configs and blobs.

A tag is resolved once; everything after that is fetched by digest and
verified against it.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, replace
from typing import Literal
from urllib.parse import urlsplit

from .auth import repository_scope
from .digest import Digest
from .errors import (
    BlobUnknownError,
    DigestMismatchError,
    DockerDragError,
    InvalidManifestError,
    ManifestUnknownError,
    PlatformNotFoundError,
    PlatformRequiredError,
    Remedy,
    Setting,
    UsageError,
)
from .manifest import (
    MAX_MANIFEST_BYTES,
    Descriptor,
    ImageIndex,
    ImageManifest,
    parse_manifest,
    select_manifest,
)
from .media_types import ACCEPT_MANIFEST_TYPES
from .ordered_calls import in_order
from .platform import Platform
from .reference import Reference
from .transport import Response, Transport

ACCEPT_HEADER = ", ".join(ACCEPT_MANIFEST_TYPES)
log = logging.getLogger("dockerdrag")


def mirror_host(url: str) -> tuple[str, bool]:
    """``(host[:port], is_plain_http)`` of a registry mirror URL such as ``http://m:5000``."""
    parts = urlsplit(url if "://" in url else f"https://{url}")
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.path not in ("", "/"):
        raise UsageError(f"invalid registry mirror {url!r}: expected http(s)://HOST[:PORT]")
    return parts.netloc, parts.scheme == "http"


PlatformChoice = Sequence[Platform] | Literal["all"] | None


@dataclass(frozen=True)
class Resolution:
    """A reference resolved to the image manifests to pull (one per chosen platform)."""

    reference: Reference
    source: Reference  # where the image is fetched from: the reference, or it on a mirror
    index: ImageIndex | None
    manifests: tuple[ImageManifest, ...]  # the first is the primary one


def choose_entries(
    reference: Reference,
    index: ImageIndex,
    wanted: PlatformChoice,
    include_attestations: bool = False,
) -> list[Descriptor]:
    """The index entries to pull for ``wanted`` platforms (``None``: the only one there is).

    ``"all"`` is every entry the index lists: its platform images first, then the
    rest (attestations, entries without a platform), so that a layout keeping the
    index holds everything it references. Without a platform, an index offering
    several raises PlatformRequiredError listing them; attestation entries are never
    platforms.
    """
    offered = index.platforms()
    if wanted == "all":
        if not offered:
            raise PlatformNotFoundError(f"{reference} lists no platforms", available=[])
        chosen = list(offered)
        chosen += [entry for entry in index.manifests if entry not in chosen]
    elif wanted is None:
        if len(offered) != 1:
            remedy = Remedy(Setting.PLATFORM)
            raise PlatformRequiredError(
                f"{reference} is a multi-platform image; choose one with {remedy}",
                available=offered,
            ).suggesting(remedy)
        chosen = list(offered)
    else:
        chosen = []
        for platform in wanted:
            entry = select_manifest(index, platform)
            if entry not in chosen:
                chosen.append(entry)
    if include_attestations and wanted != "all":
        chosen += [d for d in index.manifests if d.is_attestation]
    return chosen


class RegistryClient:
    """Registry operations over a :class:`Transport`."""

    def __init__(self, transport: Transport, mirrors: Sequence[str] = ()) -> None:
        self.transport = transport
        self.mirror_hosts = [mirror_host(url)[0] for url in mirrors]

    def sources(self, reference: Reference) -> list[Reference]:
        """Where to look for ``reference``: Docker Hub mirrors in order, then the origin."""
        if not reference.is_docker_hub:
            return [reference]
        return [replace(reference, domain=host) for host in self.mirror_hosts] + [reference]

    async def fetch_index_or_manifest(
        self, reference: Reference
    ) -> tuple[Reference, ImageManifest | ImageIndex]:
        """Fetch the document ``reference`` names, trying mirrors first; return its source."""
        candidates = self.sources(reference)
        for source in candidates[:-1]:
            try:
                return source, await self.fetch_manifest(source)
            except DockerDragError as exc:
                log.info("mirror %s failed (%s); trying the next source", source.domain, exc)
        return candidates[-1], await self.fetch_manifest(candidates[-1])

    async def fetch_manifest(
        self, reference: Reference, target: str | None = None
    ) -> ImageManifest | ImageIndex:
        """Fetch and verify the manifest or index that ``target`` (tag or digest) names."""
        target = target or reference.fetch_ref
        expected = Digest.parse(target) if target.startswith("sha256:") else None
        what = f"manifest {reference.name}@{target}" if expected else f"manifest {reference}"
        async with self.transport.request(
            reference.registry_host,
            f"/v2/{reference.path}/manifests/{target}",
            what=what,
            scope=repository_scope(reference.path),
            headers={"Accept": ACCEPT_HEADER},
            not_found=ManifestUnknownError,
        ) as response:
            raw = await response.read_all(MAX_MANIFEST_BYTES)
            content_type = response.headers.get("Content-Type")
            header_digest = response.headers.get("Docker-Content-Digest")
        actual = Digest.of(raw)
        if expected is not None and actual != expected:
            raise DigestMismatchError(
                f"registry {reference.registry_host} served a manifest with digest {actual} "
                f"when asked for {expected}"
            )
        if header_digest and header_digest.startswith("sha256:"):
            claimed = Digest.from_registry(header_digest, "the registry's Docker-Content-Digest")
            if claimed != actual:
                raise DigestMismatchError(
                    f"registry {reference.registry_host} claims manifest digest {claimed} "
                    f"but the body hashes to {actual}"
                )
        return parse_manifest(raw, content_type)

    async def resolve(
        self,
        reference: Reference,
        wanted: PlatformChoice,
        include_attestations: bool = False,
        *,
        concurrency: int = 1,
    ) -> Resolution:
        """Resolve ``reference`` once, then fetch the chosen platform manifests by digest,
        ``concurrency`` at once (:func:`~dockerdrag.ordered_calls.in_order`)."""
        source, document = await self.fetch_index_or_manifest(reference)
        if isinstance(document, ImageManifest):
            return Resolution(reference, source, None, (document,))
        entries = choose_entries(reference, document, wanted, include_attestations)
        manifests = await in_order(
            [functools.partial(self._index_entry, reference, source, e) for e in entries],
            concurrency,
        )
        return Resolution(reference, source, document, tuple(manifests))

    async def _index_entry(
        self, reference: Reference, source: Reference, entry: Descriptor
    ) -> ImageManifest:
        """The image manifest that ``entry`` of ``reference``'s index names, fetched by
        digest from ``source``."""
        fetched = await self.fetch_manifest(source, str(entry.digest))
        if not isinstance(fetched, ImageManifest):
            raise InvalidManifestError(
                f"index entry {entry.digest} of {reference} is not an image manifest"
            )
        return fetched

    @contextlib.asynccontextmanager
    async def open_blob(
        self,
        reference: Reference,
        digest: Digest,
        offset: int = 0,
        end: int | None = None,
        *,
        ranged: bool = False,
        if_range: str | None = None,
        foreign_url: str | None = None,
    ) -> AsyncIterator[Response]:
        """Open a blob body, from ``offset`` with a Range request when non-zero (or
        ``ranged``: ``Range: bytes=0-`` asks for the whole blob as a range).

        ``end`` (exclusive) bounds the range (``Range: bytes=offset-(end-1)``);
        ``if_range`` is sent as ``If-Range`` with a ranged request. Yields the
        response: 200 (whole body), 206 (range) or 416 (range not satisfiable;
        the body must not be read). ``foreign_url`` fetches a foreign layer from
        the URL its descriptor names, without credentials.
        """
        headers = {"Accept-Encoding": "identity"}
        if ranged or offset or end is not None:
            last = "" if end is None else str(end - 1)
            headers["Range"] = f"bytes={offset}-{last}"
            if if_range:
                headers["If-Range"] = if_range
        async with self.transport.request(
            reference.registry_host,
            f"/v2/{reference.path}/blobs/{digest}",
            what=f"blob {digest.short} of {reference.name}",
            scope=repository_scope(reference.path),
            headers=headers,
            not_found=BlobUnknownError,
            allow_statuses=frozenset({416}),
            foreign_url=foreign_url,
        ) as response:
            yield response
