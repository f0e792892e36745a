"""The JSON documents of an OCI layout plan, as Docker 25+ writes them.

``index.json`` (compact, no trailing newline), ``manifest.json`` and ``repositories``
(Go's ``json.Encoder`` output: compact, HTML-safe escaping, one trailing newline) and
``oci-layout``, from a :class:`~dockerdrag.oci_layout.LayoutPlan`.
"""

from __future__ import annotations

from typing import Final

from .digest import Digest
from .gojson import encode_value, go_map_order
from .manifest import Descriptor
from .media_types import MEDIA_TYPE_OCI_INDEX
from .oci_layout import DockerItem, LayoutPlan

__all__ = ["BLOB_PREFIX", "OCI_LAYOUT_BYTES", "blob_name", "metadata_files"]

OCI_LAYOUT_BYTES: Final = b'{"imageLayoutVersion": "1.0.0"}'
"""The exact content of the ``oci-layout`` file (as Docker writes it, no newline)."""
BLOB_PREFIX: Final = "blobs/sha256/"
"""The directory of the blobs, named by their hex digest."""


def blob_name(digest: Digest) -> str:
    """The layout path of the blob ``digest``."""
    return BLOB_PREFIX + digest.hex


def _index_json(layout: LayoutPlan) -> bytes:
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


def _manifest_entry(item: DockerItem) -> dict[str, object]:
    entry: dict[str, object] = {
        "Config": blob_name(item.config),
        "RepoTags": [ref.familiar_tagged() for ref in item.tags] or None,
        "Layers": [blob_name(digest) for digest in item.layers],
    }
    if item.layer_sources:
        entry["LayerSources"] = go_map_order(
            {str(k): _layer_source(v) for k, v in item.layer_sources.items()}
        )
    return entry


def _manifest_json(layout: LayoutPlan) -> bytes:
    """``manifest.json``: Go's ``json.Encoder`` output, one trailing newline."""
    return (encode_value([_manifest_entry(item) for item in layout.items]) + "\n").encode("utf-8")


def _repositories_json(layout: LayoutPlan) -> bytes | None:
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


def metadata_files(layout: LayoutPlan) -> list[tuple[str, bytes]]:
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
