"""The ``--format oci`` writer: one tar that is an OCI image layout and a Docker archive.

The tar is at once

* an **OCI image layout**: ``oci-layout`` (exactly ``{"imageLayoutVersion": "1.0.0"}``),
  ``index.json`` and ``blobs/sha256/<hex>``, holding the registry's own manifest (and
  index), config and *compressed* layer blobs, byte for byte as pulled, so every digest
  is the registry's; and
* a **Docker archive**: ``manifest.json`` (``Config``, ``RepoTags``, ``Layers`` pointing
  into ``blobs/sha256/``) and ``repositories``, in the Docker 25+ shape (format section 6)
  except that the layers stay compressed, as the containerd exporter writes them
  (format section 7).

``docker load`` follows only ``manifest.json`` and decompresses each layer file by its
magic bytes (format section 9), so gzip and uncompressed layers load in Docker 20.10 and
later. **zstd layers do not load in Docker 20.10** (it fails with ``unexpected EOF``);
Docker 23.0+ reads them. The archive is still a valid OCI layout either way.
``skopeo``/``podman`` read it as ``oci-archive:FILE`` and as ``docker-archive:FILE``.
What goes in it is planned by :mod:`dockerdrag.oci_layout` (the layout rules), its JSON
documents come from :mod:`dockerdrag.oci_documents`; ``--format oci-dir`` writes the
same layout as a directory (:mod:`dockerdrag.oci_dir`).

A blob file is checked while copied: its size, and its digest unless ``before_blob``
says it was verified a moment ago (a cache file could have been altered since an earlier
run); see :mod:`dockerdrag.blob_copy` for how the bytes are copied.

Readers (checked in the tests): skopeo 1.9 reads the tar both as ``oci-archive:`` and as
``docker-archive:`` and the directory as ``oci:``, but finds an ``index.json`` entry by
tag (``oci:DIR:TAG``) only for OCI media types, not for Docker schema 2 manifests or
lists (a single entry is read without a tag). umoci 0.4 lists the tags of any layout but
``umoci stat``/``unpack`` handle only OCI single-platform manifests.

Determinism (format sections 4.1 and 6.5): entries in a sorted depth-first walk (``blobs/``,
``blobs/sha256/``, the blobs by hex, ``index.json``, ``manifest.json``, ``oci-layout``,
``repositories``), Docker 24+ USTAR headers, and the plan's fixed mtimes. The same input
always gives the same bytes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from .blob_copy import BlobCallback, BlobFile, ChunkCallback, copy_blob_into_tar
from .oci_dir import write_oci_dir
from .oci_documents import BLOB_PREFIX, OCI_LAYOUT_BYTES, blob_name, metadata_files
from .oci_layout import (
    ANNOTATION_IMAGE_NAME,
    ANNOTATION_REF_NAME,
    OciImage,
    OciManifest,
    PlannedBlob,
    plan_layout,
)
from .tarwriter import TYPE_FILE, TarOutput, TarWriter, build_header, padding_for

__all__ = [
    "ANNOTATION_IMAGE_NAME",
    "ANNOTATION_REF_NAME",
    "OCI_LAYOUT_BYTES",
    "BlobCallback",
    "ChunkCallback",
    "OciImage",
    "OciManifest",
    "write_oci_archive",
    "write_oci_dir",
]

_HEADER_FLAVOUR: Final = "24"  # Docker 24+: no file-type bits, empty uname/gname


def _write_tar_blob(
    out: TarOutput,
    tar: TarWriter,
    blob: PlannedBlob,
    on_chunk: ChunkCallback | None,
    before_blob: BlobCallback | None,
) -> None:
    """One ``blobs/sha256/<hex>`` entry; a file is streamed under a header of known size."""
    name = blob_name(blob.digest)
    if blob.data is not None:
        tar.add_bytes(name, blob.data, blob.mtime)
        return
    assert blob.path is not None
    out.write(
        build_header(name, TYPE_FILE, size=blob.size, mtime=blob.mtime, flavour=_HEADER_FLAVOUR)
    )
    copy_blob_into_tar(out, BlobFile(blob.digest, blob.size, blob.path), on_chunk, before_blob)
    out.write(b"\0" * padding_for(blob.size))


def write_oci_archive(
    out: TarOutput,
    images: Sequence[OciImage],
    *,
    include_attestations: bool = False,
    on_chunk: ChunkCallback | None = None,
    before_blob: BlobCallback | None = None,
) -> None:
    """Write ``images`` as one OCI-layout + Docker tar (``--format oci``) to ``out``.

    ``out`` need not be seekable. Blob files are checked as they are copied
    (:mod:`dockerdrag.blob_copy`: DigestMismatchError / SizeMismatchError); a config must
    match its descriptor too.
    Configs of loadable images are decoded as Docker does (InvalidManifestError if Docker
    would refuse them). On any error the bytes written so far are not an archive: write to
    a temporary file (``store.atomic_output(path).sequential()``). ``on_chunk`` sees the
    size of each piece of a blob copied (and may raise to stop);
    ``before_blob`` is called before each blob file is opened (the pull uses it to wait
    for blobs still downloading, so writing overlaps the download).
    Layers stay as pulled: gzip ones load in Docker 20.10, zstd ones only in 23.0+.
    """
    layout = plan_layout(images, include_attestations)
    tar = TarWriter(out, _HEADER_FLAVOUR)
    tar.add_directory("blobs/", layout.blobs_mtime)
    tar.add_directory(BLOB_PREFIX, 0)
    for digest in sorted(layout.blobs):
        _write_tar_blob(out, tar, layout.blobs[digest], on_chunk, before_blob)
    for name, data in metadata_files(layout):
        tar.add_bytes(name, data, 0)
    tar.finish()
