"""Archives we write load into a real Docker daemon (20.10) and run."""

from __future__ import annotations

from pathlib import Path

import pytest

from dockerdrag import pull_image
from tests.support.dockerd import DockerDaemon
from tests.support.images import PushedImage, PushedIndex
from tests.support.registry_server import RegistryServer

pytestmark = [pytest.mark.anyio, pytest.mark.docker]


@pytest.mark.parametrize("name", ["busybox", "busybox_oci"])
async def test_pulled_busybox_loads_and_runs(
    seeded_registry: tuple[RegistryServer, dict[str, PushedImage]],
    dockerd: DockerDaemon,
    tmp_path: Path,
    name: str,
) -> None:
    server, images = seeded_registry
    pushed = images[name]
    result = await pull_image(
        pushed.reference,
        output=tmp_path / "bb.tar",
        cache_dir=tmp_path / "c",
        insecure=[server.host],
    )
    loaded = dockerd.load(result.output)
    assert loaded == [pushed.reference]
    assert dockerd.image_id(pushed.reference) == pushed.image_id
    assert dockerd.run(pushed.reference, "echo", "ok").strip() == "ok"


async def test_multiarch_platform_pull_loads_and_runs(
    seeded_registry: tuple[RegistryServer, dict[str, PushedIndex]],
    dockerd: DockerDaemon,
    tmp_path: Path,
) -> None:
    server, images = seeded_registry
    index = images["multiarch"]
    result = await pull_image(
        index.reference,
        platform="linux/amd64",
        output=tmp_path / "m.tar",
        cache_dir=tmp_path / "c",
        insecure=[server.host],
    )
    dockerd.load(result.output)
    assert dockerd.run(index.reference, "echo", "ok").strip() == "ok"


async def test_digest_pull_loads_untagged_then_runs_by_id(
    seeded_registry: tuple[RegistryServer, dict[str, PushedImage]],
    dockerd: DockerDaemon,
    tmp_path: Path,
) -> None:
    server, images = seeded_registry
    pushed = images["busybox"]
    result = await pull_image(
        pushed.digest_reference,
        output=tmp_path / "d.tar",
        cache_dir=tmp_path / "c",
        insecure=[server.host],
    )
    loaded = dockerd.load(result.output)
    assert loaded == [pushed.image_id]
    assert dockerd.run(pushed.image_id, "echo", "ok").strip() == "ok"


async def test_repeated_layer_image_loads_with_right_id(
    seeded_registry: tuple[RegistryServer, dict[str, PushedImage]],
    dockerd: DockerDaemon,
    tmp_path: Path,
) -> None:
    server, images = seeded_registry
    pushed = images["multilayer"]
    result = await pull_image(
        pushed.reference,
        output=tmp_path / "m.tar",
        cache_dir=tmp_path / "c",
        insecure=[server.host],
    )
    dockerd.load(result.output)
    assert dockerd.image_id(pushed.reference) == pushed.image_id
