"""A read-only cache (a mounted volume, a CI image) serves the blobs it holds; the
blobs it lacks are fetched into a temporary directory, removed after the pull.

The cache is made read-only by a read-only bind mount (root, as the disk-full tests).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dockerdrag import pull_image
from tests.support.archive_check import read_docker_archive
from tests.support.fault_proxy import FaultProxy
from tests.support.registry_server import RegistryServer

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(os.geteuid() != 0, reason="mounting needs root (CI runs as root)"),
]

SeededRegistry = tuple[RegistryServer, dict[str, Any]]


@contextlib.contextmanager
def read_only(source: Path, path: Path) -> Iterator[Path]:
    """``source`` seen read-only at ``path``."""
    path.mkdir()
    subprocess.run(["mount", "--bind", str(source), str(path)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,ro,bind", str(path)], check=True)
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=True)


def _tree(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.mark.parametrize("output_format", ["docker", "oci"])
async def test_read_only_cache_serves_what_it_holds(
    seeded_registry: SeededRegistry, tmp_path: Path, output_format: str
) -> None:
    server, images = seeded_registry
    pushed = images["multilayer"]
    cache = tmp_path / "cache"
    await pull_image(
        pushed.reference, output=tmp_path / "a.tar", cache_dir=cache, insecure=[server.host]
    )
    shutil.rmtree(cache / "locks")  # a cache image made of blobs only
    before = _tree(cache)
    with (
        FaultProxy(server.url) as proxy,
        read_only(cache, tmp_path / "ro") as ro,
    ):
        await pull_image(
            pushed.reference.replace(server.host, proxy.host),
            output=tmp_path / "b.tar",
            format=output_format,
            tag=pushed.reference,
            cache_dir=ro,
            insecure=[proxy.host],
        )
        assert proxy.requests_for(r"/blobs/") == []  # every blob came from the cache
    assert _tree(cache) == before
    read_docker_archive(tmp_path / "b.tar")


async def test_blobs_a_read_only_cache_lacks_go_to_a_temporary_directory(
    seeded_registry: SeededRegistry,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server, images = seeded_registry
    pushed = images["multilayer"]
    cache = tmp_path / "cache"
    await pull_image(
        pushed.reference, output=tmp_path / "a.tar", cache_dir=cache, insecure=[server.host]
    )
    missing = pushed.layer_digests[0].split(":")[1]
    (cache / "blobs" / "sha256" / missing).unlink()
    before = _tree(cache)
    scratch_parent = tmp_path / "tmp"
    scratch_parent.mkdir()
    monkeypatch.setenv("TMPDIR", str(scratch_parent))
    caplog.set_level(logging.INFO, logger="dockerdrag")
    with read_only(cache, tmp_path / "ro") as ro:
        await pull_image(
            pushed.reference, output=tmp_path / "b.tar", cache_dir=ro, insecure=[server.host]
        )
    assert _tree(cache) == before
    read_docker_archive(tmp_path / "b.tar")
    assert f"the cache {ro} is read-only" in caplog.text
    assert list(scratch_parent.iterdir()) == []  # the temporary directory is gone


async def test_corrupt_blob_in_a_read_only_cache_is_fetched_aside(
    seeded_registry: SeededRegistry, tmp_path: Path
) -> None:
    server, images = seeded_registry
    pushed = images["busybox"]
    cache = tmp_path / "cache"
    await pull_image(
        pushed.reference, output=tmp_path / "a.tar", cache_dir=cache, insecure=[server.host]
    )
    layer = cache / "blobs" / "sha256" / pushed.layer_digests[0].split(":")[1]
    data = bytearray(layer.read_bytes())
    data[len(data) // 2] ^= 0xFF
    layer.write_bytes(bytes(data))
    with read_only(cache, tmp_path / "ro") as ro:
        await pull_image(
            pushed.reference, output=tmp_path / "b.tar", cache_dir=ro, insecure=[server.host]
        )
    read_docker_archive(tmp_path / "b.tar")
