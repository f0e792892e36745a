"""The media types of images: manifests, indexes, configs and layers, Docker's and OCI's.

What each family names a manifest, an index (manifest list), an image config and a layer
(plain, gzip, zstd; foreign/nondistributable ones whose blobs may live elsewhere), the sets
the parsers and writers test against, and the ``Accept`` a manifest request sends.
"""

from __future__ import annotations

__all__ = [
    "ACCEPT_MANIFEST_TYPES",
    "CONFIG_MEDIA_TYPES",
    "FOREIGN_LAYER_MEDIA_TYPES",
    "INDEX_MEDIA_TYPES",
    "LAYER_MEDIA_TYPES",
    "MANIFEST_MEDIA_TYPES",
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
]

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
