"""Verify a carried image archive without a network and without unpacking it.

:func:`verify_archive` reads the archive once (:mod:`dockerdrag.archive_scan`) and
then checks what the members say about each other:

* every ``blobs/sha256/<hex>`` (and a legacy ``<hex>.json`` config) hashes to its name;
* ``index.json`` (with ``oci-layout``): every descriptor it reaches, manifests and
  indexes and configs and layers, is stored with its size and digest; an image's
  config lists one ``rootfs.diff_ids`` entry per layer and each layer's uncompressed
  bytes hash to it. Entries of a *stored index* whose manifests are absent make the
  layout sparse (``VerifiedArchive.missing``), which is not an error unless
  ``require_complete``; a foreign layer may be absent;
* ``manifest.json``: each entry's ``Config`` and ``Layers`` are members, the config's
  diff_ids match the layers' uncompressed digests one to one, and the names agree
  with ``repositories`` and with ``index.json``'s image-name annotations.

Formats: ``docker save`` of Docker 20.10-24 (``<id>/layer.tar``, symlinked
duplicates), Docker 25+ (an OCI layout plus ``manifest.json``; Docker 25 and 26 write
OCI manifests that list no layers, whose layers are checked through ``manifest.json``),
every format dockerdrag writes, OCI layouts as a tar or a directory, and any of these
tars compressed. The first problem found is raised: CorruptArchiveError (missing or
damaged member), DigestMismatchError, SizeMismatchError, DiffIDMismatchError or
InvalidManifestError, all IntegrityError (exit code 6), naming the member.
"""

from __future__ import annotations

import io
import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from types import MappingProxyType
from typing import Any, BinaryIO, Final, cast

import anyio

from .archive_scan import ArchiveMember, Scan, scan_archive
from .digest import Digest
from .errors import (
    CorruptArchiveError,
    DigestMismatchError,
    InvalidManifestError,
    InvalidReferenceError,
)
from .image_config import parse_config
from .layers import Compression
from .manifest import Descriptor, ImageIndex, ImageManifest
from .oci_layout import ANNOTATION_IMAGE_NAME, ANNOTATION_REF_NAME
from .platform import Platform
from .reference import Reference
from .verify_layout import (
    BLOB_NAME,
    LEGACY_CONFIG_NAME,
    LayoutWalk,
    check_layer,
    check_names,
    json_member,
    known_fields,
    parse_member,
    required_member,
    walk_index,
)

__all__ = [
    "PROGRESS_INTERVAL",
    "ArchiveImage",
    "VerificationCancelled",
    "VerifiedArchive",
    "check_archive",
    "summary_json",
    "verify_archive",
]

PROGRESS_INTERVAL: Final = 0.2
"""Seconds between two progress reports of :func:`verify_archive`."""

# The fields Docker's manifest.json entries have. The file is not content-addressed: a
# damaged key would go unseen, so any other key is refused.
_MANIFEST_JSON_FIELDS: Final = frozenset({"Config", "RepoTags", "Layers", "Parent", "LayerSources"})


@dataclass(frozen=True)
class ArchiveImage:
    """One loadable image: an entry of ``manifest.json``, verified.

    ``config`` is the config member (its digest is the image ID), ``layers`` the
    layer members in order and ``diff_ids`` their uncompressed digests.
    """

    repo_tags: tuple[str, ...]
    config: ArchiveMember
    config_raw: bytes = field(repr=False)
    platform: Platform
    layers: tuple[ArchiveMember, ...]
    diff_ids: tuple[Digest, ...]


@dataclass(frozen=True)
class VerifiedArchive:
    """What a verified archive holds.

    ``layout``: ``docker`` (``manifest.json`` only, as ``docker save`` before 25),
    ``docker+oci`` (an OCI layout and ``manifest.json``: Docker 25+, dockerdrag
    ``--format oci``) or ``oci`` (an OCI layout only). ``images`` are the
    ``manifest.json`` entries in order; ``index`` is ``index.json`` and
    ``manifests`` every manifest and index reached from it, by digest, as stored;
    ``blobs`` the ``blobs/sha256/`` members by digest. ``missing`` lists the
    entries of stored indexes whose manifests the archive does not hold (a sparse
    layout: ``complete`` is False).
    """

    path: Path
    layout: str
    compression: Compression
    images: tuple[ArchiveImage, ...]
    index: ImageIndex | None
    manifests: Mapping[Digest, ImageManifest | ImageIndex]
    blobs: Mapping[Digest, ArchiveMember]
    missing: tuple[Descriptor, ...]
    files: int
    total_size: int

    @property
    def complete(self) -> bool:
        """Whether every manifest every stored index lists is stored too."""
        return not self.missing

    def open(self, member: ArchiveMember) -> BinaryIO:
        """A stream of ``member``'s bytes (the archive must be an uncompressed tar or a
        directory, and unchanged since it was verified)."""
        if self.path.is_dir():
            return open(self.path / member.name, "rb")
        if self.compression is not Compression.NONE or member.offset is None:
            raise ValueError(f"cannot seek to a member of the compressed archive {self.path}")
        handle = open(self.path, "rb", buffering=0)  # noqa: SIM115 - closed with the stream
        handle.seek(member.offset)
        return cast(BinaryIO, io.BufferedReader(_BoundedReader(handle, member.size)))


class _BoundedReader(io.RawIOBase):
    """At most ``size`` bytes of ``handle`` from where it stands; closing closes it."""

    def __init__(self, handle: BinaryIO, size: int) -> None:
        super().__init__()
        self._handle = handle
        self._remaining = size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer)[: self._remaining]
        count = self._handle.readinto(view)  # type: ignore[attr-defined]
        self._remaining -= count
        return int(count)

    def close(self) -> None:
        if not self.closed:
            self._handle.close()
        super().close()


# ---------------------------------------------------------------------------
# manifest.json and repositories
# ---------------------------------------------------------------------------


def _string_list(value: object, what: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise InvalidManifestError(f"{what} must be a list of strings")
    return tuple(value)


def _docker_image(scan: Scan, entry: object, number: int) -> ArchiveImage:
    where = f"manifest.json entry {number}"
    if not isinstance(entry, dict) or not isinstance(entry.get("Config"), str):
        raise InvalidManifestError(f"{where} has no Config")
    known_fields(entry, _MANIFEST_JSON_FIELDS, where)
    config_name: str = entry["Config"]
    config = required_member(scan, config_name, where)
    named = BLOB_NAME.fullmatch(config_name) or LEGACY_CONFIG_NAME.fullmatch(config_name)
    if named and config.digest.hex != named.group(1):
        raise DigestMismatchError(
            f"{config_name}: the content is damaged (its sha256 is {config.digest})"
        )
    raw = json_member(scan, config, f"config of {where}")
    parsed = parse_member(config_name, parse_config, raw)
    layer_names = _string_list(entry.get("Layers"), f"{where} Layers")
    if len(layer_names) != len(parsed.diff_ids):
        raise InvalidManifestError(
            f"{where} lists {len(layer_names)} layers but its config {config_name!r} has "
            f"{len(parsed.diff_ids)} diff_ids"
        )
    layers = tuple(required_member(scan, name, where) for name in layer_names)
    for position, (layer, diff_id) in enumerate(zip(layers, parsed.diff_ids, strict=True)):
        check_layer(layer, diff_id, f"layer {position} of {where}")
    repo_tags = _string_list(entry.get("RepoTags"), f"{where} RepoTags")
    for repo_tag in repo_tags:
        _tagged_name(repo_tag, where)
    return ArchiveImage(
        repo_tags=repo_tags,
        config=config,
        config_raw=raw,
        platform=parsed.platform,
        layers=layers,
        diff_ids=parsed.diff_ids,
    )


def _docker_images(scan: Scan, manifest_file: ArchiveMember) -> tuple[ArchiveImage, ...]:
    try:
        entries = json.loads(json_member(scan, manifest_file, "the image list"))
    except ValueError as exc:
        raise InvalidManifestError(f"manifest.json is not valid JSON: {exc}") from None
    if not isinstance(entries, list):
        raise InvalidManifestError("manifest.json must be a list of images")
    return tuple(_docker_image(scan, entry, number) for number, entry in enumerate(entries))


def _tagged_name(text: str, where: str) -> tuple[str, str]:
    """``(full name, tag)`` of a ``NAME:TAG`` reference, familiar or not
    (``busybox:1`` and ``docker.io/library/busybox:1`` are the same)."""
    try:
        reference = Reference.parse(text)
    except InvalidReferenceError:
        reference = None
    if reference is None or reference.tag is None:
        raise InvalidManifestError(f"{where}: {text!r} is not a valid NAME:TAG")
    return reference.name, reference.tag


def _layer_directories(scan: Scan) -> dict[str, set[str]]:
    """Legacy layer directories (``<id>/layer.tar``) by the member their layer.tar is."""
    found: dict[str, set[str]] = {}
    for name in [*scan.files, *scan.links]:
        directory, _, rest = name.partition("/")
        layer = scan.resolve(name) if rest == "layer.tar" else None
        if layer is not None:
            found.setdefault(layer.name, set()).add(directory)
    return found


def _top_layer_ids(directories: dict[str, set[str]], image: ArchiveImage) -> set[str]:
    """What ``repositories`` may name for the image: its top diff_id or layer directory."""
    if not image.layers:
        return set()
    return {image.diff_ids[-1].hex, *directories.get(image.layers[-1].name, ())}


def _check_repositories(scan: Scan, images: tuple[ArchiveImage, ...]) -> None:
    """``repositories`` names exactly the tags of ``manifest.json``, at their top layers."""
    member = scan.resolve("repositories")
    if member is None:
        return
    try:
        listed = json.loads(json_member(scan, member, "the tag list"))
    except ValueError as exc:
        raise InvalidManifestError(f"repositories is not valid JSON: {exc}") from None
    if not isinstance(listed, dict) or not all(isinstance(t, dict) for t in listed.values()):
        raise InvalidManifestError("repositories must map names to {tag: layer ID}")
    directories = _layer_directories(scan)
    tops: dict[tuple[str, str], set[str]] = {}
    for image in images:
        for repo_tag in image.repo_tags:
            tagged = _tagged_name(repo_tag, "manifest.json")
            tops.setdefault(tagged, set()).update(_top_layer_ids(directories, image))
    named = {
        _tagged_name(f"{name}:{tag}", "repositories"): layer
        for name, tags in listed.items()
        for tag, layer in tags.items()
    }
    for (name, tag), layer in named.items():
        if layer not in tops.get((name, tag), set()):
            raise InvalidManifestError(
                f"repositories names {name!r}:{tag!r} at {layer!r}, which manifest.json does "
                "not (or the archive has no manifest.json)"
            )
    for name, tag in tops:
        if (name, tag) not in named:
            raise InvalidManifestError(
                f"manifest.json names {name!r}:{tag!r}, which repositories does not"
            )


def _check_index_names(index: ImageIndex, images: tuple[ArchiveImage, ...]) -> None:
    """``index.json``'s image-name annotations and ``manifest.json``'s RepoTags agree.

    Every writer of both files (Docker 25+, containerd, dockerdrag) annotates each tag's
    entry with the full name and the tag, and lists the same tags in ``manifest.json``
    (familiar or in full). An entry named by digest only has no tag to compare.
    """
    annotated = set()
    for number, entry in enumerate(index.manifests):
        full = entry.annotations.get(ANNOTATION_IMAGE_NAME)
        if full is None:
            continue
        try:
            reference = Reference.parse(full)
        except InvalidReferenceError as exc:
            raise InvalidManifestError(f"index.json entry {number}: {exc}") from None
        if reference.tag is None:
            continue
        if entry.annotations.get(ANNOTATION_REF_NAME) != reference.tag:
            raise InvalidManifestError(
                f"index.json entry {number} names {full!r} but not its tag {reference.tag!r}"
            )
        annotated.add((reference.name, reference.tag))
    tagged = {
        _tagged_name(repo_tag, "manifest.json") for image in images for repo_tag in image.repo_tags
    }
    if annotated != tagged:
        differing = ", ".join(sorted(f"{name}:{tag}" for name, tag in annotated ^ tagged))
        raise InvalidManifestError(
            f"index.json and manifest.json name different images: {differing!r}"
        )


# ---------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------


def _verify(scan: Scan, path: Path, require_complete: bool) -> VerifiedArchive:
    check_names(scan)
    index_file = scan.resolve("index.json")
    manifest_file = scan.resolve("manifest.json")
    if index_file is None and manifest_file is None:
        raise CorruptArchiveError(
            f"{scan.label} is not an image archive: it has neither manifest.json nor index.json"
        )
    index, walk = walk_index(scan, index_file) if index_file else (None, LayoutWalk(scan))
    images = _docker_images(scan, manifest_file) if manifest_file else ()
    configs = {image.config.digest for image in images}
    for config, manifest_name in walk.layerless.items():
        if config not in configs:
            raise InvalidManifestError(
                f"manifest {manifest_name} lists no layers, and manifest.json has no image "
                f"with its config {config}"
            )
    _check_repositories(scan, images)
    if index is not None and manifest_file is not None:
        _check_index_names(index, images)
    if require_complete and walk.missing:
        shown = ", ".join(str(entry.digest) for entry in walk.missing[:3])
        raise CorruptArchiveError(
            f"{scan.label} is sparse: {len(walk.missing)} manifest(s) its index lists are not "
            f"stored ({shown})"
        )
    blobs = {
        Digest(match.group(1)): member
        for name, member in scan.files.items()
        if (match := BLOB_NAME.fullmatch(name))
    }
    return VerifiedArchive(
        path=path,
        layout="docker+oci" if index and manifest_file else "oci" if index else "docker",
        compression=scan.compression,
        images=images,
        index=index,
        manifests=MappingProxyType(walk.manifests),
        blobs=MappingProxyType(blobs),
        missing=tuple(walk.missing),
        files=len(scan.files),
        total_size=scan.total_size,
    )


class VerificationCancelled(Exception):
    """Raised inside the worker thread when the verification is cancelled."""


def check_archive(
    path: str | Path,
    *,
    require_complete: bool = False,
    stop: threading.Event | None = None,
    on_read: Callable[[int], None] | None = None,
) -> VerifiedArchive:
    """Verify the archive at ``path`` (blocking; see :func:`verify_archive`).

    ``stop``, when set from another thread, ends the check with
    :class:`VerificationCancelled` at the next block read. ``on_read`` is called in
    this thread with the number of member bytes read so far, after each block.
    """
    path = Path(path)
    read = 0

    def each_block(size: int) -> None:
        nonlocal read
        if stop is not None and stop.is_set():
            raise VerificationCancelled(f"verification of {path} cancelled")
        read += size
        if on_read is not None:
            on_read(read)

    return _verify(scan_archive(path, each_block), path, require_complete)


async def verify_archive(
    path: str | Path,
    *,
    require_complete: bool = False,
    progress: Callable[[int], None] | None = None,
) -> VerifiedArchive:
    """Verify the image archive (tar, compressed tar or OCI layout directory) at ``path``.

    Reads it once, in a worker thread, without unpacking it and with memory bounded
    however large it is; returns what it holds, or raises the first problem found as
    an IntegrityError subclass naming the member (see the module docstring).
    ``require_complete=True`` also refuses a sparse layout (an index whose listed
    manifests are not all stored). ``progress`` is called on the event loop with the
    number of member bytes read so far, a few times a second and once at the end
    (``VerifiedArchive.total_size``). Cancelling the call stops the worker thread.
    """
    stop = threading.Event()
    shown = 0.0

    def report(read: int) -> None:
        nonlocal shown
        now = time.monotonic()
        if progress is not None and now - shown >= PROGRESS_INTERVAL:
            shown = now
            anyio.from_thread.run_sync(progress, read)

    try:
        verified = await anyio.to_thread.run_sync(
            partial(
                check_archive, path, require_complete=require_complete, stop=stop, on_read=report
            ),
            abandon_on_cancel=True,
        )
    finally:
        stop.set()
    if progress is not None:
        progress(verified.total_size)
    return verified


def summary_json(archive: VerifiedArchive) -> dict[str, Any]:
    """The verified archive as a JSON object (``dockerdrag verify --json``)."""
    return {
        "archive": str(archive.path),
        "layout": archive.layout,
        "files": archive.files,
        "bytes": archive.total_size,
        "complete": archive.complete,
        "missing": [str(entry.digest) for entry in archive.missing],
        "images": [
            {
                "repo_tags": list(image.repo_tags),
                "image_id": str(image.config.digest),
                "platform": str(image.platform),
                "layers": [str(diff_id) for diff_id in image.diff_ids],
            }
            for image in archive.images
        ],
        "index": [entry.to_json() for entry in archive.index.manifests] if archive.index else [],
    }
