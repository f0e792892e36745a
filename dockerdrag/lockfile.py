"""Lock files: what a list pull resolved every line to, to pull exactly that again.

``dockerdrag pull -f images.txt -o bundle.tar`` writes ``bundle.lock.json``
beside the bundle (JSON, UTF-8, two-space indented, keys in a fixed order, so
the same pull writes the same bytes)::

    {
      "version": 1,
      "images": [
        {
          "reference": "alpine:3.20",          # the list's line, as written
          "platform": "linux/amd64",           # as asked (the line's or the default), or null
          "tag": null,                         # the line's --tag, or null
          "index_digest": "sha256:…",          # null when the reference named one manifest
          "manifests": [                       # one per platform pulled (index order)
            {
              "digest": "sha256:…",
              "media_type": "application/vnd.oci.image.manifest.v1+json",
              "platform": "linux/amd64",
              "config_digest": "sha256:…",
              "layers": [{"digest": "sha256:…", "size": 3623807, "media_type": "…"}]
            }
          ]
        }
      ]
    }

``dockerdrag pull --locked bundle.lock.json`` pulls those digests again
(:mod:`dockerdrag.list_pull`). The file is written atomically: a temp file
beside it (:class:`~dockerdrag.osfiles.TempOutput`), flushed to disk, then
renamed over the target.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .digest import Digest
from .errors import DockerDragError, LockfileError, OutputError
from .osfiles import TempOutput
from .store import describe_os_error

LOCKFILE_VERSION = 1
LOCK_SUFFIX = ".lock.json"

__all__ = [
    "LockedImage",
    "LockedLayer",
    "LockedManifest",
    "Lockfile",
    "default_lock_path",
    "read_lockfile",
    "write_lockfile",
]


@dataclass(frozen=True)
class LockedLayer:
    """A layer blob as the manifest describes it."""

    digest: Digest
    size: int
    media_type: str


@dataclass(frozen=True)
class LockedManifest:
    """One image manifest a line resolved to, with its config and layers."""

    digest: Digest
    media_type: str
    platform: str
    config_digest: Digest
    layers: tuple[LockedLayer, ...]


@dataclass(frozen=True)
class LockedImage:
    """One line of the list and what it resolved to.

    ``manifests[0]`` is the primary image (the one tagged in the archive);
    ``index_digest`` is set when the reference resolved to a multi-platform index.
    """

    reference: str
    platform: str | None
    tag: str | None
    index_digest: Digest | None
    manifests: tuple[LockedManifest, ...]

    @property
    def manifest_digest(self) -> Digest:
        """The primary image's manifest digest."""
        return self.manifests[0].digest

    @property
    def resolved_digest(self) -> Digest:
        """What the reference resolved to: the index's digest, else the manifest's."""
        return self.index_digest or self.manifest_digest


@dataclass(frozen=True)
class Lockfile:
    """Every line of an image list, resolved, in the list's order."""

    images: tuple[LockedImage, ...]

    def to_json(self) -> bytes:
        """The file's bytes: the same lock always gives the same bytes."""
        document = {"version": LOCKFILE_VERSION, "images": [_image_json(i) for i in self.images]}
        return (json.dumps(document, indent=2) + "\n").encode("utf-8")

    @classmethod
    def from_json(cls, data: bytes, source: str = "<lock>") -> Lockfile:
        """Parse a lock file's bytes; anything malformed raises LockfileError naming ``source``."""
        try:
            document = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise LockfileError(f"lock file {source} is not JSON: {exc}") from None
        try:
            document = _object(document, "the document")
            version = document.get("version")
            if version != LOCKFILE_VERSION:
                raise LockfileError(f"version {version!r} is not {LOCKFILE_VERSION}")
            images = _list(document.get("images"), "images")
            if not images:
                raise LockfileError("it locks no image")
            return cls(tuple(_image(item, n) for n, item in enumerate(images, start=1)))
        except DockerDragError as exc:
            raise LockfileError(f"lock file {source}: {exc}") from None


def default_lock_path(output: str | Path) -> Path:
    """The lock file beside a bundle: ``bundle.tar`` -> ``bundle.lock.json``."""
    path = Path(output)
    stem = path.stem if path.suffix == ".tar" else path.name
    return path.with_name(stem + LOCK_SUFFIX)


def read_lockfile(path: str | Path) -> Lockfile:
    """Read and parse the lock file at ``path``."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise LockfileError(f"cannot read lock file {path}: {exc.strerror or exc}") from None
    return Lockfile.from_json(data, str(path))


def write_lockfile(path: str | Path, lock: Lockfile) -> None:
    """Write ``lock`` to ``path`` atomically (a reader sees the old file or the new one)."""
    target = Path(path)
    try:
        with TempOutput(target) as temp:
            unwritten = memoryview(lock.to_json())
            while unwritten:
                unwritten = unwritten[os.write(temp.fd, unwritten) :]
            temp.publish()
    except OSError as exc:
        raise OutputError(describe_os_error(exc, f"writing lock file {target}")) from None


# ---------------------------------------------------------------------------- encoding


def _image_json(image: LockedImage) -> dict[str, Any]:
    return {
        "reference": image.reference,
        "platform": image.platform,
        "tag": image.tag,
        "index_digest": str(image.index_digest) if image.index_digest else None,
        "manifests": [
            {
                "digest": str(manifest.digest),
                "media_type": manifest.media_type,
                "platform": manifest.platform,
                "config_digest": str(manifest.config_digest),
                "layers": [
                    {
                        "digest": str(layer.digest),
                        "size": layer.size,
                        "media_type": layer.media_type,
                    }
                    for layer in manifest.layers
                ],
            }
            for manifest in image.manifests
        ],
    }


# ---------------------------------------------------------------------------- decoding


def _object(value: object, what: str) -> Mapping[str, object]:
    if not isinstance(value, dict):
        raise LockfileError(f"{what} must be a JSON object")
    return value


def _list(value: object, what: str) -> list[object]:
    if not isinstance(value, list):
        raise LockfileError(f"{what} must be a JSON array")
    return value


def _string(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise LockfileError(f"{what} must be a string")
    return value


def _optional_string(value: object, what: str) -> str | None:
    return None if value is None else _string(value, what)


def _digest(value: object, what: str) -> Digest:
    try:
        return Digest.parse(_string(value, what))
    except DockerDragError as exc:
        raise LockfileError(f"{what}: {exc}") from None


def _image(value: object, number: int) -> LockedImage:
    what = f"images[{number - 1}]"
    item = _object(value, what)
    index = item.get("index_digest")
    manifests = _list(item.get("manifests"), f"{what}.manifests")
    if not manifests:
        raise LockfileError(f"{what}.manifests is empty")
    return LockedImage(
        reference=_string(item.get("reference"), f"{what}.reference"),
        platform=_optional_string(item.get("platform"), f"{what}.platform"),
        tag=_optional_string(item.get("tag"), f"{what}.tag"),
        index_digest=None if index is None else _digest(index, f"{what}.index_digest"),
        manifests=tuple(
            _manifest(entry, f"{what}.manifests[{n}]") for n, entry in enumerate(manifests)
        ),
    )


def _manifest(value: object, what: str) -> LockedManifest:
    item = _object(value, what)
    layers = _list(item.get("layers"), f"{what}.layers")
    return LockedManifest(
        digest=_digest(item.get("digest"), f"{what}.digest"),
        media_type=_string(item.get("media_type"), f"{what}.media_type"),
        platform=_string(item.get("platform"), f"{what}.platform"),
        config_digest=_digest(item.get("config_digest"), f"{what}.config_digest"),
        layers=tuple(_layer(entry, f"{what}.layers[{n}]") for n, entry in enumerate(layers)),
    )


def _layer(value: object, what: str) -> LockedLayer:
    item = _object(value, what)
    size = item.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise LockfileError(f"{what}.size must be a whole number of bytes")
    return LockedLayer(
        digest=_digest(item.get("digest"), f"{what}.digest"),
        size=size,
        media_type=_string(item.get("media_type"), f"{what}.media_type"),
    )
