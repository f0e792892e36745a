"""The images of a verified archive as a push sees them: their names, documents and blobs.

:func:`pushable_images` takes what :func:`~dockerdrag.verify.verify_archive` found (every
member hashed, every reference between them checked, in one pass) and says what to push:

* from an **OCI image layout** (``index.json``: ``--format oci``/``oci-dir``, Docker 25+
  ``docker save``, any layout) each ``index.json`` entry, named by its
  ``io.containerd.image.name`` annotation (or ``org.opencontainers.image.ref.name``), with
  its manifests and indexes as stored (children first) and the blobs they list. A sparse
  layout (an index whose manifests are not all stored) is refused: a registry refuses
  such an index too;
* from a **legacy docker archive** (``manifest.json`` only: ``--format docker``, ``docker
  save`` up to Docker 24), and from a Docker 25/26 layout whose OCI manifests list no
  layers, each ``manifest.json`` entry: its names, config and uncompressed layers.

Each blob is a :class:`~dockerdrag.upload.BlobSource`: where its bytes lie on disk (a
member's data inside the tar, or a file of the layout directory).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from .archive_scan import ArchiveMember
from .digest import Digest
from .errors import InvalidManifestError, Remedy, Setting, UsageError
from .layers import Compression
from .manifest import ImageIndex, ImageManifest
from .upload import BlobSource
from .verify import VerifiedArchive

__all__ = [
    "ANNOTATION_IMAGE_NAME",
    "ANNOTATION_REF_NAME",
    "LayoutImage",
    "LegacyImage",
    "PushableImage",
    "pushable_images",
]

ANNOTATION_IMAGE_NAME = "io.containerd.image.name"
ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name"
_MAX_DEPTH = 4


@dataclass(frozen=True)
class LayoutImage:
    """One ``index.json`` entry: pushed as the archive's own manifest and index bytes."""

    names: tuple[str, ...]
    root: ImageManifest | ImageIndex
    documents: tuple[ImageManifest | ImageIndex, ...]  # children first, ``root`` last
    blobs: tuple[BlobSource, ...]  # configs and stored layers, each once

    @property
    def key(self) -> str:
        """The image's digest, by which ``--image`` may name it."""
        return str(self.root.digest)


@dataclass(frozen=True)
class LegacyImage:
    """One ``manifest.json`` entry: its layers are gzipped again and a manifest written."""

    names: tuple[str, ...]
    config_raw: bytes
    config: BlobSource
    layers: tuple[BlobSource, ...]  # uncompressed layer tars, in the diff_ids' order
    diff_ids: tuple[Digest, ...]

    @property
    def key(self) -> str:
        """The image ID (the config's digest), by which ``--image`` may name it."""
        return str(self.config.digest)


PushableImage = LayoutImage | LegacyImage


def _source(archive: VerifiedArchive, member: ArchiveMember) -> BlobSource:
    if archive.path.is_dir():
        return BlobSource(member.digest, member.size, archive.path / member.name)
    assert member.offset is not None  # an uncompressed tar: every member has its offset
    return BlobSource(member.digest, member.size, archive.path, member.offset)


def _walk(
    archive: VerifiedArchive, document: ImageManifest | ImageIndex, depth: int = 0
) -> Iterator[ImageManifest | ImageIndex]:
    """``document`` and every manifest and index under it, children first."""
    if depth > _MAX_DEPTH:
        raise InvalidManifestError(f"{archive.path}: indexes nested too deep")
    if isinstance(document, ImageIndex):
        for child in document.manifests:
            yield from _walk(archive, archive.manifests[child.digest], depth + 1)
    yield document


def _layout_image(
    archive: VerifiedArchive, root: ImageManifest | ImageIndex, names: tuple[str, ...]
) -> LayoutImage:
    documents = tuple(dict.fromkeys(_walk(archive, root)))
    blobs: dict[Digest, BlobSource] = {}
    for document in documents:
        if isinstance(document, ImageManifest):
            for blob in (document.config, *document.layers):
                member = archive.blobs.get(blob.digest)
                if member is not None:  # else a foreign layer: the registry is told its URLs
                    blobs.setdefault(blob.digest, _source(archive, member))
    return LayoutImage(names, root, documents, tuple(blobs.values()))


def _sparse_error(archive: VerifiedArchive) -> InvalidManifestError:
    missing = archive.missing[0]
    what = "attestation manifest" if missing.is_attestation else "manifest"
    platform = f" ({missing.platform})" if missing.platform else ""
    every_platform = Remedy(Setting.PLATFORM, "all")
    attestations = Remedy(Setting.INCLUDE_ATTESTATIONS)
    return InvalidManifestError(
        f"{archive.path}: an index lists the {what} {missing.digest}{platform}, which the "
        f"archive does not hold ({len(archive.missing)} missing); a registry refuses an index "
        f"whose manifests are missing. Pull it again with {every_platform} "
        f"{attestations}, or push a single platform's image"
    ).suggesting(every_platform, attestations)


def _layout_images(archive: VerifiedArchive) -> list[PushableImage]:
    assert archive.index is not None
    if archive.missing:
        raise _sparse_error(archive)
    images: list[PushableImage] = []
    for entry in archive.index.manifests:
        full = entry.annotations.get(ANNOTATION_IMAGE_NAME)
        short = entry.annotations.get(ANNOTATION_REF_NAME)
        names = tuple(name for name in (full or short,) if name)
        images.append(_layout_image(archive, archive.manifests[entry.digest], names))
    return images


def _legacy_images(archive: VerifiedArchive) -> list[PushableImage]:
    return [
        LegacyImage(
            image.repo_tags,
            image.config_raw,
            _source(archive, image.config),
            tuple(_source(archive, layer) for layer in image.layers),
            image.diff_ids,
        )
        for image in archive.images
    ]


def _layerless(archive: VerifiedArchive) -> bool:
    """Whether the layout's manifests leave their layers to ``manifest.json`` (Docker 25, 26)."""
    return any(
        isinstance(document, ImageManifest) and not document.layers
        for document in archive.manifests.values()
    )


def pushable_images(archive: VerifiedArchive) -> list[PushableImage]:
    """The images of a verified archive, ready to push (see the module docstring)."""
    if archive.compression is not Compression.NONE:
        raise UsageError(
            f"{archive.path} is a compressed archive; decompress it first (a push reads each "
            "blob from where it lies in the tar)"
        )
    if archive.index is not None and not (_layerless(archive) and archive.images):
        images = _layout_images(archive)
    else:
        images = _legacy_images(archive)
    if not images:
        raise InvalidManifestError(f"{archive.path} holds no images")
    return images
