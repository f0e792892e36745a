"""Manifests, indexes, descriptors and image configs: media types, parsing, validation.

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

Image configs are decoded the way Docker's Go code decodes them (case-insensitive
keys, later duplicates win or merge, invalid UTF-8 replaced), so that what we
read agrees with what ``docker load`` will read; only what the pull needs is
checked: ``rootfs.type == "layers"`` and ``rootfs.diff_ids`` are sha256 digests.

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
from .gojson import ZERO_TIME, DecodedConfig, decode_image_config, fold_key, strings
from .platform import Platform, platform_rank

__all__ = [
    "ACCEPT_MANIFEST_TYPES",
    "CONFIG_MEDIA_TYPES",
    "FOREIGN_LAYER_MEDIA_TYPES",
    "INDEX_MEDIA_TYPES",
    "LAYER_MEDIA_TYPES",
    "MANIFEST_MEDIA_TYPES",
    "MAX_CONFIG_BYTES",
    "MAX_MANIFEST_BYTES",
    "MEDIA_TYPE_DOCKER_CONFIG",
    "MEDIA_TYPE_DOCKER_FOREIGN_LAYER",
    "MEDIA_TYPE_DOCKER_LAYER",
    "MEDIA_TYPE_DOCKER_LAYER_GZIP",
    "MEDIA_TYPE_DOCKER_LAYER_ZSTD",
    "MEDIA_TYPE_DOCKER_MANIFEST",
    "MEDIA_TYPE_DOCKER_MANIFEST_LIST",
    "MEDIA_TYPE_DOCKER_SCHEMA1_MANIFEST",
    "MEDIA_TYPE_DOCKER_SCHEMA1_SIGNED_MANIFEST",
    "MEDIA_TYPE_OCI_CONFIG",
    "MEDIA_TYPE_OCI_INDEX",
    "MEDIA_TYPE_OCI_LAYER",
    "MEDIA_TYPE_OCI_LAYER_GZIP",
    "MEDIA_TYPE_OCI_LAYER_NONDISTRIBUTABLE",
    "MEDIA_TYPE_OCI_LAYER_NONDISTRIBUTABLE_GZIP",
    "MEDIA_TYPE_OCI_LAYER_NONDISTRIBUTABLE_ZSTD",
    "MEDIA_TYPE_OCI_LAYER_ZSTD",
    "MEDIA_TYPE_OCI_MANIFEST",
    "SCHEMA1_MEDIA_TYPES",
    "Descriptor",
    "ImageConfig",
    "ImageIndex",
    "ImageManifest",
    "decode_config",
    "image_config",
    "parse_config",
    "parse_manifest",
    "select_manifest",
]

# --- media types -----------------------------------------------------------------

MEDIA_TYPE_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
"""Docker image manifest, schema 2."""
MEDIA_TYPE_DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
"""Docker manifest list (multi-platform)."""
MEDIA_TYPE_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
"""OCI image manifest."""
MEDIA_TYPE_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
"""OCI image index (multi-platform)."""

MEDIA_TYPE_DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
"""Docker image config."""
MEDIA_TYPE_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
"""OCI image config."""

MEDIA_TYPE_DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
"""Uncompressed Docker layer."""
MEDIA_TYPE_DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
"""gzip-compressed Docker layer."""
MEDIA_TYPE_DOCKER_LAYER_ZSTD = "application/vnd.docker.image.rootfs.diff.tar.zstd"
"""zstd-compressed Docker layer (written by some tools; not in the schema 2 spec)."""
MEDIA_TYPE_DOCKER_FOREIGN_LAYER = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
"""Foreign (nondistributable) Docker layer, typically Windows base layers."""
MEDIA_TYPE_OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
"""Uncompressed OCI layer."""
MEDIA_TYPE_OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
"""gzip-compressed OCI layer."""
MEDIA_TYPE_OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
"""zstd-compressed OCI layer."""
MEDIA_TYPE_OCI_LAYER_NONDISTRIBUTABLE = "application/vnd.oci.image.layer.nondistributable.v1.tar"
"""Nondistributable (foreign) OCI layer, uncompressed (deprecated by OCI)."""
MEDIA_TYPE_OCI_LAYER_NONDISTRIBUTABLE_GZIP = MEDIA_TYPE_OCI_LAYER_NONDISTRIBUTABLE + "+gzip"
"""Nondistributable (foreign) OCI layer, gzip (deprecated by OCI)."""
MEDIA_TYPE_OCI_LAYER_NONDISTRIBUTABLE_ZSTD = MEDIA_TYPE_OCI_LAYER_NONDISTRIBUTABLE + "+zstd"
"""Nondistributable (foreign) OCI layer, zstd (deprecated by OCI)."""

MEDIA_TYPE_DOCKER_SCHEMA1_MANIFEST = "application/vnd.docker.distribution.manifest.v1+json"
"""Docker schema 1 manifest (refused)."""
MEDIA_TYPE_DOCKER_SCHEMA1_SIGNED_MANIFEST = (
    "application/vnd.docker.distribution.manifest.v1+prettyjws"
)
"""Signed Docker schema 1 manifest (refused)."""

MANIFEST_MEDIA_TYPES = frozenset({MEDIA_TYPE_DOCKER_MANIFEST, MEDIA_TYPE_OCI_MANIFEST})
"""Media types of single-platform image manifests."""
INDEX_MEDIA_TYPES = frozenset({MEDIA_TYPE_DOCKER_MANIFEST_LIST, MEDIA_TYPE_OCI_INDEX})
"""Media types of multi-platform indexes."""
CONFIG_MEDIA_TYPES = frozenset({MEDIA_TYPE_DOCKER_CONFIG, MEDIA_TYPE_OCI_CONFIG})
"""Media types of image configs (other configs belong to artifacts)."""
FOREIGN_LAYER_MEDIA_TYPES = frozenset(
    {
        MEDIA_TYPE_DOCKER_FOREIGN_LAYER,
        MEDIA_TYPE_OCI_LAYER_NONDISTRIBUTABLE,
        MEDIA_TYPE_OCI_LAYER_NONDISTRIBUTABLE_GZIP,
        MEDIA_TYPE_OCI_LAYER_NONDISTRIBUTABLE_ZSTD,
    }
)
"""Layer media types whose blobs may live outside the registry (descriptor ``urls``)."""
LAYER_MEDIA_TYPES = frozenset(
    {
        MEDIA_TYPE_DOCKER_LAYER,
        MEDIA_TYPE_DOCKER_LAYER_GZIP,
        MEDIA_TYPE_DOCKER_LAYER_ZSTD,
        MEDIA_TYPE_OCI_LAYER,
        MEDIA_TYPE_OCI_LAYER_GZIP,
        MEDIA_TYPE_OCI_LAYER_ZSTD,
    }
    | FOREIGN_LAYER_MEDIA_TYPES
)
"""Image layer media types (an artifact's layers, such as in-toto statements, are others)."""
SCHEMA1_MEDIA_TYPES = frozenset(
    {MEDIA_TYPE_DOCKER_SCHEMA1_MANIFEST, MEDIA_TYPE_DOCKER_SCHEMA1_SIGNED_MANIFEST}
)
"""Docker schema 1 manifest types (all refused)."""

ACCEPT_MANIFEST_TYPES: tuple[str, ...] = (
    MEDIA_TYPE_OCI_INDEX,
    MEDIA_TYPE_OCI_MANIFEST,
    MEDIA_TYPE_DOCKER_MANIFEST_LIST,
    MEDIA_TYPE_DOCKER_MANIFEST,
)
"""What to send in ``Accept`` for manifests: all four, or registries hide OCI images."""

MAX_MANIFEST_BYTES = 4 * 1024 * 1024
"""Largest manifest or index body we read (the registry's own PUT limit)."""
MAX_CONFIG_BYTES = 4 * 1024 * 1024
"""Largest image config we read."""

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


@dataclass(frozen=True)
class ImageManifest:
    """A single-platform image manifest (OCI or Docker schema 2).

    ``raw`` holds the bytes exactly as served and ``digest`` is their sha256.
    ``layers`` may be empty here; whoever writes an archive must refuse that.
    """

    media_type: str
    config: Descriptor
    layers: tuple[Descriptor, ...]
    digest: Digest
    raw: bytes = field(repr=False)

    @property
    def size(self) -> int:
        """The size of the raw manifest."""
        return len(self.raw)

    def descriptor(self, platform: Platform | None = None) -> Descriptor:
        """A descriptor pointing at this manifest."""
        return Descriptor(self.media_type, self.digest, self.size, platform)


@dataclass(frozen=True)
class ImageIndex:
    """A multi-platform index (OCI image index or Docker manifest list)."""

    media_type: str
    manifests: tuple[Descriptor, ...]
    digest: Digest
    raw: bytes = field(repr=False)

    @property
    def size(self) -> int:
        """The size of the raw index."""
        return len(self.raw)

    def platforms(self) -> list[Descriptor]:
        """The entries that are images for a real platform (never attestations)."""
        return [d for d in self.manifests if d.platform is not None and not d.is_attestation]

    def descriptor(self) -> Descriptor:
        """A descriptor pointing at this index."""
        return Descriptor(self.media_type, self.digest, self.size)


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


def parse_manifest(raw: bytes, content_type: str | None) -> ImageManifest | ImageIndex:
    """Parse and validate a manifest or index as served with ``content_type``.

    Returns an :class:`ImageManifest` or :class:`ImageIndex` whose ``digest`` is
    the sha256 of ``raw``. Raises InvalidManifestError for anything oversized,
    malformed, ambiguous or unsupported (see the module docstring).
    """
    if not isinstance(raw, bytes | bytearray | memoryview):
        raise TypeError("raw must be bytes")
    raw = bytes(raw)
    if len(raw) > MAX_MANIFEST_BYTES:
        _invalid(f"manifest is too large ({len(raw)} bytes, limit {MAX_MANIFEST_BYTES})")

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


# --- image config ------------------------------------------------------------------


@dataclass(frozen=True)
class ImageConfig:
    """The parts of an image config the pull and ``inspect`` need.

    ``raw`` keeps the exact bytes (the image ID is their sha256, ``digest``).
    ``labels`` is read-only and not part of the hash.
    """

    raw: bytes = field(repr=False)
    digest: Digest
    diff_ids: tuple[Digest, ...]
    platform: Platform
    created: str | None = None
    entrypoint: tuple[str, ...] | None = None
    cmd: tuple[str, ...] | None = None
    env: tuple[str, ...] = ()
    labels: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}), hash=False)
    working_dir: str | None = None
    user: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.labels, MappingProxyType):
            object.__setattr__(self, "labels", _frozen_annotations(self.labels))


def _optional_strings(value: object) -> tuple[str, ...] | None:
    return None if value is None else tuple(strings(value))


def decode_config(raw: bytes) -> DecodedConfig:
    """Decode an image config as Docker does (:mod:`dockerdrag.gojson`) and check it.

    Requires at most ``MAX_CONFIG_BYTES``, ``rootfs.type == "layers"`` and
    ``rootfs.diff_ids`` a list of sha256 digests (possibly empty; the caller compares it
    with the layers). Raises InvalidManifestError otherwise.
    """
    if not isinstance(raw, bytes | bytearray | memoryview):
        raise TypeError("raw must be bytes")
    raw = bytes(raw)
    if len(raw) > MAX_CONFIG_BYTES:
        _invalid(f"image config is too large ({len(raw)} bytes, limit {MAX_CONFIG_BYTES})")
    decoded = decode_image_config(raw)
    if decoded.rootfs_type != "layers":
        _invalid(
            f"image config: unsupported rootfs.type {decoded.rootfs_type!r} (expected 'layers')"
        )
    return decoded


def image_config(decoded: DecodedConfig) -> ImageConfig:
    """What the pull and ``inspect`` show of a decoded config."""
    platform = Platform(
        os=decoded.os,
        architecture=decoded.string("architecture"),
        variant=decoded.string("variant") or None,
        os_version=decoded.os_version or None,
        os_features=decoded.os_features,
    ).normalized()
    container = decoded.container_config() or {}
    labels = container.get("Labels")
    created = decoded.created
    return ImageConfig(
        raw=decoded.raw,
        digest=Digest.of(decoded.raw),
        diff_ids=decoded.diff_ids,
        platform=platform,
        created=None if created == ZERO_TIME else created.format_rfc3339nano(),
        entrypoint=_optional_strings(container.get("Entrypoint")),
        cmd=_optional_strings(container.get("Cmd")),
        env=tuple(strings(container.get("Env"))),
        labels=MappingProxyType(
            {str(k): str(v) for k, v in labels.items()} if isinstance(labels, dict) else {}
        ),
        working_dir=str(container.get("WorkingDir", "")) or None,
        user=str(container.get("User", "")) or None,
    )


def parse_config(raw: bytes) -> ImageConfig:
    """:func:`decode_config`, then :func:`image_config`."""
    return image_config(decode_config(raw))
