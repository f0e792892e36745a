"""List pulls: an image list planned into pulls, pinned by a lock file, and locked again.

:meth:`~dockerdrag.pull.Puller.pull_list` checks the list (step 1) and
:func:`~dockerdrag.list_pull_run.run_list_pull` drives the rest:

1. :func:`plan_list` checks every line before any network I/O: its reference,
   its platform (the line's own, else the pull's default), and with a lock file
   that the list still says what the lock recorded (a lock file alone is its own
   list).
2. Each line is resolved: by its tag, or, when pinned by a lock file, by the
   locked digests only (:func:`resolve_locked`), so a locked pull needs no tag
   resolution. :func:`find_tag_move` looks up a pinned line's tag to report a
   tag that moved since; it never changes what is pulled.
3. After the bundle is written, :func:`locked_image` records what each line
   resolved to, for the lock file (:mod:`dockerdrag.lockfile`).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

from .assemble import ResolvedPull
from .errors import (
    DockerDragError,
    ImageListError,
    InvalidManifestError,
    LockfileError,
    Remedy,
    Setting,
)
from .events import TagMoved
from .image_list import ImageListEntry
from .lockfile import LockedImage, LockedLayer, LockedManifest, Lockfile
from .manifest import ImageIndex, ImageManifest
from .ordered_calls import in_order
from .platform import Platform, parse_platforms
from .pull_plan import check_format
from .reference import Reference
from .registry import RegistryClient, Resolution

log = logging.getLogger("dockerdrag")

__all__ = [
    "PlannedImage",
    "find_tag_move",
    "locked_image",
    "plan_list",
    "resolve_locked",
]


@dataclass(frozen=True)
class PlannedImage:
    """One line of the list, checked: what to pull and how to name it.

    ``platform`` is the line's platform choice in normal form (``linux/arm64/v8``,
    a comma-separated list, ``all``) or ``None``; ``pin`` is the lock file's entry
    for the line in a locked pull.
    """

    entry: ImageListEntry
    reference: Reference
    platform: str | None
    wanted: list[Platform] | Literal["all"] | None
    pin: LockedImage | None = None

    @property
    def where(self) -> str:
        """The line in messages: ``images.txt:3`` (or the reference)."""
        return self.entry.location or self.entry.reference


def plan_list(
    entries: Sequence[ImageListEntry] | None,
    default_platform: str | None,
    output_format: str,
    locked: Lockfile | None = None,
) -> list[PlannedImage]:
    """Check the list (or the lock file's list when ``entries`` is None) before any I/O.

    Lines without a platform get ``default_platform``. With ``locked``, the list
    must name the same images with the same platforms and tags in the same order
    (raises LockfileError at the first difference). An unknown ``output_format`` is an
    UnsupportedFormatError.
    """
    check_format(output_format)
    if entries is None:
        if locked is None:
            raise ImageListError("give an image list or a lock file")
        if default_platform is not None:
            raise LockfileError(
                "the lock file records each image's platform: a default platform goes "
                "with an image list only"
            )
        entries = [
            ImageListEntry(image.reference, image.platform, image.tag, f"lock file image {n}")
            for n, image in enumerate(locked.images, start=1)
        ]
    if not entries:
        raise ImageListError("the image list is empty")
    planned = [_plan(entry, default_platform, output_format) for entry in entries]
    return planned if locked is None else _pinned(planned, locked)


def _plan(entry: ImageListEntry, default_platform: str | None, output_format: str) -> PlannedImage:
    where = entry.location or entry.reference
    platform = entry.platform if entry.platform is not None else default_platform
    try:
        wanted = parse_platforms(platform)
        reference = Reference.parse(entry.reference)
    except DockerDragError as exc:
        raise ImageListError(f"{where}: {exc}").suggesting(*exc.remedies) from None
    several = wanted == "all" or (wanted is not None and len(wanted) > 1)
    if output_format == "docker" and several:
        remedy = Remedy(Setting.FORMAT, "oci")
        raise ImageListError(f"{where}: several platforms need {remedy} or 'oci-dir'").suggesting(
            remedy
        )
    return PlannedImage(entry, reference, _platform_text(wanted), wanted)


def _platform_text(wanted: list[Platform] | Literal["all"] | None) -> str | None:
    """A platform choice in normal form, as the lock file records it."""
    if wanted is None or wanted == "all":
        return wanted
    return ",".join(str(platform) for platform in wanted)


def _pinned(planned: list[PlannedImage], locked: Lockfile) -> list[PlannedImage]:
    again = Remedy(Setting.LOCKED)
    if len(planned) != len(locked.images):
        raise LockfileError(
            f"the image list has {len(planned)} images, the lock file {len(locked.images)}: "
            f"pull without {again} to resolve the list and write a new lock file"
        ).suggesting(again)
    pinned = []
    for item, image in zip(planned, locked.images, strict=True):
        ours = (item.entry.reference, item.platform, item.entry.tag)
        theirs = (image.reference, image.platform, image.tag)
        if ours != theirs:
            raise LockfileError(
                f"{item.where}: {_describe(*ours)} differs from the lock file's "
                f"{_describe(*theirs)}: pull without {again} to resolve the list and write "
                "a new lock file"
            ).suggesting(again)
        pinned.append(replace(item, pin=image))
    return pinned


def _describe(reference: str, platform: str | None, tag: str | None) -> str:
    text = reference
    if platform is not None:
        text += f" --platform {platform}"
    if tag is not None:
        text += f" --tag {tag}"
    return repr(text)


async def find_tag_move(client: RegistryClient, item: PlannedImage) -> TagMoved | None:
    """The move of a pinned line's tag since the lock file, if it moved; logged as a warning.

    A line written with a digest has nothing to move. When the tag cannot be
    looked up (gone, refused) that is logged and ``None`` returned: the locked
    digests are pulled either way.
    """
    pin = item.pin
    if pin is None or item.reference.digest is not None:
        return None
    try:
        _, document = await client.fetch_index_or_manifest(item.reference)
    except DockerDragError as exc:
        log.warning(
            "%s: could not look up whether %s moved since the lock file (%s); "
            "pulling the locked %s",
            item.where,
            item.entry.reference,
            exc,
            pin.resolved_digest,
        )
        return None
    if document.digest == pin.resolved_digest:
        return None
    log.warning(
        "%s: %s moved since the lock file: locked %s, now %s; pulling the locked %s",
        item.where,
        item.entry.reference,
        pin.resolved_digest,
        document.digest,
        pin.resolved_digest,
    )
    return TagMoved(item.entry.reference, pin.resolved_digest, document.digest)


async def resolve_locked(
    client: RegistryClient, reference: Reference, pin: LockedImage, *, concurrency: int = 1
) -> Resolution:
    """Fetch exactly the digests ``pin`` records for ``reference`` (no tag is resolved).

    The index (if any) and every locked manifest are fetched by digest and so
    verified, the manifests ``concurrency`` at once; a manifest the index does not list,
    or one whose config or layers differ from the lock file's, raises LockfileError (the
    lock was edited).
    """
    source, document = await client.fetch_index_or_manifest(
        reference.with_digest(pin.resolved_digest)
    )
    index: ImageIndex | None = None
    if pin.index_digest is not None:
        if not isinstance(document, ImageIndex):
            raise LockfileError(
                f"{pin.reference}: the lock's index {pin.index_digest} is a manifest"
            )
        index = document
        manifests = await in_order(
            [
                functools.partial(_locked_manifest, client, source, index, m, pin)
                for m in pin.manifests
            ],
            concurrency,
        )
    elif not isinstance(document, ImageManifest):
        raise LockfileError(
            f"{pin.reference}: the lock's manifest {pin.manifest_digest} is an index"
        )
    elif len(pin.manifests) != 1:
        raise LockfileError(f"{pin.reference}: the lock records several manifests but no index")
    else:
        manifests = [document]
    for locked, manifest in zip(pin.manifests, manifests, strict=True):
        _check_against_lock(locked, manifest, pin)
    return Resolution(reference, source, index, tuple(manifests))


async def _locked_manifest(
    client: RegistryClient,
    source: Reference,
    index: ImageIndex,
    locked: LockedManifest,
    pin: LockedImage,
) -> ImageManifest:
    if locked.digest not in {entry.digest for entry in index.manifests}:
        raise LockfileError(
            f"{pin.reference}: the lock's manifest {locked.digest} is not in index {index.digest}"
        )
    manifest = await client.fetch_manifest(source, str(locked.digest))
    if not isinstance(manifest, ImageManifest):
        raise InvalidManifestError(f"index entry {locked.digest} of {source} is not an image")
    return manifest


def _check_against_lock(locked: LockedManifest, manifest: ImageManifest, pin: LockedImage) -> None:
    recorded = (locked.config_digest, [(d.digest, d.size) for d in locked.layers])
    actual = (manifest.config.digest, [(d.digest, d.size) for d in manifest.layers])
    if recorded != actual:
        raise LockfileError(
            f"{pin.reference}: manifest {manifest.digest} has another config or other layers "
            "than the lock file records for it (was the lock file edited?)"
        )


def locked_image(item: PlannedImage, resolved: ResolvedPull) -> LockedImage:
    """The lock file's record of one line: what ``item`` resolved to."""
    return LockedImage(
        reference=item.entry.reference,
        platform=item.platform,
        tag=item.entry.tag,
        index_digest=resolved.index.digest if resolved.index is not None else None,
        manifests=tuple(
            LockedManifest(
                digest=image.manifest.digest,
                media_type=image.manifest.media_type,
                platform=str(image.config.platform),
                config_digest=image.manifest.config.digest,
                layers=tuple(
                    LockedLayer(layer.digest, layer.size, layer.media_type)
                    for layer in image.manifest.layers
                ),
            )
            for image in resolved.images
        ),
    )
