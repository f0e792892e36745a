"""One image config, read once and the same way by ``inspect``, the platform and the writer.

The config below is valid for Docker but hard to read: a label holding invalid UTF-8 (Go
replaces each invalid byte with U+FFFD), keys that match fields only case-insensitively,
and repeated keys (the last scalar wins, maps merge).
"""

from __future__ import annotations

import json
import os
import tarfile
from pathlib import Path

from dockerdrag.image_config import parse_config
from tests.support.command import run_cli
from tests.support.images import build_image, push_built, text_layer
from tests.support.registry_server import RegistryServer

LAYER = text_layer("agree.txt", "agree\n")
CONFIG = (
    b'{"Architecture":"arm64","os":"windows","OS":"linux",'
    b'"config":{"Labels":{"broken":"\xe2\x82A"},"labels":{"j":"2"},"CMD":"run"},'
    b'"rootfs":{"type":"layers","diff_ids":["' + LAYER.diff_id.encode() + b'"]},'
    b'"history":[{"created_by":"x"}]}'
)
# Go: two invalid bytes, two replacement characters (Python's "replace" would give one).
BROKEN_LABEL = "\ufffd\ufffdA"


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKERDRAG_")}
    env.update(XDG_CACHE_HOME=str(tmp_path / "cache"), DOCKER_CONFIG=str(tmp_path))
    return env


def test_parse_config_reads_it_as_go_does() -> None:
    config = parse_config(CONFIG)
    assert str(config.platform) == "linux/arm64"
    assert dict(config.labels) == {"broken": BROKEN_LABEL, "j": "2"}
    assert config.cmd == ("run",)
    assert config.raw == CONFIG


def test_inspect_and_the_docker_archive_agree(registry: RegistryServer, tmp_path: Path) -> None:
    image = build_image([LAYER], config=CONFIG)
    pushed = push_built(registry, "agree/config", "v1", image)
    env = _env(tmp_path)
    insecure = ["--insecure", registry.host]

    inspected = run_cli("inspect", pushed.reference, *insecure, "--json", cwd=tmp_path, env=env)
    assert inspected.returncode == 0, inspected.stderr
    found = json.loads(inspected.stdout)
    assert found["config"]["labels"] == {"broken": BROKEN_LABEL, "j": "2"}
    assert found["config"]["cmd"] == ["run"]
    assert found["config"]["platform"] == "linux/arm64"

    pulled = run_cli(
        pushed.reference,
        *insecure,
        "--platform",
        "linux/arm64",
        "-o",
        "out.tar",
        cwd=tmp_path,
        env=env,
    )
    assert pulled.returncode == 0, pulled.stderr
    with tarfile.open(tmp_path / "out.tar") as tar:
        (manifest,) = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
        top = manifest["Layers"][-1].split("/")[0]
        record = json.loads(tar.extractfile(f"{top}/json").read())  # type: ignore[union-attr]
    assert (record["os"], record["architecture"]) == ("linux", "arm64")
    assert record["config"]["Labels"] == {"broken": BROKEN_LABEL, "j": "2"}
    assert record["config"]["Cmd"] == ["run"]
