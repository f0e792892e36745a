"""An image described without pulling it: its platforms, or its manifest and config.

Only manifests and the chosen image's config are fetched (the config through the
blob cache); no layer is downloaded. :meth:`~dockerdrag.pull.Puller.inspect` and
:meth:`~dockerdrag.pull.Puller.platforms` run these.
"""

from __future__ import annotations

from .errors import InvalidManifestError
from .manifest import Descriptor, ImageIndex, ImageManifest
from .platform import Platform
from .pull_resolve import ImageResolver
from .pull_results import ImageInspection
from .reference import Reference
from .registry import RegistryClient, choose_entries


async def image_platforms(client: RegistryClient, ref: Reference) -> list[Descriptor]:
    """The platform entries of ``ref``'s index, without attestations (empty for an image)."""
    _, document = await client.fetch_index_or_manifest(ref)
    return document.platforms() if isinstance(document, ImageIndex) else []


async def inspect_image(
    resolver: ImageResolver, ref: Reference, wanted: Platform | None
) -> ImageInspection:
    """Describe ``ref``: the document it names, and the ``wanted`` platform's image.

    Without ``wanted``, an index is described alone unless it offers exactly one
    platform.
    """
    client = resolver.client
    source, document = await client.fetch_index_or_manifest(ref)
    offered: tuple[Descriptor, ...] = ()
    if isinstance(document, ImageManifest):
        manifest = document
    else:
        offered = tuple(document.platforms())
        if wanted is None and len(offered) != 1:
            return ImageInspection(
                str(ref), document.digest, document.media_type, document.raw, offered
            )
        (entry, *_) = choose_entries(ref, document, [wanted] if wanted else None)
        chosen = await client.fetch_manifest(source, str(entry.digest))
        if not isinstance(chosen, ImageManifest):
            raise InvalidManifestError(f"index entry {entry.digest} of {ref} is not an image")
        manifest = chosen
    image = await resolver.with_config(ref, source, manifest)
    return ImageInspection(
        str(ref),
        document.digest,
        document.media_type,
        document.raw,
        offered,
        image.manifest,
        image.config,
    )


__all__ = ["image_platforms", "inspect_image"]
