"""Re-read an archive dockerdrag wrote and check it independently of the client code."""

from __future__ import annotations

import gzip
import hashlib
import json
import posixpath
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zstandard

from .images import PushedImage


@dataclass(frozen=True)
class ArchiveImage:
    config: bytes
    repo_tags: list[str] | None
    diff_ids: list[str]
    layer_paths: list[str]


def _member_bytes(tar: tarfile.TarFile, name: str, depth: int = 0) -> bytes:
    member = tar.getmember(name)
    if member.issym():
        assert depth < 5, f"symlink loop at {name}"
        target = posixpath.normpath(posixpath.join(posixpath.dirname(name), member.linkname))
        return _member_bytes(tar, target, depth + 1)
    handle = tar.extractfile(member)
    assert handle is not None, f"{name} is not a file"
    return handle.read()


def _uncompressed(data: bytes) -> bytes:
    """Layers of oci-format archives stay compressed; docker load sniffs magic bytes."""
    if data[:3] == b"\x1f\x8b\x08":
        return gzip.decompress(data)
    if data[:4] == b"\x28\xb5\x2f\xfd":
        return zstandard.ZstdDecompressor().decompressobj().decompress(data)
    return data


def read_docker_archive(path: Path) -> list[ArchiveImage]:
    """Parse manifest.json and verify configs and every layer against its diff_id."""
    with tarfile.open(path) as tar:
        manifest: list[dict[str, Any]] = json.loads(_member_bytes(tar, "manifest.json"))
        images = []
        for entry in manifest:
            config = _member_bytes(tar, entry["Config"])
            config_json = json.loads(config)
            diff_ids = config_json["rootfs"]["diff_ids"]
            assert len(diff_ids) == len(entry["Layers"])
            for layer_path, diff_id in zip(entry["Layers"], diff_ids, strict=True):
                data = _uncompressed(_member_bytes(tar, layer_path))
                assert "sha256:" + hashlib.sha256(data).hexdigest() == diff_id, layer_path
            images.append(ArchiveImage(config, entry["RepoTags"], diff_ids, entry["Layers"]))
        return images


def assert_archive_of(path: Path, image: PushedImage) -> None:
    """``path`` is a valid docker archive holding exactly ``image``: its config, its layers
    (each checked against its diff_id) and its name."""
    (archived,) = read_docker_archive(path)
    assert archived.config == image.config
    assert archived.diff_ids == image.diff_ids
    assert archived.repo_tags == [image.reference]


def tar_names(path: Path) -> list[str]:
    with tarfile.open(path) as tar:
        return tar.getnames()
