"""A reference resolved to what a pull writes, before any layer is fetched.

:class:`ImageResolver` follows a reference (tag -> digest -> the platform manifests
chosen from an index, or exactly the digests a lock file pinned) and fetches each
manifest's config through the blob cache, checking that docker can load the image. The
images of a bundle are resolved several at once (:meth:`ImageResolver.resolve_all`).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Literal, NamedTuple

from .assemble import PlatformImage, ResolvedPull
from .digest import Digest
from .download import BlobFetcher
from .errors import DockerDragError, InvalidManifestError
from .image_config import ImageConfig, decode_config, image_config, parse_config
from .lockfile import LockedImage
from .manifest import ImageManifest
from .ordered_calls import in_order
from .platform import Platform, check_image_platform
from .reference import Reference
from .registry import RegistryClient


class ResolveRequest(NamedTuple):
    """One image of a pull, as :meth:`ImageResolver.resolve` takes it."""

    reference: Reference
    wanted: list[Platform] | Literal["all"] | None
    repo_tags: tuple[str, ...]
    pin: LockedImage | None = None


class ImageResolver(NamedTuple):
    """Resolves references with ``client`` and reads configs through ``fetcher``.

    ``include_attestations``: keep an index's attestation manifests (SBOM, provenance).
    """

    client: RegistryClient
    fetcher: BlobFetcher
    include_attestations: bool

    async def resolve(
        self,
        ref: Reference,
        wanted: list[Platform] | Literal["all"] | None,
        repo_tags: tuple[str, ...],
        pin: LockedImage | None = None,
        *,
        concurrency: int | None = None,
    ) -> ResolvedPull:
        """Resolve ``ref`` (exactly the digests of ``pin``, when pinned by a lock file):
        an index's platform manifests, then their configs, are fetched side by side
        (``concurrency`` at once; by default as many as the fetcher may open blob
        requests); from a far registry, the
        connections its layers will take open while the configs come
        (:meth:`~dockerdrag.download.BlobFetcher.expect_layers`)."""
        if concurrency is None:
            concurrency = self.fetcher.concurrency
        if pin is None:
            resolution = await self.client.resolve(
                ref, wanted, self.include_attestations, concurrency=concurrency
            )
        else:
            from .list_pull import resolve_locked  # here: only a locked list pull pins images

            resolution = await resolve_locked(self.client, ref, pin, concurrency=concurrency)
        await self.fetcher.expect_layers(
            resolution.source,
            [layer for manifest in resolution.manifests for layer in manifest.layers],
        )
        index = resolution.index
        platform_images = {entry.digest for entry in index.platforms()} if index else None
        images = tuple(
            await in_order(
                [
                    functools.partial(
                        self.with_config,
                        ref,
                        resolution.source,
                        manifest,
                        stored_only=platform_images is not None
                        and manifest.digest not in platform_images,
                    )
                    for manifest in resolution.manifests
                ],
                concurrency,
            )
        )
        if resolution.index is None and isinstance(wanted, list):
            check_image_platform(str(ref), wanted, images[0].config.platform)
        return ResolvedPull(ref, resolution.source, resolution.index, images, repo_tags)

    async def resolve_all(self, requests: Sequence[ResolveRequest]) -> list[ResolvedPull]:
        """Resolve every request (:meth:`resolve`); the results in the order of
        ``requests``, or the error of the first that failed
        (:func:`~dockerdrag.ordered_calls.in_order`). The fetcher's concurrency is shared
        out: as many requests at once as it allows, each fetching its platform manifests
        and configs with an equal share, so no more requests are in flight than it
        allows however many images and platforms the pull has."""
        at_once = min(self.fetcher.concurrency, max(1, len(requests)))
        share = max(1, self.fetcher.concurrency // at_once)
        return await in_order(
            [functools.partial(self.resolve, *request, concurrency=share) for request in requests],
            at_once,
        )

    async def with_config(
        self,
        ref: Reference,
        source: Reference,
        manifest: ImageManifest,
        *,
        stored_only: bool = False,
    ) -> PlatformImage:
        """The manifest with its config; ``stored_only`` for an index entry that is not a
        platform image (an attestation, an artifact): stored, never loaded by docker."""
        config_raw = await self.fetcher.fetch_bytes(source, manifest.config)
        if stored_only or _is_attestation_manifest(manifest):
            return PlatformImage(manifest, config_raw, _attestation_config(config_raw), None)
        if not manifest.layers:
            raise InvalidManifestError(f"{ref} has no layers; docker cannot load such an image")
        decoded = decode_config(config_raw)
        config = image_config(decoded)
        if len(config.diff_ids) != len(manifest.layers):
            raise InvalidManifestError(
                f"{ref}: the manifest lists {len(manifest.layers)} layers but the config has "
                f"{len(config.diff_ids)} diff_ids"
            )
        return PlatformImage(manifest, config_raw, config, decoded)


def _is_attestation_manifest(manifest: ImageManifest) -> bool:
    return any(layer.media_type.startswith("application/vnd.in-toto") for layer in manifest.layers)


def _attestation_config(raw: bytes) -> ImageConfig:
    """A config record for an attestation manifest (stored, never loaded by docker)."""
    try:
        return parse_config(raw)
    except DockerDragError:
        return ImageConfig(raw=raw, digest=Digest.of(raw), diff_ids=(), platform=_UNKNOWN)


_UNKNOWN = Platform("unknown", "unknown")


__all__ = ["ImageResolver", "ResolveRequest"]
