"""Docker 25+ ``docker save`` archives, built from known blobs as moby's
``image/tarexport/save.go`` writes them (no Docker 25 is available to the tests).

The tar holds an OCI layout and a Docker archive at once:

* ``blobs/sha256/<diff_id>``: each layer, uncompressed (stored once however often
  the image lists it);
* ``blobs/sha256/<digest>``: one legacy v1 layer record per layer (JSON, referenced
  by nothing), the image config, and an OCI manifest pointing at the config;
* ``index.json``: one entry per tag, annotated with ``io.containerd.image.name`` and
  ``org.opencontainers.image.ref.name``;
* ``manifest.json`` (``Config``/``RepoTags``/``Layers`` as ``blobs/sha256/...`` paths),
  ``repositories`` (tag -> top diff_id), ``oci-layout``.

Docker 25 and 26 write the OCI manifest with only the foreign layers in ``layers``
(so ``"layers":[]`` for an ordinary image) and the platform in the config descriptor
and the index entry; Docker 27 lists every layer (``application/vnd.oci.image.layer.v1.tar``,
digest = diff_id) and no platform.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"


def _hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _compact(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _uncompressed(blob: bytes) -> bytes:
    return gzip.decompress(blob) if blob[:2] == b"\x1f\x8b" else blob


def write_docker25_archive(
    registry_dir: Path, reference: str, output: Path, *, docker_version: int = 25
) -> None:
    """Save the image in ``registry_dir`` (``manifest.json`` and blobs named by hex, as in
    ``tests/fixtures/docker-save-20.10/NAME/registry``) under ``reference``
    (``host/repo:tag``) as Docker ``docker_version`` (25, 26 or 27+) would."""
    manifest = json.loads((registry_dir / "manifest.json").read_bytes())
    config_raw = (registry_dir / manifest["config"]["digest"][7:]).read_bytes()
    config = json.loads(config_raw)
    diff_ids: list[str] = config["rootfs"]["diff_ids"]
    blobs: dict[str, bytes] = {}
    for number, layer in enumerate(manifest["layers"]):
        tar = _uncompressed((registry_dir / layer["digest"][7:]).read_bytes())
        assert f"sha256:{_hex(tar)}" == diff_ids[number]
        blobs[_hex(tar)] = tar
        record = {"id": f"{number:064x}", "created": "1970-01-01T00:00:00Z", "os": config["os"]}
        blobs[_hex(_compact(record))] = _compact(record)
    blobs[_hex(config_raw)] = config_raw
    platform = {"architecture": config["architecture"], "os": config["os"]}
    config_descriptor: dict[str, object] = {
        "mediaType": OCI_CONFIG,
        "digest": f"sha256:{_hex(config_raw)}",
        "size": len(config_raw),
    }
    layers: list[dict[str, object]] = []
    if docker_version < 27:
        config_descriptor["platform"] = platform
    else:
        layers = [
            {"mediaType": OCI_LAYER, "digest": diff_id, "size": len(blobs[diff_id[7:]])}
            for diff_id in diff_ids
        ]
    oci_manifest = _compact(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": config_descriptor,
            "layers": layers,
        }
    )
    blobs[_hex(oci_manifest)] = oci_manifest
    name, _, tag = reference.rpartition(":")
    entry: dict[str, object] = {
        "mediaType": OCI_MANIFEST,
        "digest": f"sha256:{_hex(oci_manifest)}",
        "size": len(oci_manifest),
        "annotations": {
            "io.containerd.image.name": reference,
            "org.opencontainers.image.ref.name": tag,
        },
    }
    if docker_version < 27:
        entry["platform"] = platform
    files = {
        "index.json": _compact({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [entry]}),
        "manifest.json": _compact(
            [
                {
                    "Config": f"blobs/sha256/{_hex(config_raw)}",
                    "RepoTags": [reference],
                    "Layers": [f"blobs/sha256/{diff_id[7:]}" for diff_id in diff_ids],
                }
            ]
        )
        + b"\n",
        "oci-layout": b'{"imageLayoutVersion": "1.0.0"}',
        "repositories": _compact({name: {tag: diff_ids[-1][7:]}}) + b"\n",
    }
    files.update({f"blobs/sha256/{digest}": data for digest, data in blobs.items()})
    with tarfile.open(output, "w", format=tarfile.USTAR_FORMAT) as archive:
        for directory in ("blobs", "blobs/sha256"):
            info = tarfile.TarInfo(directory)
            info.type = tarfile.DIRTYPE
            info.mode = 0o755
            archive.addfile(info)
        for member_name in sorted(files):
            info = tarfile.TarInfo(member_name)
            info.size = len(files[member_name])
            info.mode = 0o644
            archive.addfile(info, io.BytesIO(files[member_name]))
