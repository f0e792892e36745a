"""The JSON shapes of a pull's results (dockerdrag/progress_json.py)."""

from __future__ import annotations

from pathlib import Path

from dockerdrag.digest import Digest
from dockerdrag.platform import Platform
from dockerdrag.progress_json import layer_json, result_json
from dockerdrag.pull_results import LayerResult, PullResult

LAYER = LayerResult(
    Digest.of(b"layer"), Digest.of(b"tar"), 5, "application/vnd.oci.image.layer.v1.tar+gzip"
)


def test_a_layer_is_its_digests_size_and_media_type() -> None:
    assert layer_json(LAYER) == {
        "digest": str(Digest.of(b"layer")),
        "diff_id": str(Digest.of(b"tar")),
        "size": 5,
        "media_type": "application/vnd.oci.image.layer.v1.tar+gzip",
    }


def test_a_result_lists_its_layers_as_layer_json_writes_them() -> None:
    result = PullResult(
        Path("out.tar"),
        "busybox:1",
        Digest.of(b"manifest"),
        None,
        Digest.of(b"config"),
        (LAYER, LAYER),
        Platform.parse("linux/amd64"),
        ("busybox:1",),
    )
    obj = result_json(result)
    assert obj["layers"] == [layer_json(LAYER)] * 2
    assert obj["size"] == 10
