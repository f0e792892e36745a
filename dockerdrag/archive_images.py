"""The images an archive holds and the blobs each needs, read without unpacking it.

Two shapes are read (:func:`read_archive`):

* an **OCI image layout** (``index.json`` present: ``--format oci``/``oci-dir``, Docker 25+
  ``docker save``, any layout): each ``index.json`` entry is an image, named by its
  ``io.containerd.image.name`` annotation (or ``org.opencontainers.image.ref.name``). Its
  manifests and indexes are kept as the archive's bytes, checked against their digests; a
  manifest's config and layers are blobs of ``blobs/sha256/``. An index whose manifests
  the archive does not all hold (a *sparse* layout) is refused: a registry refuses it too.
* the **legacy docker format** (``manifest.json`` only: ``--format docker``, ``docker save``
  up to Docker 24): each entry's ``Config`` (named by the image ID) and uncompressed
  ``Layers``, with the config's ``diff_ids``.

Only the small documents (manifests, configs, ``index.json``) are read here; blobs are
located (:class:`~dockerdrag.archive_members.Member`) for whoever streams them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field

from .archive_members import ArchiveMembers, Member
from .digest import Digest
from .errors import InvalidManifestError, InvalidReferenceError
from .manifest import (
    MAX_CONFIG_BYTES,
    MAX_MANIFEST_BYTES,
    Descriptor,
    ImageConfig,
    ImageIndex,
    ImageManifest,
    parse_config,
    parse_manifest,
)

__all__ = [
    "ANNOTATION_IMAGE_NAME",
    "ANNOTATION_REF_NAME",
    "ArchiveContent",
    "LayoutImage",
    "LegacyImage",
    "layout_documents",
    "read_archive",
]

ANNOTATION_IMAGE_NAME = "io.containerd.image.name"
ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name"
_BLOBS = "blobs/sha256/"


@dataclass(frozen=True)
class LayoutImage:
    """One ``index.json`` entry: the manifest or index it points at and its names."""

    names: tuple[str, ...]
    root: ImageManifest | ImageIndex


@dataclass(frozen=True)
class LegacyImage:
    """One ``manifest.json`` entry of a legacy docker archive."""

    names: tuple[str, ...]
    config: ImageConfig
    config_member: Member
    layers: tuple[Member, ...]  # uncompressed layer tars, in the config's diff_ids order


@dataclass
class ArchiveContent:
    """Every image of an archive and where each blob they need lies in it."""

    members: ArchiveMembers
    layout_images: list[LayoutImage] = field(default_factory=list)
    legacy_images: list[LegacyImage] = field(default_factory=list)
    blobs: dict[Digest, tuple[Descriptor, Member]] = field(default_factory=dict)
    documents: dict[Digest, ImageManifest | ImageIndex] = field(default_factory=dict)

    def document(self, entry: Descriptor) -> ImageManifest | ImageIndex:
        """The manifest or index ``entry`` names, read (and checked) once."""
        found = self.documents.get(entry.digest)
        if found is None:
            found = self.documents[entry.digest] = _read_document(self.members, entry)
        return found

    @property
    def is_layout(self) -> bool:
        """Whether the archive is an OCI image layout (its bytes are pushed as they are)."""
        return bool(self.layout_images)


def _blob_member(members: ArchiveMembers, digest: Digest, what: str) -> Member:
    return members.require(_BLOBS + digest.hex, what)


def _read_document(members: ArchiveMembers, entry: Descriptor) -> ImageManifest | ImageIndex:
    """The manifest or index ``entry`` names, checked against its digest and size."""
    what = f"manifest {entry.digest}"
    member = _blob_member(members, entry.digest, what)
    if member.size != entry.size:
        raise InvalidManifestError(
            f"{members.source}: {what} is {member.size} bytes, its descriptor says {entry.size}"
        )
    raw = members.read(member.name, what, MAX_MANIFEST_BYTES)
    if Digest.of(raw) != entry.digest:
        raise InvalidManifestError(
            f"{members.source}: {what} does not match its digest (the archive is damaged)"
        )
    return parse_manifest(raw, entry.media_type)


def _names(entry: Descriptor) -> tuple[str, ...]:
    full = entry.annotations.get(ANNOTATION_IMAGE_NAME)
    short = entry.annotations.get(ANNOTATION_REF_NAME)
    return tuple(name for name in (full or short,) if name)


def _sparse_error(members: ArchiveMembers, index: ImageIndex, child: Descriptor) -> Exception:
    platform = f" ({child.platform})" if child.platform else ""
    kind = "attestation " if child.is_attestation else ""
    return InvalidManifestError(
        f"{members.source}: index {index.digest} lists the {kind}manifest {child.digest}"
        f"{platform}, which the archive does not hold; a registry refuses an index whose "
        "manifests are missing. Pull it again with --platform all --include-attestations "
        "(or push one platform's image by its manifest)"
    )


def _walk(
    content: ArchiveContent, document: ImageManifest | ImageIndex, depth: int = 0
) -> Iterator[ImageManifest | ImageIndex]:
    """``document`` and everything under it, children first; records the blobs."""
    members = content.members
    if depth > 4:
        raise InvalidManifestError(f"{members.source}: indexes nested too deep")
    if isinstance(document, ImageIndex):
        for child in document.manifests:
            if members.get(_BLOBS + child.digest.hex) is None:
                raise _sparse_error(members, document, child)
            yield from _walk(content, content.document(child), depth + 1)
    else:
        for blob in (document.config, *document.layers):
            member = members.get(_BLOBS + blob.digest.hex)
            if member is None:
                if blob.is_foreign and blob.urls:
                    continue  # the registry is told where it lives; it holds no copy
                raise InvalidManifestError(
                    f"{members.source}: blob {blob.digest} of manifest {document.digest} is missing"
                )
            content.blobs.setdefault(blob.digest, (blob, member))
    yield document


def layout_documents(
    content: ArchiveContent, image: LayoutImage
) -> list[ImageManifest | ImageIndex]:
    """The manifests and indexes of ``image``, children before the index listing them."""
    return list(_walk(content, image.root))


def _read_layout(content: ArchiveContent) -> None:
    members = content.members
    raw = members.read("index.json", "index.json", MAX_MANIFEST_BYTES)
    index = parse_manifest(raw, None)
    if not isinstance(index, ImageIndex):
        raise InvalidManifestError(f"{members.source}: index.json is not an image index")
    for entry in index.manifests:
        root = content.document(entry)
        image = LayoutImage(_names(entry), root)
        for _ in _walk(content, root):
            pass  # checks completeness and records every blob before anything is sent
        content.layout_images.append(image)


def _string_list(value: object, what: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise InvalidManifestError(f"manifest.json: {what} must be a list of strings")
    return value


def _read_legacy_entry(members: ArchiveMembers, entry: object) -> LegacyImage:
    if not isinstance(entry, dict) or not isinstance(entry.get("Config"), str):
        raise InvalidManifestError(f"{members.source}: manifest.json entry without Config")
    config_name: str = entry["Config"]
    hex_part = config_name.rsplit("/", 1)[-1].removesuffix(".json")
    try:
        image_id = Digest(hex_part)
    except InvalidReferenceError:
        raise InvalidManifestError(
            f"{members.source}: config {config_name[:100]!r} is not named by its image ID"
        ) from None
    raw = members.read(config_name, f"config {config_name}", MAX_CONFIG_BYTES)
    config = parse_config(raw)
    if config.digest != image_id:
        raise InvalidManifestError(
            f"{members.source}: config {config_name} does not match its image ID "
            "(the archive is damaged)"
        )
    layer_names = _string_list(entry.get("Layers"), "Layers")
    if len(layer_names) != len(config.diff_ids):
        raise InvalidManifestError(
            f"{members.source}: image {image_id.short} lists {len(layer_names)} layers but "
            f"its config has {len(config.diff_ids)} diff_ids"
        )
    layers = tuple(members.require(name, f"layer {name}") for name in layer_names)
    names = tuple(_string_list(entry.get("RepoTags"), "RepoTags"))
    config_member = members.require(config_name, "config")
    return LegacyImage(names, config, config_member, layers)


def _read_legacy(content: ArchiveContent) -> None:
    members = content.members
    raw = members.read("manifest.json", "manifest.json", MAX_MANIFEST_BYTES)
    try:
        entries = json.loads(raw)
    except ValueError as exc:
        raise InvalidManifestError(f"{members.source}: manifest.json is not JSON") from exc
    if not isinstance(entries, list) or not entries:
        raise InvalidManifestError(f"{members.source}: manifest.json lists no images")
    content.legacy_images.extend(_read_legacy_entry(members, entry) for entry in entries)


def read_archive(members: ArchiveMembers) -> ArchiveContent:
    """The images of an OCI layout (``index.json``) or of a legacy docker archive."""
    content = ArchiveContent(members)
    if members.get("index.json") is not None:
        _read_layout(content)
    elif members.get("manifest.json") is not None:
        _read_legacy(content)
    else:
        raise InvalidManifestError(
            f"{members.source} is not an image archive: it has neither index.json nor manifest.json"
        )
    if not content.layout_images and not content.legacy_images:
        raise InvalidManifestError(f"{members.source} holds no images")
    return content
