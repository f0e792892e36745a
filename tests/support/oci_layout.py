"""An OCI image layout directory written by hand, for push tests (test-only helper)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from .images import OCI_CONFIG, OCI_INDEX, OCI_LAYER_TAR, OCI_MANIFEST


def write_random_layout(directory: Path, size: int) -> str:
    """An OCI layout of one image (tagged ``big``) whose only layer is ``size`` random bytes,
    stored uncompressed; returns the layer's digest."""
    blobs = directory / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    hasher = hashlib.sha256()
    partial = blobs / "partial"
    with partial.open("wb") as handle:
        for _ in range(0, size, 1 << 20):
            block = os.urandom(min(1 << 20, size - handle.tell()))
            hasher.update(block)
            handle.write(block)
    layer = "sha256:" + hasher.hexdigest()
    partial.rename(blobs / hasher.hexdigest())

    def blob(data: bytes) -> dict[str, object]:
        digest = hashlib.sha256(data).hexdigest()
        (blobs / digest).write_bytes(data)
        return {"digest": f"sha256:{digest}", "size": len(data)}

    config = json.dumps(
        {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": [layer]}}
    ).encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, **blob(config)},
            "layers": [{"mediaType": OCI_LAYER_TAR, "digest": layer, "size": size}],
        }
    ).encode()
    index = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {
                "mediaType": OCI_MANIFEST,
                **blob(manifest),
                "annotations": {"org.opencontainers.image.ref.name": "big"},
            }
        ],
    }
    (directory / "index.json").write_text(json.dumps(index))
    (directory / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    return layer
