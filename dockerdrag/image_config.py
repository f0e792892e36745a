"""Image configs: decoded the way Docker's Go code decodes them, and what a pull shows of them.

A config is decoded by :mod:`gojson` (case-insensitive keys, later duplicates win or
merge, invalid UTF-8 replaced byte by byte), so that what we read agrees with what
``docker load`` will read; only what the pull needs is checked: at most
:data:`MAX_CONFIG_BYTES`, ``rootfs.type == "layers"`` and ``rootfs.diff_ids`` sha256
digests. Every failure raises InvalidManifestError. Nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from .digest import Digest
from .errors import InvalidManifestError
from .gojson import ZERO_TIME, DecodedConfig, decode_image_config, strings
from .manifest import bounded_bytes
from .platform import Platform

__all__ = [
    "MAX_CONFIG_BYTES",
    "ImageConfig",
    "decode_config",
    "image_config",
    "parse_config",
]

MAX_CONFIG_BYTES = 4 * 1024 * 1024
"""Largest image config we read."""


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
            object.__setattr__(self, "labels", MappingProxyType(dict(self.labels)))


def _optional_strings(value: object) -> tuple[str, ...] | None:
    return None if value is None else tuple(strings(value))


def decode_config(raw: bytes) -> DecodedConfig:
    """Decode an image config as Docker does (:mod:`dockerdrag.gojson`) and check it.

    Requires at most ``MAX_CONFIG_BYTES``, ``rootfs.type == "layers"`` and
    ``rootfs.diff_ids`` a list of sha256 digests (possibly empty; the caller compares it
    with the layers). Raises InvalidManifestError otherwise.
    """
    raw = bounded_bytes(raw, MAX_CONFIG_BYTES, "image config")
    decoded = decode_image_config(raw)
    if decoded.rootfs_type != "layers":
        raise InvalidManifestError(
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
