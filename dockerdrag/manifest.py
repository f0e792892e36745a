"""Manifests, indexes and descriptors: parsing, validation, platform selection.

Both families are accepted: the OCI image manifest and index, and Docker's
schema 2 manifest and manifest list. Parsing is strict, because a registry (or
anything between us and it) controls these bytes:

* The body is at most :data:`MAX_MANIFEST_BYTES`, UTF-8, one JSON object, with
  no duplicate keys and no NaN/Infinity. A key that differs from a known field
  only in case (``Config``) is refused too: Go decoders would read it as the
  field, we would not, and the two readings must never differ.
* ``schemaVersion`` is 2. Schema 1 is refused outright.
* The body's ``mediaType`` must agree with the response's ``Content-Type``
  unless that header is generic (``application/json``, ...) or absent. A body
  without ``mediaType`` is typed by the header, or else by its shape.
* A manifest with ``manifests``, or an index with ``config``/``layers``, is
  ambiguous and refused.
* Every descriptor has a string ``mediaType``, a sha256 ``digest`` and a
  non-negative integer ``size``; ``urls`` are http(s) only.

Media types live in :mod:`media_types`, image configs in :mod:`image_config`.

Every failure raises InvalidManifestError. Nothing here does I/O.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, NoReturn
from urllib.parse import urlsplit

from .digest import Digest
from .errors import InvalidManifestError, PlatformNotFoundError
from .gojson import fold_key
from .media_types import (
    FOREIGN_LAYER_MEDIA_TYPES,
    INDEX_MEDIA_TYPES,
    MANIFEST_MEDIA_TYPES,
    MEDIA_TYPE_OCI_INDEX,
    MEDIA_TYPE_OCI_MANIFEST,
    SCHEMA1_MEDIA_TYPES,
)
from .platform import Platform, platform_rank

__all__ = [
    "MAX_MANIFEST_BYTES",
    "Descriptor",
    "ImageIndex",
    "ImageManifest",
    "bounded_bytes",
    "parse_manifest",
    "select_manifest",
]

MAX_MANIFEST_BYTES = 4 * 1024 * 1024
"""Largest manifest or index body we read (the registry's own PUT limit)."""

# Content-Types that say nothing about which manifest this is.
_GENERIC_CONTENT_TYPES = frozenset(
    {"", "application/json", "text/plain", "application/octet-stream", "binary/octet-stream"}
)
_MAX_SIZE = 2**63 - 1
_ATTESTATION_ANNOTATION = "vnd.docker.reference.type"

_MANIFEST_FIELDS = ("schemaVersion", "mediaType", "config", "layers", "manifests")
_DESCRIPTOR_FIELDS = (
    "mediaType",
    "digest",
    "size",
    "urls",
    "annotations",
    "platform",
    "artifactType",
)
_PLATFORM_FIELDS = ("os", "architecture", "variant", "os.version", "os.features")


def _invalid(message: str) -> NoReturn:
    raise InvalidManifestError(message)


# --- descriptors ---------------------------------------------------------------------


def _frozen_annotations(value: Mapping[str, str] | None) -> Mapping[str, str]:
    return MappingProxyType(dict(value or {}))


@dataclass(frozen=True)
class Descriptor:
    """A content descriptor: what a manifest says about one blob or manifest.

    ``annotations`` is a read-only mapping (not part of the hash).
    """

    media_type: str
    digest: Digest
    size: int
    platform: Platform | None = None
    urls: tuple[str, ...] = ()
    annotations: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}), hash=False)
    artifact_type: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.annotations, MappingProxyType):
            object.__setattr__(self, "annotations", _frozen_annotations(self.annotations))
        object.__setattr__(self, "urls", tuple(self.urls))

    @property
    def is_attestation(self) -> bool:
        """Whether this index entry is an attestation (SBOM, provenance), not an image.

        BuildKit marks those with platform ``unknown/unknown`` and the annotation
        ``vnd.docker.reference.type``.
        """
        if _ATTESTATION_ANNOTATION in self.annotations:
            return True
        return (
            self.platform is not None
            and self.platform.os == "unknown"
            and self.platform.architecture == "unknown"
        )

    @property
    def is_foreign(self) -> bool:
        """Whether this is a foreign/nondistributable layer."""
        return self.media_type in FOREIGN_LAYER_MEDIA_TYPES

    def to_json(self) -> dict[str, object]:
        """The OCI descriptor object (``mediaType``, ``digest``, ``size``, then extras)."""
        obj: dict[str, object] = {
            "mediaType": self.media_type,
            "digest": str(self.digest),
            "size": self.size,
        }
        if self.urls:
            obj["urls"] = list(self.urls)
        if self.annotations:
            obj["annotations"] = dict(self.annotations)
        if self.platform is not None:
            obj["platform"] = self.platform.to_json()
        if self.artifact_type is not None:
            obj["artifactType"] = self.artifact_type
        return obj


class _ServedDocument:
    """What a manifest and an index share: the bytes exactly as served, their sha256
    ``digest`` and their ``media_type`` (the dataclasses below hold the fields)."""

    media_type: str
    digest: Digest
    raw: bytes

    @property
    def size(self) -> int:
        """The size of the raw document."""
        return len(self.raw)

    def descriptor(self, platform: Platform | None = None) -> Descriptor:
        """A descriptor pointing at this document (for an index's entry, its platform)."""
        return Descriptor(self.media_type, self.digest, self.size, platform)


@dataclass(frozen=True)
class ImageManifest(_ServedDocument):
    """A single-platform image manifest (OCI or Docker schema 2).

    ``raw`` holds the bytes exactly as served and ``digest`` is their sha256.
    ``layers`` may be empty here; whoever writes an archive must refuse that.
    """

    media_type: str
    config: Descriptor
    layers: tuple[Descriptor, ...]
    digest: Digest
    raw: bytes = field(repr=False)


@dataclass(frozen=True)
class ImageIndex(_ServedDocument):
    """A multi-platform index (OCI image index or Docker manifest list)."""

    media_type: str
    manifests: tuple[Descriptor, ...]
    digest: Digest
    raw: bytes = field(repr=False)

    def platforms(self) -> list[Descriptor]:
        """The entries that are images for a real platform (never attestations)."""
        return [d for d in self.manifests if d.platform is not None and not d.is_attestation]


# --- strict JSON (manifests) --------------------------------------------------------------


def _reject_constant(name: str) -> NoReturn:
    _invalid(f"invalid JSON constant {name}")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            _invalid(f"duplicate key {key!r} in JSON object")
        obj[key] = value
    return obj


def _load_strict(raw: bytes, what: str) -> dict[str, Any]:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        _invalid(f"{what} is not valid UTF-8")
    try:
        doc = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_reject_constant)
    except (json.JSONDecodeError, RecursionError) as exc:
        _invalid(f"{what} is not valid JSON: {exc}")
    if not isinstance(doc, dict):
        _invalid(f"{what} must be a JSON object, got {_json_type(doc)}")
    return doc


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _check_key_case(obj: Mapping[str, Any], known: Iterable[str], where: str) -> None:
    folded = {name.lower(): name for name in known}
    for key in obj:
        name = folded.get(fold_key(key))
        if name is not None and name != key:
            _invalid(f"{where}: key {key!r} is ambiguous (differs from {name!r} only in case)")


# --- descriptor parsing ---------------------------------------------------------------


def _parse_descriptor(obj: object, where: str) -> Descriptor:
    if not isinstance(obj, dict):
        _invalid(f"{where} must be a JSON object, got {_json_type(obj)}")
    _check_key_case(obj, _DESCRIPTOR_FIELDS, where)

    media_type = obj.get("mediaType")
    if not isinstance(media_type, str) or not media_type:
        _invalid(f"{where}: mediaType must be a non-empty string")

    digest_text = obj.get("digest")
    if not isinstance(digest_text, str):
        _invalid(f"{where}: digest must be a string")
    digest = Digest.from_registry(digest_text, where)

    size = obj.get("size")
    if isinstance(size, bool) or not isinstance(size, int):
        _invalid(f"{where}: size must be an integer")
    if not 0 <= size <= _MAX_SIZE:
        _invalid(f"{where}: size {size} is out of range")

    urls_obj = obj.get("urls")
    urls: tuple[str, ...] = ()
    if urls_obj is not None:
        if not isinstance(urls_obj, list):
            _invalid(f"{where}: urls must be an array of strings")
        for url in urls_obj:
            if not isinstance(url, str):
                _invalid(f"{where}: urls must be an array of strings")
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                _invalid(f"{where}: url {url!r} is not an http(s) URL")
        urls = tuple(urls_obj)

    annotations = _string_map(obj.get("annotations"), f"{where}: annotations")

    platform: Platform | None = None
    platform_obj = obj.get("platform")
    if platform_obj is not None:
        if isinstance(platform_obj, dict):
            _check_key_case(platform_obj, _PLATFORM_FIELDS, f"{where}.platform")
        try:
            platform = Platform.from_json(platform_obj)
        except InvalidManifestError as exc:
            _invalid(f"{where}: {exc}")

    artifact_type = obj.get("artifactType")
    if artifact_type is not None and not isinstance(artifact_type, str):
        _invalid(f"{where}: artifactType must be a string")

    return Descriptor(
        media_type=media_type,
        digest=digest,
        size=size,
        platform=platform,
        urls=urls,
        annotations=annotations,
        artifact_type=artifact_type,
    )


def _string_map(value: object, where: str) -> Mapping[str, str]:
    if value is None:
        return MappingProxyType({})
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        _invalid(f"{where} must be an object of strings")
    return MappingProxyType(dict(value))


# --- manifest parsing -------------------------------------------------------------------


def _normalize_content_type(content_type: str | None) -> str:
    if not content_type:
        return ""
    return content_type.split(";", 1)[0].strip().lower()


def _schema1_error() -> NoReturn:
    _invalid(
        "schema 1 manifests are not supported (the image must be pushed again "
        "with a current Docker or OCI tool)"
    )


def bounded_bytes(raw: bytes, limit: int, what: str) -> bytes:
    """``raw`` (bytes-like, else TypeError) as bytes; InvalidManifestError naming ``what``
    (a manifest, an image config) when it is over ``limit`` bytes."""
    if not isinstance(raw, bytes | bytearray | memoryview):
        raise TypeError("raw must be bytes")
    raw = bytes(raw)
    if len(raw) > limit:
        _invalid(f"{what} is too large ({len(raw)} bytes, limit {limit})")
    return raw


def parse_manifest(raw: bytes, content_type: str | None) -> ImageManifest | ImageIndex:
    """Parse and validate a manifest or index as served with ``content_type``.

    Returns an :class:`ImageManifest` or :class:`ImageIndex` whose ``digest`` is
    the sha256 of ``raw``. Raises InvalidManifestError for anything oversized,
    malformed, ambiguous or unsupported (see the module docstring).
    """
    raw = bounded_bytes(raw, MAX_MANIFEST_BYTES, "manifest")

    header_type = _normalize_content_type(content_type)
    if header_type in SCHEMA1_MEDIA_TYPES:
        _schema1_error()
    known_types = MANIFEST_MEDIA_TYPES | INDEX_MEDIA_TYPES
    if header_type not in _GENERIC_CONTENT_TYPES and header_type not in known_types:
        _invalid(f"unsupported manifest Content-Type {header_type!r}")

    doc = _load_strict(raw, "manifest")
    _check_key_case(doc, _MANIFEST_FIELDS, "manifest")

    schema_version = doc.get("schemaVersion")
    body_type = doc.get("mediaType")
    is_int = isinstance(schema_version, int) and not isinstance(schema_version, bool)
    if body_type in SCHEMA1_MEDIA_TYPES or (is_int and schema_version == 1):
        _schema1_error()
    if not is_int or schema_version != 2:
        _invalid(f"unsupported manifest schemaVersion {schema_version!r} (expected 2)")

    if body_type is not None and not isinstance(body_type, str):
        _invalid("manifest mediaType must be a string")

    has_manifests = "manifests" in doc
    has_image_parts = "config" in doc or "layers" in doc
    if has_manifests and has_image_parts:
        _invalid("ambiguous manifest: it has both 'manifests' and 'config'/'layers'")

    if body_type:
        if header_type in known_types and header_type != body_type:
            _invalid(
                f"manifest mediaType {body_type!r} does not match the Content-Type {header_type!r}"
            )
        media_type = body_type
    elif header_type in known_types:
        media_type = header_type
    elif has_manifests:
        media_type = MEDIA_TYPE_OCI_INDEX
    elif has_image_parts:
        media_type = MEDIA_TYPE_OCI_MANIFEST
    else:
        _invalid("cannot tell what this document is: no mediaType, config, layers or manifests")

    digest = Digest.of(raw)
    if media_type in MANIFEST_MEDIA_TYPES:
        if has_manifests:
            _invalid(f"ambiguous manifest: a {media_type} must not have 'manifests'")
        if "config" not in doc:
            _invalid("manifest has no config")
        config = _parse_descriptor(doc["config"], "manifest config")
        layers_obj = doc.get("layers")
        if not isinstance(layers_obj, list):
            _invalid("manifest layers must be an array")
        layers = tuple(
            _parse_descriptor(layer, f"manifest layer {i}") for i, layer in enumerate(layers_obj)
        )
        return ImageManifest(media_type, config, layers, digest, raw)
    if media_type in INDEX_MEDIA_TYPES:
        if has_image_parts:
            _invalid(f"ambiguous index: a {media_type} must not have 'config' or 'layers'")
        entries = doc.get("manifests")
        if not isinstance(entries, list):
            _invalid("index manifests must be an array")
        manifests = tuple(
            _parse_descriptor(entry, f"index entry {i}") for i, entry in enumerate(entries)
        )
        return ImageIndex(media_type, manifests, digest, raw)
    _invalid(f"unsupported manifest mediaType {media_type!r}")


# --- platform selection ------------------------------------------------------------------


def select_manifest(index: ImageIndex, wanted: Platform) -> Descriptor:
    """The index entry that best matches ``wanted`` (see platform_preference).

    Ties go to the entry listed first. Attestations are never chosen. An
    image-manifest entry without a platform is accepted only when nothing
    matches better. Raises PlatformNotFoundError, whose ``available`` lists the
    platforms the index offers.
    """
    best: Descriptor | None = None
    best_rank: int | None = None
    fallback: Descriptor | None = None
    for entry in index.manifests:
        if entry.is_attestation:
            continue
        if entry.platform is None:
            if fallback is None and entry.media_type in MANIFEST_MEDIA_TYPES:
                fallback = entry
            continue
        rank = platform_rank(wanted, entry.platform)
        if rank is not None and (best_rank is None or rank < best_rank):
            best, best_rank = entry, rank
    if best is not None:
        return best
    if fallback is not None:
        return fallback
    available: list[Platform] = []
    for entry in index.platforms():
        assert entry.platform is not None
        if entry.platform not in available:
            available.append(entry.platform)
    offered = ", ".join(str(p) for p in available) or "none"
    raise PlatformNotFoundError(
        f"no matching manifest for {wanted} in the manifest list entries "
        f"(available platforms: {offered})",
        available=available,
    )
