"""What an OCI layout of pulled images holds: the plan both OCI writers write.

The input types (:class:`OciImage`, :class:`OciManifest`) and :func:`plan_layout`, which
checks them and decides the blobs, the ``index.json`` entries and the ``manifest.json``
entries; :mod:`dockerdrag.oci_documents` turns the plan into JSON,
:mod:`dockerdrag.oci_archive` and :mod:`dockerdrag.oci_dir` write it.

Layout rules:

* Blobs are stored once each, however many images share them.
* ``index.json`` has one entry per tag, annotated ``org.opencontainers.image.ref.name``
  (the tag) and ``io.containerd.image.name`` (``docker.io/library/busybox:latest``), or a
  single entry without annotations for an untagged image. For a multi-platform image
  the entry points at the registry's index (or manifest list) blob.
* ``manifest.json`` lists images in the order given. For a multi-platform image it has
  one entry per platform image whose layers are all present; ``docker load`` loads
  every entry, and a tag given to several entries would end on the last one loaded, so
  **only the first platform image carries the tags** (put the requested or host
  platform first); the others load as untagged images. Entries whose OS differs from
  the first one's are left out: a Linux daemon refuses a Windows image and aborts the
  whole load. Attestation manifests (BuildKit SBOM/provenance, platform
  ``unknown/unknown``, and any entry without a platform) never go in ``manifest.json``,
  and their blobs are stored only with ``include_attestations=True``. A multi-platform
  layout keeps the registry's index verbatim, so unless every entry was pulled (a pull
  of ``--platform all`` pulls and stores them all) it names platforms or attestations
  whose blobs are not stored: the layout is then *sparse* (``skopeo copy --all`` and
  ``ctr import --all-platforms`` need every instance present).
* ``LayerSources`` is written only for foreign (nondistributable) layers, as Docker
  writes it: it maps the layer's diff_id to its distribution descriptor so that a
  daemon keeps the layer foreign. A foreign layer whose blob was not fetched is left
  out of ``blobs/`` (the OCI spec allows that) and its image out of ``manifest.json``.
* Config and layer blobs get their image's ``created`` as mtime (0 if absent, before
  1970 or past 2242), ``blobs/`` that of the last image, everything else 0.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from .digest import Digest
from .errors import (
    DigestMismatchError,
    InvalidManifestError,
    InvalidReferenceError,
    SizeMismatchError,
    UsageError,
)
from .gojson import DecodedConfig, decode_image_config, go_map_order
from .manifest import Descriptor, ImageIndex, ImageManifest
from .reference import Reference
from .tarwriter import MAX_OCTAL_11

__all__ = [
    "ANNOTATION_IMAGE_NAME",
    "ANNOTATION_REF_NAME",
    "DockerItem",
    "LayoutPlan",
    "OciImage",
    "OciManifest",
    "PlannedBlob",
    "plan_layout",
]

ANNOTATION_REF_NAME: Final = "org.opencontainers.image.ref.name"
"""``index.json`` annotation holding the tag (``latest``)."""
ANNOTATION_IMAGE_NAME: Final = "io.containerd.image.name"
"""``index.json`` annotation holding the full name (``docker.io/library/busybox:latest``)."""


@dataclass(frozen=True)
class OciManifest:
    """One image manifest to store, exactly as the registry served it.

    ``manifest.raw`` and ``config_raw`` are written verbatim; ``blob_paths`` maps layer
    digests to files holding the compressed blobs (e.g. the blob cache). Extra entries
    are ignored; a missing entry is allowed only for a foreign layer. ``config`` is
    ``config_raw`` already decoded (:func:`dockerdrag.gojson.decode_image_config`), if
    the caller has it; otherwise the writer decodes it.
    """

    manifest: ImageManifest
    config_raw: bytes
    blob_paths: Mapping[Digest, Path] = field(default_factory=dict)
    config: DecodedConfig | None = None


@dataclass(frozen=True)
class OciImage:
    """One image to save under zero or more tags.

    Single-platform: one entry in ``manifests`` and ``index`` None. Multi-platform:
    ``index`` is the registry's index or manifest list and ``manifests`` the platform
    images fetched from it, the one to tag for ``docker load`` first (attestation
    manifests may be included; see ``include_attestations``). ``tags`` are tagged
    references (``Reference`` or text such as ``busybox:1.36``); none means untagged.
    """

    manifests: Sequence[OciManifest]
    tags: Sequence[Reference | str] = ()
    index: ImageIndex | None = None


@dataclass(frozen=True)
class PlannedBlob:
    """One blob: in memory (``data``) or in a file (``path``), ``size`` bytes."""

    digest: Digest
    size: int
    mtime: int
    data: bytes | None = None
    path: Path | None = None


@dataclass
class DockerItem:
    """One ``manifest.json`` entry."""

    config: Digest
    layers: tuple[Digest, ...]
    tags: list[Reference]
    layer_sources: dict[Digest, Descriptor]
    top_diff_id: Digest | None


@dataclass
class LayoutPlan:
    """Everything to write, whatever the container (tar or directory)."""

    blobs: dict[Digest, PlannedBlob] = field(default_factory=dict)
    index_entries: list[dict[str, object]] = field(default_factory=list)
    items: list[DockerItem] = field(default_factory=list)
    blobs_mtime: int = 0
    tag_targets: dict[str, Digest] = field(default_factory=dict)

    def add_blob(self, blob: PlannedBlob) -> None:
        """Store ``blob`` unless a blob with its digest is already stored."""
        self.blobs.setdefault(blob.digest, blob)

    def add_item(self, item: DockerItem) -> None:
        """Add a ``manifest.json`` entry, merging tags into an identical earlier one."""
        for existing in self.items:
            if (existing.config, existing.layers) == (item.config, item.layers):
                known = {str(ref) for ref in existing.tags}
                existing.tags.extend(ref for ref in item.tags if str(ref) not in known)
                return
        self.items.append(item)


def _tagged_references(tags: Sequence[Reference | str]) -> list[Reference]:
    """The tags as ``name:tag`` references (digests dropped), duplicates removed."""
    refs: dict[str, Reference] = {}
    for tag in tags:
        ref = Reference.parse(tag) if isinstance(tag, str) else tag
        if ref.tag is None:
            raise InvalidReferenceError(f"cannot save under {ref}: the reference has no tag")
        ref = ref.with_digest(None)
        refs.setdefault(str(ref), ref)
    return list(refs.values())


def _check_bytes(data: bytes, expected: Descriptor, what: str) -> None:
    """Raise unless ``data`` has the descriptor's size and digest."""
    if len(data) != expected.size:
        raise SizeMismatchError(f"{what}: got {len(data)} bytes, expected {expected.size}")
    actual = Digest.of(data)
    if actual != expected.digest:
        raise DigestMismatchError(f"{what}: expected {expected.digest}, got {actual}")


def _target(image: OciImage) -> Descriptor:
    """What ``index.json`` points at; checks that the manifests belong to the image."""
    if not image.manifests:
        raise ValueError("an OciImage needs at least one manifest")
    if image.index is None:
        if len(image.manifests) != 1:
            raise ValueError("several manifests need the index that lists them")
        return image.manifests[0].manifest.descriptor()
    listed = {entry.digest: entry for entry in image.index.manifests}
    for item in image.manifests:
        entry = listed.get(item.manifest.digest)
        if entry is None:
            raise ValueError(f"manifest {item.manifest.digest} is not listed in the index")
        _check_bytes(item.manifest.raw, entry, f"manifest {entry.digest}")
    return image.index.descriptor()


def _index_entry(target: Descriptor, ref: Reference | None) -> dict[str, object]:
    """One ``index.json`` descriptor, annotated with ``ref``'s names when tagged."""
    entry: dict[str, object] = {
        "mediaType": target.media_type,
        "digest": str(target.digest),
        "size": target.size,
    }
    if ref is not None:
        entry["annotations"] = go_map_order(
            {ANNOTATION_IMAGE_NAME: f"{ref.name}:{ref.tag}", ANNOTATION_REF_NAME: ref.tag}
        )
    return entry


def _add_index_entries(layout: LayoutPlan, target: Descriptor, refs: Sequence[Reference]) -> None:
    """One entry per tag (or one bare entry), skipping exact repeats."""
    for ref in refs:
        full = f"{ref.name}:{ref.tag}"
        previous = layout.tag_targets.setdefault(full, target.digest)
        if previous != target.digest:
            raise UsageError(f"tag {full} is given to two different images")
    entries = [_index_entry(target, ref) for ref in refs] or [_index_entry(target, None)]
    for entry in entries:
        if entry not in layout.index_entries:
            layout.index_entries.append(entry)


def _created_mtime(config: DecodedConfig) -> int:
    """The image's ``created`` in Unix seconds, 0 when absent or out of tar range."""
    seconds = config.created.unix_seconds()
    return seconds if 0 <= seconds <= MAX_OCTAL_11 else 0


def _diff_ids(config: DecodedConfig, manifest: ImageManifest) -> tuple[Digest, ...]:
    """The config's diff_ids, which must match the manifest's layers one to one."""
    diff_ids = config.diff_ids
    if len(diff_ids) != len(manifest.layers):
        raise InvalidManifestError(
            f"manifest {manifest.digest} lists {len(manifest.layers)} layers but its config "
            f"has {len(diff_ids)} diff_ids"
        )
    return diff_ids


def _add_manifest_blobs(layout: LayoutPlan, item: OciManifest, mtime: int) -> bool:
    """Store the manifest, config and layer blobs; False if a foreign layer is missing."""
    manifest = item.manifest
    layout.add_blob(PlannedBlob(manifest.digest, manifest.size, 0, data=manifest.raw))
    config = manifest.config
    layout.add_blob(PlannedBlob(config.digest, config.size, mtime, data=item.config_raw))
    complete = True
    for layer in manifest.layers:
        path = item.blob_paths.get(layer.digest)
        if path is None:
            if not layer.is_foreign:
                raise ValueError(f"no blob file for layer {layer.digest}")
            complete = False
            continue
        layout.add_blob(PlannedBlob(layer.digest, layer.size, mtime, path=path))
    return complete


def _docker_item(manifest: ImageManifest, diff_ids: Sequence[Digest]) -> DockerItem:
    """The ``manifest.json`` entry of a manifest whose blobs are all stored."""
    sources = {
        diff_id: layer
        for layer, diff_id in zip(manifest.layers, diff_ids, strict=True)
        if layer.is_foreign
    }
    return DockerItem(
        config=manifest.config.digest,
        layers=tuple(layer.digest for layer in manifest.layers),
        tags=[],
        layer_sources=sources,
        top_diff_id=diff_ids[-1] if diff_ids else None,
    )


def _attestations(index: ImageIndex | None) -> set[Digest]:
    """Digests of the index entries that are not platform images: attestations and
    entries without a platform (artifacts)."""
    if index is None:
        return set()
    images = {entry.digest for entry in index.platforms()}
    return {entry.digest for entry in index.manifests} - images


def _add_image(layout: LayoutPlan, image: OciImage, include_attestations: bool) -> None:
    """Plan one image: index entries, blobs and ``manifest.json`` entries."""
    refs = _tagged_references(image.tags)
    target = _target(image)
    _add_index_entries(layout, target, refs)
    if image.index is not None:
        layout.add_blob(PlannedBlob(image.index.digest, image.index.size, 0, data=image.index.raw))
    attestations = _attestations(image.index)
    primary_os: str | None = None
    for item in image.manifests:
        config_descriptor = item.manifest.config
        _check_bytes(item.config_raw, config_descriptor, f"config {config_descriptor.digest}")
        if item.manifest.digest in attestations:
            if include_attestations:
                _add_manifest_blobs(layout, item, 0)
            continue
        config = item.config or decode_image_config(item.config_raw)
        diff_ids = _diff_ids(config, item.manifest)
        mtime = _created_mtime(config)
        if not _add_manifest_blobs(layout, item, mtime):
            continue
        layout.blobs_mtime = mtime
        docker_item = _docker_item(item.manifest, diff_ids)
        if primary_os is None:
            primary_os = config.os
            docker_item.tags = list(refs)
        elif config.os != primary_os:
            continue
        layout.add_item(docker_item)


def plan_layout(images: Sequence[OciImage], include_attestations: bool) -> LayoutPlan:
    """What the layout of ``images`` holds: blobs, ``index.json`` and ``manifest.json``
    entries (the rules in this module's docstring); raises on inconsistent input."""
    if not images:
        raise UsageError("no images to save")
    layout = LayoutPlan()
    for image in images:
        _add_image(layout, image, include_attestations)
    return layout
