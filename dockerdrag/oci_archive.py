"""The ``--format oci`` and ``--format oci-dir`` writers: an OCI image layout of the pulled blobs.

``--format oci`` writes ONE tar that is at once

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

``--format oci-dir`` writes the same layout as a directory (``manifest.json`` and
``repositories`` included: harmless there, and the tree matches the tar's), built in a
temp directory beside the target and renamed into place.

Layout rules:

* Blobs are stored once each, however many images share them. A blob file is checked
  while copied: its size, and its digest unless ``before_blob`` says it was verified a
  moment ago (a cache file could have been altered since an earlier run); see
  :mod:`dockerdrag.blob_copy` for how the bytes are copied.
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

Readers (checked in the tests): skopeo 1.9 reads the tar both as ``oci-archive:`` and as
``docker-archive:`` and the directory as ``oci:``, but finds an ``index.json`` entry by
tag (``oci:DIR:TAG``) only for OCI media types, not for Docker schema 2 manifests or
lists (a single entry is read without a tag). umoci 0.4 lists the tags of any layout but
``umoci stat``/``unpack`` handle only OCI single-platform manifests.

Determinism (format sections 4.1 and 6.5): entries in a sorted depth-first walk (``blobs/``,
``blobs/sha256/``, the blobs by hex, ``index.json``, ``manifest.json``, ``oci-layout``,
``repositories``), Docker 24+ USTAR headers, and fixed mtimes: config and layer blobs
get their image's ``created`` (0 if absent, before 1970 or past 2242), ``blobs/`` that of
the last image, everything else 0. The same input always gives the same bytes.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from .blob_copy import BlobCallback, BlobFile, ChunkCallback, copy_blob_into_tar, copy_blob_to_file
from .digest import Digest
from .errors import (
    DigestMismatchError,
    InvalidManifestError,
    InvalidReferenceError,
    OutputError,
    SizeMismatchError,
    UsageError,
)
from .gojson import DecodedConfig, decode_image_config, encode_value, go_map_order
from .manifest import MEDIA_TYPE_OCI_INDEX, Descriptor, ImageIndex, ImageManifest
from .osfiles import fsync_dir, move_dir_into_place
from .outputs import check_layout_dir
from .reference import Reference
from .store import describe_os_error
from .tarwriter import (
    MAX_OCTAL_11,
    TYPE_FILE,
    TarOutput,
    TarWriter,
    build_header,
    padding_for,
)

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

OCI_LAYOUT_BYTES: Final = b'{"imageLayoutVersion": "1.0.0"}'
"""The exact content of the ``oci-layout`` file (as Docker writes it, no newline)."""
ANNOTATION_REF_NAME: Final = "org.opencontainers.image.ref.name"
"""``index.json`` annotation holding the tag (``latest``)."""
ANNOTATION_IMAGE_NAME: Final = "io.containerd.image.name"
"""``index.json`` annotation holding the full name (``docker.io/library/busybox:latest``)."""

_HEADER_FLAVOUR: Final = "24"  # Docker 24+: no file-type bits, empty uname/gname
_BLOB_PREFIX: Final = "blobs/sha256/"


# ---------------------------------------------------------------------------
# Public input types
# ---------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------
# The plan: what goes into the layout
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Blob:
    """One blob: in memory (``data``) or in a file (``path``), ``size`` bytes."""

    digest: Digest
    size: int
    mtime: int
    data: bytes | None = None
    path: Path | None = None


@dataclass
class _DockerItem:
    """One ``manifest.json`` entry."""

    config: Digest
    layers: tuple[Digest, ...]
    tags: list[Reference]
    layer_sources: dict[Digest, Descriptor]
    top_diff_id: Digest | None


@dataclass
class _Layout:
    """Everything to write, whatever the container (tar or directory)."""

    blobs: dict[Digest, _Blob] = field(default_factory=dict)
    index_entries: list[dict[str, object]] = field(default_factory=list)
    items: list[_DockerItem] = field(default_factory=list)
    blobs_mtime: int = 0
    tag_targets: dict[str, Digest] = field(default_factory=dict)

    def add_blob(self, blob: _Blob) -> None:
        """Store ``blob`` unless a blob with its digest is already stored."""
        self.blobs.setdefault(blob.digest, blob)

    def add_item(self, item: _DockerItem) -> None:
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


def _add_index_entries(layout: _Layout, target: Descriptor, refs: Sequence[Reference]) -> None:
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


def _add_manifest_blobs(layout: _Layout, item: OciManifest, mtime: int) -> bool:
    """Store the manifest, config and layer blobs; False if a foreign layer is missing."""
    manifest = item.manifest
    layout.add_blob(_Blob(manifest.digest, manifest.size, 0, data=manifest.raw))
    config = manifest.config
    layout.add_blob(_Blob(config.digest, config.size, mtime, data=item.config_raw))
    complete = True
    for layer in manifest.layers:
        path = item.blob_paths.get(layer.digest)
        if path is None:
            if not layer.is_foreign:
                raise ValueError(f"no blob file for layer {layer.digest}")
            complete = False
            continue
        layout.add_blob(_Blob(layer.digest, layer.size, mtime, path=path))
    return complete


def _docker_item(manifest: ImageManifest, diff_ids: Sequence[Digest]) -> _DockerItem:
    """The ``manifest.json`` entry of a manifest whose blobs are all stored."""
    sources = {
        diff_id: layer
        for layer, diff_id in zip(manifest.layers, diff_ids, strict=True)
        if layer.is_foreign
    }
    return _DockerItem(
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


def _add_image(layout: _Layout, image: OciImage, include_attestations: bool) -> None:
    """Plan one image: index entries, blobs and ``manifest.json`` entries."""
    refs = _tagged_references(image.tags)
    target = _target(image)
    _add_index_entries(layout, target, refs)
    if image.index is not None:
        layout.add_blob(_Blob(image.index.digest, image.index.size, 0, data=image.index.raw))
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


def _plan(images: Sequence[OciImage], include_attestations: bool) -> _Layout:
    if not images:
        raise UsageError("no images to save")
    layout = _Layout()
    for image in images:
        _add_image(layout, image, include_attestations)
    return layout


# ---------------------------------------------------------------------------
# JSON documents (Go's encoding/json output: compact, HTML-safe escaping)
# ---------------------------------------------------------------------------


def _blob_name(digest: Digest) -> str:
    return _BLOB_PREFIX + digest.hex


def _index_json(layout: _Layout) -> bytes:
    """``index.json`` as Docker 25+ writes it: compact, no trailing newline."""
    document = {
        "schemaVersion": 2,
        "mediaType": MEDIA_TYPE_OCI_INDEX,
        "manifests": layout.index_entries,
    }
    return encode_value(document).encode("utf-8")


def _layer_source(layer: Descriptor) -> dict[str, object]:
    """A distribution descriptor in Docker's member order (mediaType, size, digest, ...)."""
    source: dict[str, object] = {
        "mediaType": layer.media_type,
        "size": layer.size,
        "digest": str(layer.digest),
    }
    if layer.urls:
        source["urls"] = list(layer.urls)
    if layer.annotations:
        source["annotations"] = go_map_order(layer.annotations)
    return source


def _manifest_entry(item: _DockerItem) -> dict[str, object]:
    entry: dict[str, object] = {
        "Config": _blob_name(item.config),
        "RepoTags": [ref.familiar_tagged() for ref in item.tags] or None,
        "Layers": [_blob_name(digest) for digest in item.layers],
    }
    if item.layer_sources:
        entry["LayerSources"] = go_map_order(
            {str(k): _layer_source(v) for k, v in item.layer_sources.items()}
        )
    return entry


def _manifest_json(layout: _Layout) -> bytes:
    """``manifest.json``: Go's ``json.Encoder`` output, one trailing newline."""
    return (encode_value([_manifest_entry(item) for item in layout.items]) + "\n").encode("utf-8")


def _repositories_json(layout: _Layout) -> bytes | None:
    """``repositories`` (familiar name -> tag -> top diff_id hex), or None if untagged."""
    repositories: dict[str, dict[str, object]] = {}
    for item in layout.items:
        if item.top_diff_id is None:
            continue
        for ref in item.tags:
            assert ref.tag is not None
            repositories.setdefault(ref.familiar_name, {})[ref.tag] = item.top_diff_id.hex
    if not repositories:
        return None
    sorted_repos = go_map_order({name: go_map_order(tags) for name, tags in repositories.items()})
    return (encode_value(sorted_repos) + "\n").encode("utf-8")


def _metadata_files(layout: _Layout) -> list[tuple[str, bytes]]:
    """The top-level files, in tar order (sorted by name)."""
    files = [
        ("index.json", _index_json(layout)),
        ("manifest.json", _manifest_json(layout)),
        ("oci-layout", OCI_LAYOUT_BYTES),
    ]
    repositories = _repositories_json(layout)
    if repositories is not None:
        files.append(("repositories", repositories))
    return files


# ---------------------------------------------------------------------------
# Copying blob files
# ---------------------------------------------------------------------------


def _write_tar_blob(
    out: TarOutput,
    tar: TarWriter,
    blob: _Blob,
    on_chunk: ChunkCallback | None,
    before_blob: BlobCallback | None,
) -> None:
    """One ``blobs/sha256/<hex>`` entry; a file is streamed under a header of known size."""
    name = _blob_name(blob.digest)
    if blob.data is not None:
        tar.add_bytes(name, blob.data, blob.mtime)
        return
    assert blob.path is not None
    out.write(
        build_header(name, TYPE_FILE, size=blob.size, mtime=blob.mtime, flavour=_HEADER_FLAVOUR)
    )
    copy_blob_into_tar(out, BlobFile(blob.digest, blob.size, blob.path), on_chunk, before_blob)
    out.write(b"\0" * padding_for(blob.size))


# ---------------------------------------------------------------------------
# Public writers
# ---------------------------------------------------------------------------


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
    layout = _plan(images, include_attestations)
    tar = TarWriter(out, _HEADER_FLAVOUR)
    tar.add_directory("blobs/", layout.blobs_mtime)
    tar.add_directory(_BLOB_PREFIX, 0)
    for digest in sorted(layout.blobs):
        _write_tar_blob(out, tar, layout.blobs[digest], on_chunk, before_blob)
    for name, data in _metadata_files(layout):
        tar.add_bytes(name, data, 0)
    tar.finish()


def _write_file(path: Path, data: bytes, mtime: int) -> None:
    """Write and fsync one file, then set its mtime."""
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.utime(path, (mtime, mtime))


def _fill_dir(
    root: Path,
    root_mode_limit: int,
    layout: _Layout,
    on_chunk: ChunkCallback | None,
    before_blob: BlobCallback | None,
) -> None:
    """Write the layout below ``root`` (an empty directory), whose mode gets no bit
    ``root_mode_limit`` lacks."""
    blob_dir = root / _BLOB_PREFIX
    blob_dir.mkdir(parents=True)
    for digest in sorted(layout.blobs):
        blob = layout.blobs[digest]
        path = blob_dir / digest.hex
        if blob.data is not None:
            _write_file(path, blob.data, blob.mtime)
            continue
        assert blob.path is not None
        copy_blob_to_file(path, BlobFile(digest, blob.size, blob.path), on_chunk, before_blob)
        os.utime(path, (blob.mtime, blob.mtime))
    for name, data in _metadata_files(layout):
        _write_file(root / name, data, 0)
    os.utime(blob_dir, (0, 0))
    os.utime(root / "blobs", (layout.blobs_mtime, layout.blobs_mtime))
    # mkdtemp made the root private while it was written; it gets the mode mkdir gave
    # the directories inside it under the umask, without a bit an empty directory it
    # replaces lacks.
    os.chmod(root, stat.S_IMODE((root / "blobs").stat().st_mode) & root_mode_limit)


def _move_into_place(temp: Path, target: Path) -> None:
    """Rename the finished ``temp`` onto ``target`` (absent or an empty directory)."""
    try:
        move_dir_into_place(temp, target)
    except OSError as exc:
        if exc.errno in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR, errno.EISDIR):
            raise OutputError(f"output directory {target} exists and is not empty") from exc
        raise
    fsync_dir(target.parent if str(target.parent) else Path("."))


def write_oci_dir(
    target: Path | str,
    images: Sequence[OciImage],
    *,
    include_attestations: bool = False,
    on_chunk: ChunkCallback | None = None,
    before_blob: BlobCallback | None = None,
) -> None:
    """Write ``images`` as an OCI layout directory at ``target`` (``--format oci-dir``).

    The layout is built in a hidden temp directory beside ``target`` and renamed into
    place only when complete; ``target`` must be absent or an empty directory
    (OutputError otherwise). On any error nothing is left behind. Verification and
    errors are as for :func:`write_oci_archive`.
    """
    target = Path(target)
    layout = _plan(images, include_attestations)
    check_layout_dir(target)
    parent = target.parent if str(target.parent) else Path(".")
    try:
        temp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial", dir=parent))
    except OSError as exc:
        raise OutputError(describe_os_error(exc, f"creating a directory in {parent}")) from exc
    try:
        replaced_mode = stat.S_IMODE(target.stat().st_mode) if target.is_dir() else 0o777
        _fill_dir(temp, replaced_mode, layout, on_chunk, before_blob)
        _move_into_place(temp, target)
    except OSError as exc:
        shutil.rmtree(temp, ignore_errors=True)
        raise OutputError(describe_os_error(exc, f"writing {target}")) from exc
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
