"""A full disk is a clear OutputError that loses nothing already verified.

Uses a small tmpfs (the suite runs as root in CI, as the real daemon tests do).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dockerdrag import OutputError, pull_image
from tests.support.registry_server import RegistryServer

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root (CI runs as root)"),
]


@contextlib.contextmanager
def small_disk(path: Path, size: str) -> Iterator[Path]:
    path.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=True)


async def test_output_disk_full(
    seeded_registry: tuple[RegistryServer, dict[str, Any]], tmp_path: Path
) -> None:
    server, images = seeded_registry
    pushed = images["busybox"]  # ~1 MB compressed, ~2 MB as a docker archive
    with small_disk(tmp_path / "small", "1m") as small:
        with pytest.raises(OutputError, match="no space left"):
            await pull_image(
                pushed.reference,
                output=small / "bb.tar",
                cache_dir=tmp_path / "cache",
                insecure=[server.host],
            )
        assert list(small.iterdir()) == []
    layer = pushed.layer_digests[0].split(":")[1]
    assert (tmp_path / "cache" / "blobs" / "sha256" / layer).exists()


async def test_cache_disk_full(
    seeded_registry: tuple[RegistryServer, dict[str, Any]], tmp_path: Path
) -> None:
    server, images = seeded_registry
    with (
        small_disk(tmp_path / "small", "256k") as small,
        pytest.raises(OutputError, match="no space left"),
    ):
        await pull_image(
            images["busybox"].reference,
            output=tmp_path / "bb.tar",
            cache_dir=small,
            insecure=[server.host],
        )
    assert not (tmp_path / "bb.tar").exists()
    assert [p for p in tmp_path.iterdir() if p.name.startswith(".")] == []
