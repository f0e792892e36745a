"""The OCI-layout half of archive verification, and the lookups both halves share.

:func:`walk_index` follows ``index.json`` (with ``oci-layout``) to every index,
manifest, config and layer it reaches in a :class:`~dockerdrag.archive_scan.Scan`:
each must be stored under ``blobs/sha256/`` with its descriptor's size and digest, an
image config must list one diff_id per layer and each layer's uncompressed bytes
must hash to it. Entries of a stored index whose manifests are absent are collected
as missing (a sparse layout); a foreign layer may be absent. index.json is not
content-addressed, so a field its writers never use is refused as damage.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

from .archive_scan import ArchiveMember, Scan
from .digest import Digest
from .errors import (
    CorruptArchiveError,
    DiffIDMismatchError,
    DigestMismatchError,
    IntegrityError,
    InvalidManifestError,
    SizeMismatchError,
)
from .image_config import parse_config
from .manifest import Descriptor, ImageIndex, ImageManifest, parse_manifest
from .media_types import (
    CONFIG_MEDIA_TYPES,
    INDEX_MEDIA_TYPES,
    LAYER_MEDIA_TYPES,
    MANIFEST_MEDIA_TYPES,
)
from .platform import Platform

__all__ = [
    "BLOB_NAME",
    "LEGACY_CONFIG_NAME",
    "LayoutWalk",
    "blob_name",
    "check_layer",
    "check_names",
    "json_member",
    "known_fields",
    "parse_member",
    "required_member",
    "walk_index",
]

BLOB_NAME: Final = re.compile(r"blobs/sha256/([0-9a-f]{64})")
"""A content-addressed member name; group 1 is the digest's hex."""
LEGACY_CONFIG_NAME: Final = re.compile(r"([0-9a-f]{64})\.json")
"""A legacy ``docker save`` config member name; group 1 is the digest's hex."""
_Parsed = TypeVar("_Parsed")

# The fields the writers of index.json use. It is not content-addressed: a damaged key
# would go unseen, so any other key is refused.
_INDEX_FIELDS: Final = frozenset(
    {"schemaVersion", "mediaType", "artifactType", "subject", "manifests", "annotations"}
)
_DESCRIPTOR_FIELDS: Final = frozenset(
    {"mediaType", "digest", "size", "urls", "annotations", "data", "platform", "artifactType"}
)
_PLATFORM_FIELDS: Final = frozenset(
    {"architecture", "os", "os.version", "os.features", "variant", "features"}
)

# ---------------------------------------------------------------------------
# Member lookups
# ---------------------------------------------------------------------------


def blob_name(digest: Digest) -> str:
    """Where an OCI layout stores the blob ``digest``."""
    return f"blobs/sha256/{digest.hex}"


def check_names(scan: Scan) -> None:
    """Every content-addressed member hashes to its name (archive order)."""
    for name, member in scan.files.items():
        match = BLOB_NAME.fullmatch(name) or LEGACY_CONFIG_NAME.fullmatch(name)
        if match and member.digest.hex != match.group(1):
            raise DigestMismatchError(
                f"{name}: the content is damaged (its sha256 is {member.digest})"
            )


def json_member(scan: Scan, member: ArchiveMember, what: str) -> bytes:
    """The bytes the scan kept of ``member``, a JSON document (``what`` it is, for errors)."""
    raw = scan.documents.get(member.name)
    if raw is None:
        raise InvalidManifestError(f"{member.name!r} ({what}) is not a JSON document")
    return raw


def required_member(scan: Scan, name: str, what: str) -> ArchiveMember:
    """The file member ``name`` (links followed), which ``what`` refers to; missing: an error."""
    found = scan.resolve(name)
    if found is None:
        raise CorruptArchiveError(f"{what} names {name!r}, which the archive does not contain")
    return found


def parse_member(name: str, parse: Callable[..., _Parsed], *args: Any) -> _Parsed:
    """``parse(*args)``, its InvalidManifestError naming the member ``name``."""
    try:
        return parse(*args)
    except InvalidManifestError as exc:
        raise InvalidManifestError(f"{name!r}: {exc}") from None


def check_layer(layer: ArchiveMember, diff_id: Digest, where: str) -> None:
    """The layer's uncompressed bytes hash to ``diff_id`` (``where`` it is listed)."""
    if layer.diff_id is None:
        raise IntegrityError(f"{layer.name}: {layer.decompression_error} ({where})")
    if layer.diff_id != diff_id:
        raise DiffIDMismatchError(
            f"{layer.name}: uncompressed content {layer.diff_id} does not match the diff_id "
            f"{diff_id} of {where}"
        )


# ---------------------------------------------------------------------------
# The OCI layout
# ---------------------------------------------------------------------------


@dataclass
class LayoutWalk:
    """What walking ``index.json`` found."""

    scan: Scan
    manifests: dict[Digest, ImageManifest | ImageIndex] = field(default_factory=dict)
    missing: list[Descriptor] = field(default_factory=list)
    layerless: dict[Digest, str] = field(default_factory=dict)  # config -> manifest member

    def blob(self, descriptor: Descriptor, where: str) -> ArchiveMember | None:
        """The stored blob ``descriptor`` names, checked against its digest and size; None
        if it is not stored."""
        found = self.scan.resolve(blob_name(descriptor.digest))
        if found is None:
            return None
        if found.digest != descriptor.digest:
            raise DigestMismatchError(
                f"{found.name}: the content is damaged (its sha256 is {found.digest})"
            )
        if found.size != descriptor.size:
            raise SizeMismatchError(
                f"{found.name}: {found.size} bytes, but {where} says {descriptor.size}"
            )
        return found

    def required(self, descriptor: Descriptor, where: str) -> ArchiveMember:
        """As :meth:`blob`, but a blob that is not stored is an error."""
        found = self.blob(descriptor, where)
        if found is None:
            raise CorruptArchiveError(
                f"{where} references {descriptor.digest}, which the archive does not contain "
                f"({blob_name(descriptor.digest)})"
            )
        return found

    def visit(self, descriptor: Descriptor, where: str, *, optional: bool = False) -> None:
        """Check what ``descriptor`` names and, for an index or manifest, all it reaches;
        an ``optional`` one (an index's entry) that is not stored is noted as missing."""
        found = self.blob(descriptor, where) if optional else self.required(descriptor, where)
        if found is None:
            self.missing.append(descriptor)
            return
        kind = descriptor.media_type
        if kind not in MANIFEST_MEDIA_TYPES and kind not in INDEX_MEDIA_TYPES:
            declared = _declared_media_type(self.scan.documents.get(found.name))
            if declared in MANIFEST_MEDIA_TYPES or declared in INDEX_MEDIA_TYPES:
                raise InvalidManifestError(
                    f"{where} says {found.name} is a {kind!r}, but it is a {declared!r}"
                )
            return
        if descriptor.digest in self.manifests:
            return
        document = parse_member(
            found.name, parse_manifest, json_member(self.scan, found, where), kind
        )
        self.manifests[descriptor.digest] = document
        if isinstance(document, ImageIndex):
            for number, entry in enumerate(document.manifests):
                self.visit(entry, f"index {found.name} entry {number}", optional=True)
        else:
            self.image(document, found.name, descriptor.platform)

    def image(self, manifest: ImageManifest, name: str, platform: Platform | None) -> None:
        """Check an image manifest's config and layers (an artifact's only as blobs)."""
        config = self.required(manifest.config, f"manifest {name}")
        layers = [self.layer(layer, f"manifest {name}") for layer in manifest.layers]
        image_layers = all(layer.media_type in LAYER_MEDIA_TYPES for layer in manifest.layers)
        if manifest.config.media_type not in CONFIG_MEDIA_TYPES or not image_layers:
            return  # an artifact (attestation, signature): its blobs are checked above
        raw = json_member(self.scan, config, f"config of {name}")
        parsed = parse_member(config.name, parse_config, raw)
        diff_ids = parsed.diff_ids
        if platform is not None and (platform.os, platform.architecture) != (
            parsed.platform.os,
            parsed.platform.architecture,
        ):
            raise InvalidManifestError(
                f"an index lists manifest {name} as {platform}, but its config "
                f"{config.name} is {parsed.platform}"
            )
        if not manifest.layers and diff_ids:
            self.layerless[manifest.config.digest] = name
            return
        if len(diff_ids) != len(manifest.layers):
            raise InvalidManifestError(
                f"manifest {name} lists {len(manifest.layers)} layers but its config "
                f"{config.name} has {len(diff_ids)} diff_ids"
            )
        for number, (layer, diff_id) in enumerate(zip(layers, diff_ids, strict=True)):
            if layer is not None:
                check_layer(layer, diff_id, f"layer {number} of manifest {name}")

    def layer(self, descriptor: Descriptor, where: str) -> ArchiveMember | None:
        """A layer's stored blob; only a foreign layer may be absent (None)."""
        if descriptor.is_foreign:
            return self.blob(descriptor, where)
        return self.required(descriptor, where)


def _declared_media_type(raw: bytes | None) -> object:
    """The ``mediaType`` a JSON document declares for itself, if any."""
    try:
        document = json.loads(raw) if raw is not None else None
    except ValueError:
        return None
    return document.get("mediaType") if isinstance(document, dict) else None


def _check_oci_layout(scan: Scan) -> None:
    layout_file = required_member(scan, "oci-layout", "index.json")
    try:
        version = json.loads(json_member(scan, layout_file, "oci-layout"))["imageLayoutVersion"]
    except (ValueError, KeyError, TypeError):
        raise InvalidManifestError("oci-layout has no imageLayoutVersion") from None
    if not isinstance(version, str):
        raise InvalidManifestError("oci-layout: imageLayoutVersion must be a string")


def known_fields(value: object, known: frozenset[str], where: str) -> None:
    if isinstance(value, dict):
        unknown = sorted(set(value) - known)
        if unknown:
            raise InvalidManifestError(f"{where} has an unknown field {unknown[0]!r} (damaged?)")


def _check_index_fields(raw: bytes) -> None:
    """index.json uses only the fields the OCI image index defines."""
    try:
        document = json.loads(raw)
    except ValueError:
        return  # parse_manifest reports it
    known_fields(document, _INDEX_FIELDS, "index.json")
    entries = document.get("manifests") if isinstance(document, dict) else None
    for number, entry in enumerate(entries if isinstance(entries, list) else []):
        known_fields(entry, _DESCRIPTOR_FIELDS, f"index.json entry {number}")
        if isinstance(entry, dict):
            where = f"index.json entry {number} platform"
            known_fields(entry.get("platform"), _PLATFORM_FIELDS, where)


def walk_index(scan: Scan, index_file: ArchiveMember) -> tuple[ImageIndex, LayoutWalk]:
    _check_oci_layout(scan)
    raw = json_member(scan, index_file, "index")
    _check_index_fields(raw)
    index = parse_member("index.json", parse_manifest, raw, None)
    if not isinstance(index, ImageIndex):
        raise InvalidManifestError("index.json is not an image index")
    walk = LayoutWalk(scan)
    for number, entry in enumerate(index.manifests):
        walk.visit(entry, f"index.json entry {number}")
    return index, walk
