"""End-to-end pulls from a real docker-registry into archives, re-read independently."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from dockerdrag import (
    Digest,
    InvalidReferenceError,
    ManifestUnknownError,
    NetworkError,
    PlatformNotFoundError,
    PlatformRequiredError,
    Puller,
    pull_image,
)
from tests.support.archive_check import read_docker_archive, tar_names
from tests.support.client_options import client_options
from tests.support.images import PushedImage, PushedIndex, push_image, text_layer
from tests.support.registry_server import RegistryServer

pytestmark = pytest.mark.anyio

SeededRegistry = tuple[RegistryServer, dict[str, Any]]


def no_leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("."))


def skopeo_inspect(archive: Path) -> dict[str, Any]:
    completed = subprocess.run(
        ["skopeo", "inspect", f"docker-archive:{archive}"],
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, Any] = json.loads(completed.stdout)
    return result


async def test_pull_single_image_every_registry_mode(
    seeded_any_registry: SeededRegistry, tmp_path: Path
) -> None:
    server, images = seeded_any_registry
    pushed: PushedImage = images["busybox"]
    options = client_options(server)
    async with Puller(cache_dir=tmp_path / "cache", **options) as puller:
        result = await puller.pull(pushed.reference, output=tmp_path / "bb.tar")
    assert result.output == tmp_path / "bb.tar"
    assert str(result.manifest_digest) == pushed.manifest_digest
    assert result.image_id == pushed.image_id
    assert [str(layer.digest) for layer in result.layers] == pushed.layer_digests
    assert [str(layer.diff_id) for layer in result.layers] == pushed.diff_ids
    assert str(result.platform) == "linux/amd64"
    (image,) = read_docker_archive(result.output)
    assert image.config == pushed.config
    assert image.repo_tags == [f"{server.host}/test/busybox:latest"]
    assert skopeo_inspect(result.output)["Layers"] == pushed.diff_ids
    assert no_leftovers(tmp_path) == []


@pytest.mark.parametrize(
    "name", ["busybox_oci", "multilayer", "multilayer_oci", "zstd", "uncompressed", "mixed"]
)
async def test_pull_media_types_and_layer_kinds(
    seeded_registry: SeededRegistry, tmp_path: Path, name: str
) -> None:
    server, images = seeded_registry
    pushed: PushedImage = images[name]
    result = await pull_image(
        pushed.reference,
        output=tmp_path / "x.tar",
        cache_dir=tmp_path / "c",
        insecure=[server.host],
    )
    (image,) = read_docker_archive(result.output)
    assert image.config == pushed.config
    assert image.diff_ids == pushed.diff_ids
    assert skopeo_inspect(result.output)["Layers"] == pushed.diff_ids


async def test_repeated_layer_is_stored_once_as_symlink(
    seeded_registry: SeededRegistry, tmp_path: Path
) -> None:
    server, images = seeded_registry
    pushed: PushedImage = images["multilayer"]
    assert pushed.layer_digests[0] == pushed.layer_digests[2]
    result = await pull_image(
        pushed.reference,
        output=tmp_path / "m.tar",
        cache_dir=tmp_path / "c",
        insecure=[server.host],
    )
    import tarfile

    with tarfile.open(result.output) as tar:
        layer_entries = [m for m in tar.getmembers() if m.name.endswith("/layer.tar")]
    assert len(layer_entries) == 4
    assert sum(m.issym() for m in layer_entries) == 1


async def test_multiarch_requires_platform_and_lists_real_platforms(
    seeded_registry: SeededRegistry, tmp_path: Path
) -> None:
    server, images = seeded_registry
    index: PushedIndex = images["multiarch"]
    with pytest.raises(PlatformRequiredError) as info:
        await pull_image(
            index.reference,
            output=tmp_path / "x.tar",
            cache_dir=tmp_path / "c",
            insecure=[server.host],
        )
    listed = [str(entry.platform) for entry in info.value.available]  # type: ignore[attr-defined]
    assert listed == ["linux/amd64", "linux/arm64/v8", "linux/arm/v7"]
    assert not (tmp_path / "x.tar").exists()
    assert not (tmp_path / "c" / "blobs" / "sha256").exists() or not any(
        (tmp_path / "c" / "blobs" / "sha256").iterdir()
    )


@pytest.mark.parametrize(
    ("platform", "expected"),
    [
        ("linux/amd64", ("linux", "amd64", None)),
        ("linux/x86_64", ("linux", "amd64", None)),
        ("linux/arm64", ("linux", "arm64", "v8")),
        ("linux/arm64/v8", ("linux", "arm64", "v8")),
        ("linux/aarch64", ("linux", "arm64", "v8")),
        ("linux/arm/v7", ("linux", "arm", "v7")),
        ("linux/arm", ("linux", "arm", "v7")),
    ],
)
@pytest.mark.parametrize("kind", ["multiarch", "multiarch_docker"])
async def test_platform_selection(
    seeded_registry: SeededRegistry,
    tmp_path: Path,
    platform: str,
    expected: tuple[str, str, str | None],
    kind: str,
) -> None:
    server, images = seeded_registry
    index: PushedIndex = images[kind]
    result = await pull_image(
        index.reference,
        platform=platform,
        output=tmp_path / "p.tar",
        cache_dir=tmp_path / "c",
        insecure=[server.host],
    )
    wanted = index.image(*expected)
    assert str(result.manifest_digest) == wanted.manifest_digest
    assert str(result.index_digest) == index.digest
    (image,) = read_docker_archive(result.output)
    assert image.config == wanted.config


async def test_unknown_platform_lists_what_exists(
    seeded_registry: SeededRegistry, tmp_path: Path
) -> None:
    server, images = seeded_registry
    with pytest.raises(PlatformNotFoundError) as info:
        await pull_image(
            images["multiarch"].reference,
            platform="linux/s390x",
            output=tmp_path / "x.tar",
            insecure=[server.host],
            cache_dir=tmp_path / "c",
        )
    assert "linux/arm/v7" in str(info.value) and "s390x" in str(info.value)
    assert not (tmp_path / "x.tar").exists()


async def test_digest_pull_has_no_tags_and_loads_untagged(
    seeded_registry: SeededRegistry, tmp_path: Path
) -> None:
    server, images = seeded_registry
    pushed: PushedImage = images["busybox"]
    result = await pull_image(
        pushed.digest_reference,
        output=tmp_path / "d.tar",
        cache_dir=tmp_path / "c",
        insecure=[server.host],
    )
    (image,) = read_docker_archive(result.output)
    assert image.repo_tags is None
    assert "repositories" not in tar_names(result.output)
    assert result.repo_tags == ()


async def test_name_tag_at_digest_fetches_by_digest_and_keeps_tag(
    seeded_registry: SeededRegistry, tmp_path: Path
) -> None:
    server, images = seeded_registry
    pushed: PushedImage = images["busybox"]
    # The tag names another image; the digest must win.
    reference = f"{server.host}/test/busybox:some-other-tag@{pushed.manifest_digest}"
    result = await pull_image(
        reference, output=tmp_path / "t.tar", cache_dir=tmp_path / "c", insecure=[server.host]
    )
    (image,) = read_docker_archive(result.output)
    assert image.config == pushed.config
    assert image.repo_tags == [f"{server.host}/test/busybox:some-other-tag"]


async def test_tag_override_names_the_archive(
    seeded_registry: SeededRegistry, tmp_path: Path
) -> None:
    server, images = seeded_registry
    result = await pull_image(
        images["busybox"].digest_reference,
        output=tmp_path / "t.tar",
        cache_dir=tmp_path / "c",
        insecure=[server.host],
        tag="docker.io/library/busybox:1.36",
    )
    (image,) = read_docker_archive(result.output)
    assert image.repo_tags == ["busybox:1.36"]


async def test_unknown_tag_is_manifest_unknown(registry: RegistryServer, tmp_path: Path) -> None:
    reference = f"{registry.host}/test/busybox:no-such-tag"
    with pytest.raises(ManifestUnknownError) as info:
        await pull_image(
            reference, output=tmp_path / "x.tar", cache_dir=tmp_path / "c", insecure=[registry.host]
        )
    assert "no-such-tag" in str(info.value)
    assert list(tmp_path.iterdir()) == [] or not (tmp_path / "x.tar").exists()


async def test_registry_down_is_a_network_error(tmp_path: Path) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    from dockerdrag import RetryPolicy

    async with Puller(
        insecure=[f"127.0.0.1:{port}"],
        cache_dir=tmp_path / "c",
        retry=RetryPolicy(attempts=2, base_delay=0.01),
    ) as puller:
        with pytest.raises(NetworkError) as info:
            await puller.pull(f"127.0.0.1:{port}/a/b:c", output=tmp_path / "x.tar")
    assert f"127.0.0.1:{port}" in str(info.value)
    assert not (tmp_path / "x.tar").exists()


@pytest.mark.parametrize(
    "reference",
    [
        "library/UPPER",
        "a//b",
        "busybox:",
        "busybox@sha256:abc",
        "busybox@md5:d41d8cd98f00b204e9800998ecf8427e",
        "a/../b",
        "",
        "busybox:" + "x" * 200,
    ],
)
async def test_malformed_reference_fails_before_any_io(reference: str, tmp_path: Path) -> None:
    with pytest.raises(InvalidReferenceError):
        await pull_image(reference, output=tmp_path / "x.tar", cache_dir=tmp_path / "c")
    assert list(tmp_path.iterdir()) == []


async def test_config_and_layers_reverified_from_cache(
    registry: RegistryServer, tmp_path: Path
) -> None:
    pushed = push_image(registry, "test/cached", "v1", [text_layer("f.txt", "cached\n")])
    first = await pull_image(
        pushed.reference,
        output=tmp_path / "1.tar",
        cache_dir=tmp_path / "c",
        insecure=[registry.host],
    )
    blob = tmp_path / "c" / "blobs" / "sha256" / Digest.parse(pushed.layer_digests[0]).hex
    assert blob.exists()
    second = await pull_image(
        pushed.reference,
        output=tmp_path / "2.tar",
        cache_dir=tmp_path / "c",
        insecure=[registry.host],
    )
    assert (tmp_path / "1.tar").read_bytes() == (tmp_path / "2.tar").read_bytes()
    assert first.image_id == second.image_id
    assert hashlib.sha256(pushed.config).hexdigest() == first.config_digest.hex
