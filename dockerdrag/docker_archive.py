"""The legacy ``docker save`` archive writer (Docker <= 24), format sections 2 and 4.

:func:`write_docker_archive` writes, for one or more images, exactly the tar stream
Docker 20.10 writes: one directory per legacy v1 layer ID (``VERSION``, ``json``,
``layer.tar``), the raw config as ``<image id>.json``, ``manifest.json`` and, when any
tag is saved, ``repositories``. Layers are streamed (decompressed by the caller's
``open``) straight into the archive while their sha256 is checked against the diff_id.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, BinaryIO, Final, NamedTuple

from .digest import Digest
from .docker_options import DockerArchiveOptions
from .errors import (
    DiffIDMismatchError,
    InvalidManifestError,
    InvalidReferenceError,
    UsageError,
)
from .gojson import (
    DecodedConfig,
    GoTime,
    V1Record,
    decode_image_config,
    encode_v1_json,
    encode_value,
    go_map_order,
    v1_id_input,
)
from .layers import read_ahead
from .tarwriter import (
    HEADER_FLAVOURS,
    MAX_OCTAL_11,
    TYPE_DIRECTORY,
    TYPE_FILE,
    TYPE_SYMLINK,
    TarOutput,
    TarWriter,
)

if TYPE_CHECKING:
    from .decoder_processes import LayerSource

__all__ = [
    "ArchiveEntry",
    "ArchiveImage",
    "ArchiveLayer",
    "DockerArchiveOptions",
    "DockerImagePlan",
    "LayerData",
    "ManifestItem",
    "archive_entries",
    "chain_ids",
    "created_mtime",
    "manifest_json",
    "plan_image",
    "repositories_json",
    "write_docker_archive",
]

_CHUNK_SIZE: Final = 1 << 18  # 256 KiB: decompressed chunks in flight cost memory, not speed
_VERSION_BYTES: Final = b"1.0"
# Docker's system.Chtimes resets times after time.Unix(0, 1<<63 - 1) to the epoch.
_GO_MAX_UNIX_SECONDS: Final = (2**63 - 1) // 10**9


@dataclass(frozen=True)
class ArchiveLayer:
    """One layer of an image to archive."""

    diff_id: Digest
    open: Callable[[], BinaryIO]
    """Opens a fresh stream of the uncompressed layer bytes."""
    announced_size: Callable[[], int | None] | None = None
    """The uncompressed size the blob claims (checked while writing), None if it claims none."""
    size_known: Callable[[], bool] | None = None
    """Whether :attr:`announced_size` answers without waiting (None: it may wait)."""
    open_early: Callable[[], BinaryIO] | None = None
    """Opens a stream of the uncompressed bytes as the blob arrives, before it is verified
    (the parallel writer checks the diff_id and falls back to :attr:`open`)."""
    source: LayerSource | None = None
    """The blob itself, for a decoder process to read (as it arrives if :attr:`open_early`
    is given); None: the layer is read through :attr:`open` and :attr:`open_early`."""
    arrived: Callable[[], bool] | None = None
    """Whether the blob is in whole (verified) already, so that reading it waits for
    nothing (None: it cannot be told). The parallel writer decodes such a layer before a
    larger one whose blob is still arriving."""


@dataclass(frozen=True)
class ArchiveImage:
    """One image to archive: its plan (config and v1 layers), layers in rootfs order and
    familiar tags."""

    plan: DockerImagePlan
    layers: Sequence[ArchiveLayer]
    repo_tags: Sequence[str] = ()
    """Familiar ``name:tag`` strings in order; empty means ``RepoTags: null``."""

    @classmethod
    def of(
        cls,
        config_bytes: bytes,
        layers: Sequence[ArchiveLayer],
        repo_tags: Sequence[str] = (),
        options: DockerArchiveOptions | None = None,
    ) -> ArchiveImage:
        """The image of raw config bytes, planned with ``options`` (the defaults if None)."""
        plan = plan_image(decode_image_config(config_bytes), options or DockerArchiveOptions())
        return cls(plan, layers, repo_tags)


@dataclass(frozen=True)
class ManifestItem:
    """One entry of ``manifest.json``."""

    config: str
    repo_tags: Sequence[str] | None
    layers: Sequence[str]


# ---------------------------------------------------------------------------
# Pure computations
# ---------------------------------------------------------------------------


def chain_ids(diff_ids: Sequence[Digest]) -> list[Digest]:
    """Layer chain IDs: ``chain[i] = sha256(chain[i-1] + " " + diff_id[i])``."""
    chain: list[Digest] = []
    for diff_id in diff_ids:
        if not chain:
            chain.append(diff_id)
        else:
            chain.append(Digest.of(f"{chain[-1]} {diff_id}".encode("ascii")))
    return chain


def created_mtime(created: GoTime) -> int:
    """The tar mtime Docker gives entries stamped with ``created`` (format section 4.3)."""
    seconds = created.unix_seconds()
    if seconds < 0 or seconds > _GO_MAX_UNIX_SECONDS:
        return 0
    if seconds > MAX_OCTAL_11:
        raise InvalidManifestError(
            f"image created {created.format_rfc3339nano()} is after 2242; "
            "Docker would write a PAX header, which is not supported"
        )
    return seconds


class _V1Layer(NamedTuple):
    v1_id: str
    json: bytes


class DockerImagePlan(NamedTuple):
    """What ``docker save`` works out from one config before writing anything: the legacy
    v1 layers (bottom to top), made with ``options``. The pull makes it once per config and
    hands it to both the fetch order and the writer."""

    config: DecodedConfig
    options: DockerArchiveOptions
    v1_layers: tuple[_V1Layer, ...]

    @property
    def v1_ids(self) -> list[str]:
        """The legacy v1 layer IDs (hex, bottom to top)."""
        return [layer.v1_id for layer in self.v1_layers]


def _v1_layers(config: DecodedConfig, options: DockerArchiveOptions) -> list[_V1Layer]:
    """Docker's ``saveImage`` loop: v1 IDs and per-layer ``json`` (format section 2.3)."""
    epoch = GoTime.epoch(options.epoch_utc_offset_seconds)
    escaping = options.go122_escaping
    diff_ids = config.diff_ids
    layers: list[_V1Layer] = []
    parent = ""
    lower = V1Record.empty(epoch)  # its copies share the encodings of its fields
    for index, chain_id in enumerate(chain_ids(diff_ids)):
        is_top = index == len(diff_ids) - 1
        record = config.v1.copy() if is_top else lower.copy()
        v1_digest = Digest.of(v1_id_input(record, str(chain_id), parent, escaping))
        record.set_string("id", v1_digest.hex)
        record.set_string("parent", parent.removeprefix("sha256:"))
        record.set_string("os", config.os)
        layers.append(_V1Layer(v1_digest.hex, encode_v1_json(record, escaping)))
        parent = str(v1_digest)
    return layers


def plan_image(config: DecodedConfig, options: DockerArchiveOptions) -> DockerImagePlan:
    """The plan of one image; InvalidManifestError for a config ``docker save`` refuses."""
    if not config.diff_ids:
        raise InvalidManifestError("empty image: the config lists no layers")
    if config.non_empty_history_entries > len(config.diff_ids):
        raise InvalidManifestError("image config: too many non-empty layers in History section")
    return DockerImagePlan(config, options, tuple(_v1_layers(config, options)))


def _split_familiar_tag(repo_tag: str) -> tuple[str, str]:
    name, colon, tag = repo_tag.rpartition(":")
    if not colon or not name or not tag or "/" in tag or "@" in repo_tag:
        raise InvalidReferenceError(f"expected a familiar name:tag, got {repo_tag!r}")
    return name, tag


def repositories_json(tags: Sequence[tuple[str, str]], go122_escaping: bool = False) -> bytes:
    """The ``repositories`` file for ``(familiar name:tag, top v1 ID hex)`` pairs."""
    repositories: dict[str, dict[str, object]] = {}
    for repo_tag, top_v1_id in tags:
        name, tag = _split_familiar_tag(repo_tag)
        repositories.setdefault(name, {})[tag] = top_v1_id
    document = go_map_order({name: go_map_order(by_tag) for name, by_tag in repositories.items()})
    return (encode_value(document, go122_escaping) + "\n").encode("utf-8")


def manifest_json(items: Sequence[ManifestItem], go122_escaping: bool = False) -> bytes:
    """``manifest.json`` as Go's ``json.Encoder`` writes it (format section 2.5), with a newline."""
    entries = [
        {"Config": item.config, "RepoTags": item.repo_tags, "Layers": item.layers} for item in items
    ]
    return (encode_value(entries, go122_escaping) + "\n").encode("utf-8")


# ---------------------------------------------------------------------------
# Archive layout
# ---------------------------------------------------------------------------


class LayerData(NamedTuple):
    """The data of one ``layer.tar``: which layer of which image it is."""

    image_index: int
    layer_index: int
    layer: ArchiveLayer

    def check(self, actual: Digest) -> None:
        """Raise DiffIDMismatchError unless ``actual`` (of the bytes written) is the diff_id."""
        if actual != self.layer.diff_id:
            raise DiffIDMismatchError(
                f"image {self.image_index + 1}, layer {self.layer_index}: uncompressed content "
                f"does not match diff_id: expected {self.layer.diff_id}, got {actual}"
            )


class ArchiveEntry(NamedTuple):
    """One member of the archive, in writing order."""

    name: str
    kind: bytes  # tarwriter's TYPE_DIRECTORY, TYPE_FILE or TYPE_SYMLINK
    mtime: int
    data: bytes = b""  # a regular file's bytes
    link: str = ""  # a symlink's target
    layer: LayerData | None = None  # a layer.tar whose bytes come from decompressing a blob


class _LayerDir(NamedTuple):
    json: bytes
    mtime: int
    data: LayerData | None
    symlink_target: str = ""


@dataclass
class _Layout:
    """Everything to write, keyed by top-level name (format section 2.6 dedup rules)."""

    dirs: dict[str, _LayerDir] = field(default_factory=dict)
    files: dict[str, tuple[bytes, int]] = field(default_factory=dict)
    data_dir_by_diff_id: dict[Digest, str] = field(default_factory=dict)


def _merge_duplicate_images(images: Sequence[ArchiveImage]) -> list[ArchiveImage]:
    """One entry per image ID (as Docker keys images), tags merged in order."""
    merged: dict[str, ArchiveImage] = {}
    for image in images:
        image_id = Digest.of(image.plan.config.raw).hex
        if image_id in merged:
            first = merged[image_id]
            tags = [*first.repo_tags, *image.repo_tags]
            merged[image_id] = ArchiveImage(first.plan, first.layers, tags)
        else:
            merged[image_id] = image
    return list(merged.values())


def _unique(tags: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(tags))


def _check_layers(image: ArchiveImage, diff_ids: Sequence[Digest]) -> None:
    if len(image.layers) != len(diff_ids):
        raise InvalidManifestError(
            f"{len(image.layers)} layers given but the config lists {len(diff_ids)} diff_ids"
        )
    for index, (layer, diff_id) in enumerate(zip(image.layers, diff_ids, strict=True)):
        if layer.diff_id != diff_id:
            raise InvalidManifestError(
                f"layer {index}: diff_id {layer.diff_id} differs from the config's {diff_id}"
            )


def _add_image(
    layout: _Layout, image_index: int, image: ArchiveImage, options: DockerArchiveOptions, now: int
) -> ManifestItem:
    """Docker's ``saveImage`` for one image: add its dirs and config to ``layout``."""
    plan = image.plan
    if plan.options != options:  # planned for other options: its v1 layers differ
        plan = plan_image(plan.config, options)
    v1_layers = plan.v1_layers
    _check_layers(image, plan.config.diff_ids)
    mtime = created_mtime(plan.config.created)
    for layer_index, (v1_layer, layer) in enumerate(zip(v1_layers, image.layers, strict=True)):
        if v1_layer.v1_id in layout.dirs:
            continue
        first_dir = layout.data_dir_by_diff_id.get(layer.diff_id)
        if first_dir is None:
            data = LayerData(image_index, layer_index, layer)
            layout.dirs[v1_layer.v1_id] = _LayerDir(v1_layer.json, mtime, data)
            layout.data_dir_by_diff_id[layer.diff_id] = v1_layer.v1_id
        else:
            target = f"../{first_dir}/layer.tar"
            layout.dirs[v1_layer.v1_id] = _LayerDir(v1_layer.json, now, None, target)
    image_id = Digest.of(plan.config.raw).hex
    layout.files[f"{image_id}.json"] = (plan.config.raw, mtime)
    tags = _unique(image.repo_tags)
    return ManifestItem(
        config=f"{image_id}.json",
        repo_tags=tags or None,
        layers=[f"{v1_layer.v1_id}/layer.tar" for v1_layer in v1_layers],
    )


def _build_layout(images: Sequence[ArchiveImage], options: DockerArchiveOptions) -> _Layout:
    now = int(time.time()) if options.now is None else options.now
    layout = _Layout()
    items: list[ManifestItem] = []
    tagged: list[tuple[str, str]] = []
    for image_index, image in enumerate(_merge_duplicate_images(images)):
        item = _add_image(layout, image_index, image, options, now)
        items.append(item)
        top_v1_id = item.layers[-1].split("/", 1)[0]
        tagged.extend((tag, top_v1_id) for tag in item.repo_tags or ())
    escaping = options.go122_escaping
    if tagged:
        layout.files["repositories"] = (repositories_json(tagged, escaping), 0)
    layout.files["manifest.json"] = (manifest_json(items, escaping), 0)
    return layout


# ---------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------


def _verified_chunks(data: LayerData) -> Iterator[bytes]:
    """The layer's uncompressed bytes in chunks; raises if they miss the diff_id."""
    hasher = hashlib.sha256()
    # Decompression in the read-ahead thread; hashing and writing in this one
    # (measured: the faster split of the three on two cores).
    for chunk in read_ahead(data.layer.open, _CHUNK_SIZE):
        hasher.update(chunk)
        yield chunk
    data.check(Digest(hasher.hexdigest()))


def _layer_dir_entries(v1_id: str, layer_dir: _LayerDir) -> list[ArchiveEntry]:
    mtime = layer_dir.mtime
    entries = [
        ArchiveEntry(f"{v1_id}/", TYPE_DIRECTORY, mtime),
        ArchiveEntry(f"{v1_id}/VERSION", TYPE_FILE, mtime, _VERSION_BYTES),
        ArchiveEntry(f"{v1_id}/json", TYPE_FILE, mtime, layer_dir.json),
    ]
    layer_tar = f"{v1_id}/layer.tar"
    if layer_dir.data is None:
        entries.append(ArchiveEntry(layer_tar, TYPE_SYMLINK, mtime, link=layer_dir.symlink_target))
    else:
        entries.append(ArchiveEntry(layer_tar, TYPE_FILE, mtime, layer=layer_dir.data))
    return entries


def _check_options(options: DockerArchiveOptions) -> None:
    if options.header_flavour not in HEADER_FLAVOURS:
        raise UsageError(
            f"unknown tar header flavour {options.header_flavour!r}; use one of {HEADER_FLAVOURS}"
        )


def write_docker_archive(
    out: TarOutput,
    images: Sequence[ArchiveImage],
    options: DockerArchiveOptions | None = None,
) -> None:
    """Write the legacy ``docker save`` archive of ``images`` to the seekable ``out``.

    Images are processed in the order given (Docker's processing order decides which
    copy of a shared layer holds the data). Raises InvalidManifestError for configs
    Docker would refuse or that do not match the layers, DiffIDMismatchError when a
    layer's uncompressed bytes miss its diff_id.
    """
    options = options or DockerArchiveOptions()
    tar = TarWriter(out, options.header_flavour)
    for entry in archive_entries(images, options):
        if entry.layer is not None:
            tar.add_stream(entry.name, _verified_chunks(entry.layer), entry.mtime)
        else:
            tar.add_member(entry.name, entry.kind, entry.mtime, entry.data, entry.link)
    tar.finish()


def archive_entries(
    images: Sequence[ArchiveImage], options: DockerArchiveOptions
) -> list[ArchiveEntry]:
    """The members of the archive of ``images``, in the order ``docker save`` writes them.

    Raises UsageError for bad options or no images, InvalidManifestError for configs
    Docker would refuse or that do not match the layers.
    """
    _check_options(options)
    if not images:
        raise UsageError("no images to save")
    layout = _build_layout(images, options)
    entries: list[ArchiveEntry] = []
    for name in sorted([*layout.dirs, *layout.files]):
        layer_dir = layout.dirs.get(name)
        if layer_dir is not None:
            entries.extend(_layer_dir_entries(name, layer_dir))
        else:
            data, mtime = layout.files[name]
            entries.append(ArchiveEntry(name, TYPE_FILE, mtime, data))
    return entries
