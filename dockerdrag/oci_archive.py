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

A pull writes the tar in regions (:func:`write_oci_archive_in_regions`): every member's
offset follows from the sizes, so each blob file is copied into its place as soon as its
download ends, whatever blobs before it in the tar are still downloading.
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

import contextlib
import io
import logging
import threading
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Final

from .blob_copy import (
    ArrivingBlob,
    BlobCallback,
    BlobFile,
    ChunkCallback,
    ReadyCallback,
    copy_arriving_blob,
    copy_blob_into_tar,
)
from .blob_follow import FollowLost
from .digest import Digest
from .direct_regions import DirectRegionFile
from .oci_dir import write_oci_dir
from .oci_documents import BLOB_PREFIX, OCI_LAYOUT_BYTES, blob_name, metadata_files
from .oci_layout import (
    ANNOTATION_IMAGE_NAME,
    ANNOTATION_REF_NAME,
    LayoutPlan,
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
    "ArrivingCallback",
    "BlobCallback",
    "ChunkCallback",
    "OciImage",
    "OciManifest",
    "ReadyCallback",
    "write_oci_archive",
    "write_oci_archive_in_regions",
    "write_oci_dir",
]

log = logging.getLogger("dockerdrag")

_HEADER_FLAVOUR: Final = "24"  # Docker 24+: no file-type bits, empty uname/gname

ArrivingCallback = Callable[[Collection[Digest]], tuple[Digest, ArrivingBlob | None]]
"""Blocks until one of the blobs named is ready or arriving; returns it, with a reader of
its bytes as they arrive when it is still downloading (None: it is ready)."""


def _write_members(
    out: TarOutput, layout: LayoutPlan, write_blob_file: Callable[[PlannedBlob], None]
) -> None:
    """The tar of ``layout`` front to back; ``write_blob_file`` writes the data of each blob
    kept in a file (exactly its size: the header before and the padding after are here)."""
    tar = TarWriter(out, _HEADER_FLAVOUR)
    tar.add_directory("blobs/", layout.blobs_mtime)
    tar.add_directory(BLOB_PREFIX, 0)
    for digest in sorted(layout.blobs):
        blob = layout.blobs[digest]
        name = blob_name(digest)
        if blob.data is not None:
            tar.add_bytes(name, blob.data, blob.mtime)
            continue
        header = build_header(
            name, TYPE_FILE, size=blob.size, mtime=blob.mtime, flavour=_HEADER_FLAVOUR
        )
        out.write(header)
        write_blob_file(blob)
        out.write(bytes(padding_for(blob.size)))
    for name, data in metadata_files(layout):
        tar.add_bytes(name, data, 0)
    tar.finish()


class _Skeleton:
    """The tar without the blob files' data: the bytes around them (headers, padding, the
    small files) as runs at their offsets, and the offset where each blob file goes."""

    def __init__(self) -> None:
        self.runs: list[tuple[int, bytearray]] = []
        self.holes: dict[Digest, tuple[int, PlannedBlob]] = {}
        self._pos = 0

    def write(self, data: bytes, /) -> int:
        if self.runs and self.runs[-1][0] + len(self.runs[-1][1]) == self._pos:
            self.runs[-1][1].extend(data)
        else:
            self.runs.append((self._pos, bytearray(data)))
        self._pos += len(data)
        return len(data)

    def leave_hole(self, blob: PlannedBlob) -> None:
        """Note where ``blob``'s data goes and skip it."""
        self.holes[blob.digest] = (self._pos, blob)
        self._pos += blob.size

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = 0, /) -> int:
        raise io.UnsupportedOperation("the tar skeleton is written front to back")


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

    def copy_blob_file(blob: PlannedBlob) -> None:
        assert blob.path is not None
        source = BlobFile(blob.digest, blob.size, blob.path)
        copy_blob_into_tar(out, source, on_chunk, before_blob)

    _write_members(out, layout, copy_blob_file)


def write_oci_archive_in_regions(
    out: DirectRegionFile,
    images: Sequence[OciImage],
    *,
    include_attestations: bool = False,
    on_chunk: ChunkCallback | None = None,
    before_blob: BlobCallback | None = None,
    next_ready: ReadyCallback | None = None,
    next_arriving: ArrivingCallback | None = None,
    copiers: int = 1,
) -> None:
    """Write the same tar as :func:`write_oci_archive` into the empty file ``out``, each
    blob file's data copied into its region as soon as the blob is ready.

    Every member's offset follows from the sizes in the plan, so the bytes around the
    blob files are written first and each blob file is copied, checked, into its
    region; ``next_ready`` picks the next one among those left (by default, in digest
    order). A copy starts as soon as its blob is ready, however many blobs before it
    in the tar are still downloading. With ``next_arriving`` (which replaces
    ``next_ready``) a blob may also be copied while it downloads, from the reader it
    hands out (:func:`~dockerdrag.blob_copy.copy_arriving_blob`); if its download starts
    over under the copy, the verified file is copied again. Up to ``copiers`` threads
    (this one among them) copy at once, each choosing its next blob in turn, so blobs
    that download side by side are copied side by side as they arrive. Errors are as
    for :func:`write_oci_archive` (the first copier's to fail; the others stop at their
    next piece).
    """
    layout = plan_layout(images, include_attestations)
    skeleton = _Skeleton()
    _write_members(skeleton, layout, skeleton.leave_hole)
    for offset, run in skeleton.runs:
        out.write_at(bytes(run), offset)
    holes = skeleton.holes
    choosing = threading.Lock()
    failed = threading.Event()

    def check(size: int) -> None:
        if failed.is_set():
            raise _Stopped
        if on_chunk is not None:
            on_chunk(size)

    def next_hole() -> tuple[int, BlobFile, ArrivingBlob | None] | None:
        """The next blob to copy (one copier at a time chooses); None once none is left."""
        with choosing:
            if not holes or failed.is_set():
                return None
            arriving: ArrivingBlob | None = None
            if next_arriving is not None:
                digest, arriving = next_arriving(holes.keys())
            else:
                digest = next_ready(holes.keys()) if next_ready is not None else min(holes)
            offset, blob = holes.pop(digest)
        assert blob.path is not None
        return offset, BlobFile(blob.digest, blob.size, blob.path), arriving

    errors: list[BaseException] = []  # in the order the copiers failed

    def copy_blobs() -> None:
        try:
            while (hole := next_hole()) is not None:
                offset, source, arriving = hole
                if arriving is not None and _copy_arriving(out, offset, source, arriving, check):
                    continue
                with out.region(offset) as region:
                    copy_blob_into_tar(region, source, check, before_blob)
                    region.finish()
        except BaseException as error:
            errors.append(error)
            failed.set()

    helpers = min(copiers, len(holes)) - 1
    if helpers > 0:
        with ThreadPoolExecutor(helpers, thread_name_prefix="dockerdrag-oci-copy") as pool:
            for _ in range(helpers):
                pool.submit(copy_blobs)
            copy_blobs()
    else:
        copy_blobs()
    first = next((error for error in errors if not isinstance(error, _Stopped)), None)
    if first is not None:
        raise first


class _Stopped(Exception):
    """Raised in a copier once another one failed (that one's error is raised)."""


def _copy_arriving(
    out: DirectRegionFile,
    offset: int,
    blob: BlobFile,
    arriving: ArrivingBlob,
    on_chunk: ChunkCallback | None,
) -> bool:
    """Copy ``blob`` into its region at ``offset`` as it arrives; False when its download
    started over under the copy (the region is then left for a copy of the verified file)."""
    with contextlib.closing(arriving), out.region(offset) as region:
        try:
            intact = copy_arriving_blob(region, blob, arriving, on_chunk)
        except FollowLost:
            intact = False
        if not intact:
            log.info(
                "blob %s: its download started over under its copy into the archive; "
                "copying the verified blob",
                blob.digest.short,
            )
            return False
        region.finish()
    return True
