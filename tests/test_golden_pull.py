"""Registry bytes of real images -> pulled over HTTP -> identical to Docker 20.10's `docker save`.

For each fixture the registry's own manifest and blobs are pushed into the real
registry; the pull names the image as Docker did (`127.0.0.1:5101/fid/NAME:latest`)
and must reproduce `docker-save.tar` byte for byte.
"""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest

from dockerdrag import Puller
from dockerdrag.docker_archive import DockerArchiveOptions
from tests.support import pusher
from tests.support.registry_server import RegistryServer

pytestmark = pytest.mark.anyio

FIXTURES = Path(__file__).parent / "fixtures" / "docker-save-20.10"
IMAGES = sorted(p.name for p in FIXTURES.iterdir() if p.is_dir() and not p.name.startswith("_"))


def push_fixture(registry: RegistryServer, name: str) -> str:
    registry_dir = FIXTURES / name / "registry"
    manifest = (registry_dir / "manifest.json").read_bytes()
    for blob in registry_dir.iterdir():
        if blob.name != "manifest.json":
            pusher.push_blob(registry, f"fid/{name}", blob.read_bytes())
    media_type = json.loads(manifest)["mediaType"]
    pusher.push_manifest(registry, f"fid/{name}", "latest", manifest, media_type)
    return f"{registry.host}/fid/{name}:latest"


def symlink_mtime(archive: Path) -> int | None:
    with tarfile.open(archive) as tar:
        times = [m.mtime for m in tar.getmembers() if m.issym()]
    return times[0] if times else None


@pytest.mark.parametrize("name", IMAGES)
async def test_pull_reproduces_docker_save(
    registry: RegistryServer, tmp_path: Path, name: str
) -> None:
    reference = push_fixture(registry, name)
    expected = FIXTURES / name / "docker-save.tar"
    options = DockerArchiveOptions(now=symlink_mtime(expected))
    async with Puller(
        insecure=[registry.host],
        cache_dir=tmp_path / "cache",
        archive_options=options,
        use_docker_config=False,
    ) as puller:
        result = await puller.pull(
            reference, output=tmp_path / "out.tar", tag=f"127.0.0.1:5101/fid/{name}:latest"
        )
    assert result.output.read_bytes() == expected.read_bytes()
