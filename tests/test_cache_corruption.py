"""A cached blob that rotted (one byte flipped, size unchanged) is removed, fetched
again and the pull goes on with a warning naming the file, in every format."""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Any

import pytest

from dockerdrag import DiffIDMismatchError, pull_image
from tests.support.archive_check import read_docker_archive
from tests.support.command import run_cli
from tests.support.images import push_image, text_layer
from tests.support.registry_server import RegistryServer

pytestmark = pytest.mark.anyio

SeededRegistry = tuple[RegistryServer, dict[str, Any]]


def _flip_middle_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _cached_layer(cache: Path, pushed: Any) -> Path:
    return cache / "blobs" / "sha256" / pushed.layer_digests[0].split(":")[1]


def _check_output(output: Path, output_format: str) -> None:
    if output_format == "oci-dir":
        for blob in (output / "blobs" / "sha256").iterdir():
            assert hashlib.sha256(blob.read_bytes()).hexdigest() == blob.name
    else:
        read_docker_archive(output)  # every layer checked against its diff_id


@pytest.mark.parametrize(
    ("image", "output_format"),
    [
        ("busybox", "docker"),  # gzip: the decompressor's CRC check fails
        ("uncompressed", "docker"),  # the diff_id check fails
        ("busybox", "oci"),
        ("busybox", "oci-dir"),
    ],
)
async def test_corrupt_cached_layer_is_fetched_again(
    seeded_registry: SeededRegistry,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    image: str,
    output_format: str,
) -> None:
    server, images = seeded_registry
    pushed = images[image]
    cache = tmp_path / "cache"
    await pull_image(
        pushed.reference, output=tmp_path / "first.tar", cache_dir=cache, insecure=[server.host]
    )
    layer = _cached_layer(cache, pushed)
    _flip_middle_byte(layer)
    caplog.set_level(logging.WARNING, logger="dockerdrag")
    output = tmp_path / f"second.{output_format}"
    await pull_image(
        pushed.reference,
        output=output,
        format=output_format,
        cache_dir=cache,
        insecure=[server.host],
    )
    _check_output(output, output_format)
    assert f"cached blob {layer} is corrupt" in caplog.text
    assert hashlib.sha256(layer.read_bytes()).hexdigest() == layer.name  # repaired


async def test_a_wrong_diff_id_is_still_an_error_with_an_intact_cache(
    registry: RegistryServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A cached blob whose digest holds is not the cache's fault: the error stands."""
    built = text_layer("a", "a\n")
    pushed = push_image(registry, "test/lying-diff-id", "latest", [built])
    cache = tmp_path / "cache"
    await pull_image(
        pushed.reference, output=tmp_path / "a.tar", cache_dir=cache, insecure=[registry.host]
    )
    wrong = push_image(
        registry,
        "test/lying-diff-id",
        "wrong",
        [built],
        config=None,
        extra={"rootfs": {"type": "layers", "diff_ids": ["sha256:" + "0" * 64]}},
    )
    with pytest.raises(DiffIDMismatchError):
        await pull_image(
            wrong.reference, output=tmp_path / "b.tar", cache_dir=cache, insecure=[registry.host]
        )
    assert "is corrupt" not in caplog.text
    assert _cached_layer(cache, pushed).exists()


def test_the_command_prints_the_warning(seeded_registry: SeededRegistry, tmp_path: Path) -> None:
    server, images = seeded_registry
    pushed = images["busybox"]
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "xdg"), "DOCKER_CONFIG": str(tmp_path)}
    args = [pushed.reference, "--insecure", server.host, "-o", "bb.tar"]
    assert run_cli(*args, cwd=tmp_path, env=env).returncode == 0
    layer = _cached_layer(tmp_path / "xdg" / "dockerdrag", pushed)
    _flip_middle_byte(layer)
    completed = run_cli(*args, cwd=tmp_path, env=env)
    assert completed.returncode == 0, completed.stderr
    assert f"cached blob {layer} is corrupt: removed it, fetching it again" in completed.stderr
    read_docker_archive(tmp_path / "bb.tar")
