"""Deterministic test images: layer tars, configs, manifests, indexes, and pushing.

Three levels:

1. Pure byte builders: :func:`make_layer_tar`, :func:`compress`, :func:`make_config`,
   :func:`make_manifest`, :func:`make_index`. Same input, same bytes: fixed mtimes,
   uid/gid 0, no user names, gzip without timestamp.
2. Image objects: :func:`layer` -> :class:`BuiltLayer`, :func:`build_image` ->
   :class:`BuiltImage`, :func:`build_index` -> :class:`BuiltIndex`. They carry the raw
   bytes and every digest, diff_id and size a test wants to check.
3. Pushing (through :mod:`tests.support.pusher`): :func:`push_image`,
   :func:`push_built`, :func:`push_index` -> :class:`PushedImage` / :class:`PushedIndex`;
   and the ready-made catalogue :func:`seed_standard_images`.

Ready-made images: :func:`busybox_image` (the host's static busybox, runs in Docker:
``docker run --rm --network none IMAGE echo ok`` prints ``ok``), :func:`busybox_index`
(linux/amd64 = busybox, linux/arm64/v8 and linux/arm/v7 dummies, one attestation),
:func:`multilayer_image` (a repeated layer and empty-layer history),
:func:`zstd_image`, :func:`uncompressed_image`, :func:`mixed_compression_image`.
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
import hashlib
import io
import json
import random
import tarfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import zstandard

from . import pusher

Compression = Literal["gzip", "zstd", "none"]
MediaTypes = Literal["docker", "oci"]

# 2023-01-02T03:04:05Z, the timestamp of the golden fixtures.
FIXED_MTIME = 1672628645
FIXED_CREATED = "2023-01-02T03:04:05Z"
BUSYBOX_PATH = Path("/bin/busybox")
DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_LAYER_TAR = "application/vnd.docker.image.rootfs.diff.tar"
DOCKER_FOREIGN_LAYER = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
OCI_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
IN_TOTO = "application/vnd.in-toto+json"

MANIFEST_TYPES = {"docker": DOCKER_MANIFEST, "oci": OCI_MANIFEST}
INDEX_TYPES = {"docker": DOCKER_LIST, "oci": OCI_INDEX}
CONFIG_TYPES = {"docker": DOCKER_CONFIG, "oci": OCI_CONFIG}
LAYER_TYPES: dict[tuple[MediaTypes, Compression], str] = {
    ("docker", "gzip"): DOCKER_LAYER_GZIP,
    ("docker", "none"): DOCKER_LAYER_TAR,
    ("docker", "zstd"): OCI_LAYER_ZSTD,  # Docker has no zstd type; Docker 23+ pushes this
    ("oci", "gzip"): OCI_LAYER_GZIP,
    ("oci", "none"): OCI_LAYER_TAR,
    ("oci", "zstd"): OCI_LAYER_ZSTD,
}


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def canonical_json(value: Any) -> bytes:
    """Compact JSON in insertion order, the way our test documents are written."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


# ---------------------------------------------------------------------------------------
# Layer tars
# ---------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class File:
    data: bytes
    mode: int = 0o644


@dataclasses.dataclass(frozen=True)
class Dir:
    mode: int = 0o755


@dataclasses.dataclass(frozen=True)
class Symlink:
    target: str


@dataclasses.dataclass(frozen=True)
class Hardlink:
    """A hard link to an earlier entry. Its mode defaults to the target's: Docker
    applies a link header's mode to the shared inode."""

    target: str  # path inside the layer, e.g. "bin/busybox"
    mode: int | None = None


Entry = bytes | File | Dir | Symlink | Hardlink


def make_layer_tar(
    files: Mapping[str, Entry],
    *,
    mtime: int = FIXED_MTIME,
    add_parent_dirs: bool = True,
    trailing_zeros: int = 0,
) -> bytes:
    """An uncompressed layer tar. Entries keep the mapping's order.

    Values are file contents (``bytes`` = mode 0644), or :class:`File`, :class:`Dir`,
    :class:`Symlink`, :class:`Hardlink`. Missing parent directories are added
    (mode 0755) right before their first child. ``trailing_zeros`` appends that many
    zero bytes after the end-of-archive blocks (Docker keeps them in diff_ids).
    """
    out = io.BytesIO()
    seen_dirs: set[str] = set()
    modes: dict[str, int] = {}
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:

        def add(name: str, entry: Entry) -> None:
            info = tarfile.TarInfo(name)
            info.mtime = mtime
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            payload: bytes | None = None
            if isinstance(entry, bytes):
                entry = File(entry)
            if isinstance(entry, File):
                info.mode, info.size, payload = entry.mode, len(entry.data), entry.data
            elif isinstance(entry, Dir):
                info.type, info.mode = tarfile.DIRTYPE, entry.mode
            elif isinstance(entry, Symlink):
                info.type, info.mode, info.linkname = tarfile.SYMTYPE, 0o777, entry.target
            elif isinstance(entry, Hardlink):
                mode = entry.mode if entry.mode is not None else modes.get(entry.target, 0o644)
                info.type, info.mode, info.linkname = tarfile.LNKTYPE, mode, entry.target
            else:
                raise TypeError(f"unsupported layer entry {entry!r}")
            modes[name] = info.mode
            tar.addfile(info, io.BytesIO(payload) if payload is not None else None)

        for raw_name, entry in files.items():
            name = raw_name.strip("/")
            if add_parent_dirs:
                parts = name.split("/")[:-1]
                for i in range(1, len(parts) + 1):
                    parent = "/".join(parts[:i])
                    if parent not in seen_dirs and parent not in files:
                        seen_dirs.add(parent)
                        add(parent, Dir())
            if isinstance(entry, Dir):
                seen_dirs.add(name)
            add(name, entry)
    return out.getvalue() + b"\0" * trailing_zeros


def compress(data: bytes, compression: Compression) -> bytes:
    """gzip (no timestamp, no name), zstd (level 3) or ``none``: deterministic."""
    if compression == "gzip":
        return gzip.compress(data, compresslevel=6, mtime=0)
    if compression == "zstd":
        return zstandard.ZstdCompressor(level=3).compress(data)
    if compression == "none":
        return data
    raise ValueError(f"unknown compression {compression!r}")


@dataclasses.dataclass(frozen=True)
class BuiltLayer:
    """One layer: its uncompressed tar and the blob as stored in the registry."""

    tar: bytes
    blob: bytes
    compression: Compression
    media_type: str | None = None  # None: chosen by the manifest's media types
    urls: tuple[str, ...] = ()  # foreign layer URLs (the blob may then be absent)

    @functools.cached_property
    def digest(self) -> str:
        return sha256_digest(self.blob)

    @functools.cached_property
    def diff_id(self) -> str:
        return sha256_digest(self.tar)

    @property
    def size(self) -> int:
        return len(self.blob)

    def media_type_for(self, media_types: MediaTypes) -> str:
        return self.media_type or LAYER_TYPES[(media_types, self.compression)]


def layer(
    files: Mapping[str, Entry] | bytes,
    compression: Compression = "gzip",
    *,
    media_type: str | None = None,
    urls: Sequence[str] = (),
    trailing_zeros: int = 0,
) -> BuiltLayer:
    """A layer from a file mapping (see :func:`make_layer_tar`) or a ready tar."""
    tar = (
        files if isinstance(files, bytes) else make_layer_tar(files, trailing_zeros=trailing_zeros)
    )
    return BuiltLayer(tar, compress(tar, compression), compression, media_type, tuple(urls))


def random_layer(
    seed: int, size: int, compression: Compression = "gzip", **kwargs: Any
) -> BuiltLayer:
    """A layer of one file of ``size`` random bytes from ``seed`` (incompressible,
    deterministic); ``kwargs`` as for :func:`layer`."""
    return layer({"data.bin": random.Random(seed).randbytes(size)}, compression, **kwargs)


def text_layer(name: str, content: str, compression: Compression = "gzip") -> BuiltLayer:
    """A one-file layer, the quickest way to a distinct small layer."""
    return layer({name: content.encode()}, compression)


# ---------------------------------------------------------------------------------------
# Documents
# ---------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    platform: Mapping[str, Any] | None = None
    annotations: Mapping[str, str] | None = None
    urls: Sequence[str] = ()

    @classmethod
    def of(cls, media_type: str, data: bytes, **kwargs: Any) -> Descriptor:
        return cls(media_type, sha256_digest(data), len(data), **kwargs)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": self.size,
        }
        if self.urls:
            out["urls"] = list(self.urls)
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        if self.platform is not None:
            out["platform"] = dict(self.platform)
        return out


def platform_dict(os: str, architecture: str, variant: str | None = None) -> dict[str, str]:
    out = {"architecture": architecture, "os": os}
    if variant:
        out["variant"] = variant
    return out


def default_history(
    n_layers: int, *, empty_layers: int = 0, created: str = FIXED_CREATED
) -> list[dict[str, Any]]:
    """One history entry per layer; ``empty_layers`` extra ``empty_layer`` entries
    go after the first layer's entry (like ENV/LABEL steps after FROM)."""
    layers = [
        {"created": created, "created_by": f"/bin/sh -c #(nop) ADD layer{i}"}
        for i in range(n_layers)
    ]
    empties = [
        {"created": created, "created_by": f"/bin/sh -c #(nop)  ENV STEP={j}", "empty_layer": True}
        for j in range(empty_layers)
    ]
    return layers[:1] + empties + layers[1:]


def make_config(
    diff_ids: Sequence[str],
    *,
    os: str = "linux",
    architecture: str = "amd64",
    variant: str | None = None,
    created: str | None = FIXED_CREATED,
    cmd: Sequence[str] | None = None,
    entrypoint: Sequence[str] | None = None,
    env: Sequence[str] | None = (DEFAULT_PATH,),
    working_dir: str | None = None,
    labels: Mapping[str, str] | None = None,
    history: Sequence[Mapping[str, Any]] | None = None,
    empty_layers: int = 0,
    extra: Mapping[str, Any] | None = None,
) -> bytes:
    """An image config (compact JSON). ``history`` defaults to :func:`default_history`.

    ``extra`` members are merged at the top level last (they may replace anything).
    """
    container: dict[str, Any] = {}
    if env is not None:
        container["Env"] = list(env)
    if entrypoint is not None:
        container["Entrypoint"] = list(entrypoint)
    if cmd is not None:
        container["Cmd"] = list(cmd)
    if working_dir is not None:
        container["WorkingDir"] = working_dir
    if labels is not None:
        container["Labels"] = dict(labels)
    config: dict[str, Any] = {"architecture": architecture}
    if created is not None:
        config["created"] = created
    config["config"] = container
    config["os"] = os
    if variant:
        config["variant"] = variant
    config["rootfs"] = {"type": "layers", "diff_ids": list(diff_ids)}
    config["history"] = (
        [dict(h) for h in history]
        if history is not None
        else default_history(len(diff_ids), empty_layers=empty_layers, created=created or "")
    )
    if extra:
        config.update(extra)
    return canonical_json(config)


def make_manifest(
    config: Descriptor | bytes,
    layers: Sequence[Descriptor | BuiltLayer],
    *,
    media_types: MediaTypes = "docker",
    annotations: Mapping[str, str] | None = None,
    include_media_type: bool = True,
) -> bytes:
    """An image manifest. Raw ``bytes`` for ``config`` get the matching config type."""
    if isinstance(config, bytes):
        config = Descriptor.of(CONFIG_TYPES[media_types], config)
    layer_descs = [
        Descriptor(ly.media_type_for(media_types), ly.digest, ly.size, urls=ly.urls)
        if isinstance(ly, BuiltLayer)
        else ly
        for ly in layers
    ]
    doc: dict[str, Any] = {"schemaVersion": 2}
    if include_media_type:
        doc["mediaType"] = MANIFEST_TYPES[media_types]
    doc["config"] = config.to_json()
    doc["layers"] = [d.to_json() for d in layer_descs]
    if annotations:
        doc["annotations"] = dict(annotations)
    return canonical_json(doc)


def make_index(
    manifests: Sequence[Descriptor],
    *,
    media_types: MediaTypes = "oci",
    annotations: Mapping[str, str] | None = None,
) -> bytes:
    """A Docker manifest list or OCI index over ``manifests`` (with their platforms)."""
    doc: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": INDEX_TYPES[media_types],
        "manifests": [d.to_json() for d in manifests],
    }
    if annotations:
        doc["annotations"] = dict(annotations)
    return canonical_json(doc)


# ---------------------------------------------------------------------------------------
# Images and indexes
# ---------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class BuiltImage:
    """An image's documents and blobs, with every digest a test wants."""

    manifest: bytes
    manifest_media_type: str
    config: bytes
    layers: tuple[BuiltLayer, ...]
    platform: Mapping[str, str]

    @property
    def manifest_digest(self) -> str:
        return sha256_digest(self.manifest)

    @property
    def digest(self) -> str:
        return self.manifest_digest

    @property
    def config_digest(self) -> str:
        return sha256_digest(self.config)

    @property
    def image_id(self) -> str:
        """What ``docker images --no-trunc`` shows: the config digest."""
        return self.config_digest

    @property
    def layer_digests(self) -> list[str]:
        return [ly.digest for ly in self.layers]

    @property
    def diff_ids(self) -> list[str]:
        return [ly.diff_id for ly in self.layers]

    @property
    def layer_sizes(self) -> list[int]:
        return [ly.size for ly in self.layers]

    def blobs(self) -> dict[str, bytes]:
        """digest -> bytes of every blob the registry stores (foreign layers excluded)."""
        out = {self.config_digest: self.config}
        out.update({ly.digest: ly.blob for ly in self.layers if not ly.urls})
        return out

    def descriptor(self, *, annotations: Mapping[str, str] | None = None) -> Descriptor:
        return Descriptor(
            self.manifest_media_type,
            self.manifest_digest,
            len(self.manifest),
            platform=self.platform,
            annotations=annotations,
        )


def build_image(
    layers: Sequence[BuiltLayer] | None = None,
    *,
    media_types: MediaTypes = "docker",
    manifest_annotations: Mapping[str, str] | None = None,
    config: bytes | None = None,
    **config_kwargs: Any,
) -> BuiltImage:
    """An image over ``layers`` (default: one small gzip layer).

    ``config_kwargs`` go to :func:`make_config` (``os``, ``architecture``, ``variant``,
    ``created``, ``cmd``, ``entrypoint``, ``env``, ``labels``, ``history``,
    ``empty_layers``, ``extra`` ...). A ready ``config`` replaces them.
    """
    if layers is None:
        layers = [text_layer("hello.txt", "hello\n")]
    layers = tuple(layers)
    if config is None:
        config = make_config([ly.diff_id for ly in layers], **config_kwargs)
    parsed = json.loads(config.decode("utf-8", "replace"))  # a test config may be invalid
    platform = platform_dict(
        parsed.get("os", ""), parsed.get("architecture", ""), parsed.get("variant")
    )
    manifest = make_manifest(
        config, layers, media_types=media_types, annotations=manifest_annotations
    )
    return BuiltImage(manifest, MANIFEST_TYPES[media_types], config, layers, platform)


@dataclasses.dataclass(frozen=True)
class BuiltIndex:
    """A multi-platform index and the manifests it lists (images, then attestations)."""

    index: bytes
    media_type: str
    images: tuple[BuiltImage, ...]
    attestations: tuple[BuiltImage, ...]

    @property
    def digest(self) -> str:
        return sha256_digest(self.index)

    @property
    def all_manifests(self) -> tuple[BuiltImage, ...]:
        return self.images + self.attestations

    def for_platform(self, os: str, architecture: str, variant: str | None = None) -> BuiltImage:
        wanted = platform_dict(os, architecture, variant)
        for image in self.images:
            if dict(image.platform) == wanted:
                return image
        raise KeyError(f"no image for {wanted}")


ATTESTATION_PLATFORM = {"architecture": "unknown", "os": "unknown"}


def attestation_manifest(subject: BuiltImage) -> BuiltImage:
    """A BuildKit-style attestation manifest (OCI, in-toto layer) for ``subject``."""
    statement = canonical_json(
        {
            "_type": "https://in-toto.io/Statement/v0.1",
            "predicateType": "https://spdx.dev/Document",
            "subject": [{"name": "test", "digest": {"sha256": subject.manifest_digest[7:]}}],
            "predicate": {"spdxVersion": "SPDX-2.3", "name": "test"},
        }
    )
    attest_layer = BuiltLayer(statement, statement, "none", media_type=IN_TOTO)
    config = canonical_json(
        {
            "architecture": "unknown",
            "os": "unknown",
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": [attest_layer.diff_id]},
        }
    )
    layer_desc = Descriptor(
        IN_TOTO,
        attest_layer.digest,
        attest_layer.size,
        annotations={"in-toto.io/predicate-type": "https://spdx.dev/Document"},
    )
    manifest = make_manifest(config, [layer_desc], media_types="oci")
    return BuiltImage(manifest, OCI_MANIFEST, config, (attest_layer,), ATTESTATION_PLATFORM)


def build_index(
    images: Sequence[BuiltImage],
    *,
    media_types: MediaTypes = "oci",
    attest: Sequence[int] = (),
    annotations: Mapping[str, str] | None = None,
) -> BuiltIndex:
    """An index listing ``images`` (platforms from their configs), then one attestation
    manifest (platform unknown/unknown) for each image index in ``attest``."""
    attestations = tuple(attestation_manifest(images[i]) for i in attest)
    descriptors = [image.descriptor() for image in images]
    descriptors += [
        att.descriptor(
            annotations={
                "vnd.docker.reference.digest": images[i].manifest_digest,
                "vnd.docker.reference.type": "attestation-manifest",
            }
        )
        for i, att in zip(attest, attestations, strict=True)
    ]
    index = make_index(descriptors, media_types=media_types, annotations=annotations)
    return BuiltIndex(index, INDEX_TYPES[media_types], tuple(images), attestations)


# ---------------------------------------------------------------------------------------
# Pushing
# ---------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class PushedImage:
    """A :class:`BuiltImage` in a registry; attribute access falls through to it."""

    host: str
    repo: str
    tag: str | None
    image: BuiltImage

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name == "image":
            raise AttributeError(name)
        return getattr(self.image, name)

    @property
    def reference(self) -> str:
        """``127.0.0.1:PORT/repo:tag`` (by digest if pushed without a tag)."""
        if self.tag is None:
            return self.digest_reference
        return f"{self.host}/{self.repo}:{self.tag}"

    @property
    def digest_reference(self) -> str:
        return f"{self.host}/{self.repo}@{self.image.manifest_digest}"


@dataclasses.dataclass(frozen=True)
class PushedIndex:
    host: str
    repo: str
    tag: str | None
    index: BuiltIndex

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name == "index":
            raise AttributeError(name)
        return getattr(self.index, name)

    @property
    def reference(self) -> str:
        if self.tag is None:
            return self.digest_reference
        return f"{self.host}/{self.repo}:{self.tag}"

    @property
    def digest_reference(self) -> str:
        return f"{self.host}/{self.repo}@{self.index.digest}"

    def image(self, os: str, architecture: str, variant: str | None = None) -> PushedImage:
        built = self.index.for_platform(os, architecture, variant)
        return PushedImage(self.host, self.repo, None, built)


def _host(registry: pusher.RegistryLike) -> str:
    return registry.url.split("://", 1)[1]


def push_built(
    registry: pusher.RegistryLike, repo: str, tag: str | None, image: BuiltImage
) -> PushedImage:
    """Push blobs, then the manifest (by digest, and under ``tag`` if given)."""
    for data in image.blobs().values():
        pusher.push_blob(registry, repo, data)
    pusher.push_manifest(
        registry, repo, tag or image.manifest_digest, image.manifest, image.manifest_media_type
    )
    return PushedImage(_host(registry), repo, tag, image)


def push_image(
    registry: pusher.RegistryLike,
    repo: str,
    tag: str | None = "latest",
    layers: Sequence[BuiltLayer] | None = None,
    **build_kwargs: Any,
) -> PushedImage:
    """Build (see :func:`build_image`) and push an image in one go."""
    return push_built(registry, repo, tag, build_image(layers, **build_kwargs))


def push_index(
    registry: pusher.RegistryLike, repo: str, tag: str | None, index: BuiltIndex
) -> PushedIndex:
    """Push every listed manifest by digest, then the index."""
    for image in index.all_manifests:
        push_built(registry, repo, None, image)
    pusher.push_manifest(registry, repo, tag or index.digest, index.index, index.media_type)
    return PushedIndex(_host(registry), repo, tag, index)


# ---------------------------------------------------------------------------------------
# Ready-made images
# ---------------------------------------------------------------------------------------


@functools.cache
def busybox_layer(compression: Compression = "gzip") -> BuiltLayer:
    """The host's static busybox as /bin/busybox, /bin/sh (symlink), /bin/echo (hardlink)."""
    if not BUSYBOX_PATH.exists():
        raise RuntimeError(f"{BUSYBOX_PATH} is missing: install Debian's busybox-static")
    return layer(
        {
            "bin": Dir(),
            "bin/busybox": File(BUSYBOX_PATH.read_bytes(), 0o755),
            "bin/sh": Symlink("busybox"),
            "bin/echo": Hardlink("bin/busybox"),
            "etc": Dir(),
            "etc/hostname": b"busybox\n",
            "tmp": Dir(0o1777),
        },
        compression,
    )


@functools.cache
def busybox_image(media_types: MediaTypes = "docker") -> BuiltImage:
    """A runnable linux/amd64 image: ``docker run --rm IMAGE echo ok`` prints ``ok``."""
    return build_image(
        [busybox_layer()],
        media_types=media_types,
        env=["PATH=/bin"],
        cmd=["sh"],
        history=[
            {"created": FIXED_CREATED, "created_by": "/bin/sh -c #(nop) ADD busybox /bin/"},
            {
                "created": FIXED_CREATED,
                "created_by": '/bin/sh -c #(nop)  CMD ["sh"]',
                "empty_layer": True,
            },
        ],
    )


@functools.cache
def busybox_index(media_types: MediaTypes = "oci") -> BuiltIndex:
    """linux/amd64 (busybox), linux/arm64/v8 and linux/arm/v7 (dummies), one attestation
    (for amd64), in that order."""
    amd64 = busybox_image(media_types)
    arm64 = build_image(
        [text_layer("platform.txt", "linux/arm64/v8\n")],
        media_types=media_types,
        architecture="arm64",
        variant="v8",
        cmd=["sh"],
    )
    armv7 = build_image(
        [text_layer("platform.txt", "linux/arm/v7\n")],
        media_types=media_types,
        architecture="arm",
        variant="v7",
        cmd=["sh"],
    )
    return build_index([amd64, arm64, armv7], media_types=media_types, attest=[0])


@functools.cache
def multilayer_image(media_types: MediaTypes = "docker") -> BuiltImage:
    """Four layers where the first repeats as the third (same blob, same diff_id),
    plus two empty-layer history entries."""
    base = text_layer("base.txt", "base\n")
    return build_image(
        [base, text_layer("a/one.txt", "one\n"), base, text_layer("a/two.txt", "two\n")],
        media_types=media_types,
        empty_layers=2,
        cmd=["/bin/sh"],
        labels={"org.example.test": "multilayer"},
    )


@functools.cache
def zstd_image() -> BuiltImage:
    """An OCI image with one zstd layer (Docker 20.10 cannot load it)."""
    return build_image([text_layer("zstd.txt", "zstd\n", "zstd")], media_types="oci")


@functools.cache
def uncompressed_image(media_types: MediaTypes = "docker") -> BuiltImage:
    """One uncompressed layer with 3 KiB of zero padding after the tar's end blocks."""
    padded = layer({"plain.txt": b"plain\n"}, "none", trailing_zeros=3072)
    return build_image([padded], media_types=media_types)


@functools.cache
def mixed_compression_image() -> BuiltImage:
    """OCI: gzip, zstd and uncompressed layers, and the gzip layer's tar again
    uncompressed (same diff_id, different blob)."""
    gz = text_layer("gz.txt", "gzip\n", "gzip")
    same_tar_plain = layer(gz.tar, "none")
    return build_image(
        [
            gz,
            text_layer("zst.txt", "zstd\n", "zstd"),
            text_layer("raw.txt", "raw\n", "none"),
            same_tar_plain,
        ],
        media_types="oci",
    )


# name -> (repo, tag, builder). Images are BuiltImage, indexes BuiltIndex.
STANDARD_IMAGES: dict[str, tuple[str, str, Any]] = {
    "busybox": ("test/busybox", "latest", lambda: busybox_image("docker")),
    "busybox_oci": ("test/busybox-oci", "latest", lambda: busybox_image("oci")),
    "multiarch": ("test/multiarch", "latest", lambda: busybox_index("oci")),
    "multiarch_docker": ("test/multiarch-docker", "latest", lambda: busybox_index("docker")),
    "multilayer": ("test/multilayer", "latest", lambda: multilayer_image("docker")),
    "multilayer_oci": ("test/multilayer-oci", "latest", lambda: multilayer_image("oci")),
    "zstd": ("test/zstd", "latest", zstd_image),
    "uncompressed": ("test/uncompressed", "latest", lambda: uncompressed_image("docker")),
    "mixed": ("test/mixed", "latest", mixed_compression_image),
}


SeededImages = dict[str, PushedImage | PushedIndex]


def seed_standard_images(registry: pusher.RegistryLike) -> SeededImages:
    """Push every image of :data:`STANDARD_IMAGES`; returns name -> pushed image."""
    pushed: SeededImages = {}
    for name, (repo, tag, builder) in STANDARD_IMAGES.items():
        built = builder()
        if isinstance(built, BuiltIndex):
            pushed[name] = push_index(registry, repo, tag, built)
        else:
            pushed[name] = push_built(registry, repo, tag, built)
    return pushed
