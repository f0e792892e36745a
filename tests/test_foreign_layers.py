"""Foreign (non-distributable) layers: skipped by default, fetched only when asked,
from the URL their descriptor names, never with credentials."""

from __future__ import annotations

import json
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dockerdrag import Credentials, Puller, RegistryError, UsageError
from tests.support.archive_check import read_docker_archive
from tests.support.client_options import client_options
from tests.support.header_recorder import HeaderRecorder
from tests.support.images import DOCKER_FOREIGN_LAYER, PushedImage, layer, push_image, text_layer
from tests.support.registry_server import RegistryServer

pytestmark = pytest.mark.anyio


@pytest.fixture
def foreign_host() -> Iterator[HeaderRecorder]:
    with HeaderRecorder() as recorder:
        yield recorder


def push_foreign_image(registry: RegistryServer, recorder: HeaderRecorder) -> PushedImage:
    foreign = layer(
        {"Files/windows.txt": b"pretend this is a Windows base layer\n"},
        media_type=DOCKER_FOREIGN_LAYER,
        urls=[f"{recorder.url}/foreign/layer.tar.gz"],
    )
    recorder.respond(foreign.blob, path="/foreign/layer.tar.gz")
    app = text_layer("app.txt", "app\n")
    return push_image(registry, "test/foreign", "latest", [foreign, app])


def options(registry: RegistryServer, tmp_path: Path, **extra: Any) -> dict[str, Any]:
    return {**client_options(registry), "cache_dir": tmp_path / "cache", **extra}


async def test_docker_format_refuses_unless_asked(
    basic_auth_registry: RegistryServer, foreign_host: HeaderRecorder, tmp_path: Path
) -> None:
    pushed = push_foreign_image(basic_auth_registry, foreign_host)
    async with Puller(**options(basic_auth_registry, tmp_path)) as puller:
        with pytest.raises(UsageError, match="include_foreign=True"):
            await puller.pull(pushed.reference, output=tmp_path / "x.tar")
    assert foreign_host.requests == []
    assert not (tmp_path / "x.tar").exists()


async def test_include_foreign_fetches_without_credentials(
    basic_auth_registry: RegistryServer, foreign_host: HeaderRecorder, tmp_path: Path
) -> None:
    pushed = push_foreign_image(basic_auth_registry, foreign_host)
    opts = options(basic_auth_registry, tmp_path, include_foreign=True)
    opts["insecure"] = [*opts.get("insecure", []), foreign_host.host]
    assert isinstance(opts["credentials"][basic_auth_registry.host], Credentials)
    async with Puller(**opts) as puller:
        result = await puller.pull(pushed.reference, output=tmp_path / "x.tar")
    (image,) = read_docker_archive(result.output)
    assert image.diff_ids == pushed.diff_ids
    assert len(foreign_host.requests) == 1
    assert foreign_host.requests[0].header("Authorization") is None


async def test_plain_http_foreign_url_needs_to_be_named(
    registry: RegistryServer, foreign_host: HeaderRecorder, tmp_path: Path
) -> None:
    pushed = push_foreign_image(registry, foreign_host)
    async with Puller(**options(registry, tmp_path, include_foreign=True)) as puller:
        with pytest.raises(RegistryError, match="plain http"):
            await puller.pull(pushed.reference, output=tmp_path / "x.tar")
    assert foreign_host.requests == []


async def test_oci_format_keeps_foreign_layers_as_references(
    registry: RegistryServer, foreign_host: HeaderRecorder, tmp_path: Path
) -> None:
    pushed = push_foreign_image(registry, foreign_host)
    async with Puller(**options(registry, tmp_path)) as puller:
        result = await puller.pull(pushed.reference, output=tmp_path / "o.tar", format="oci")
    assert foreign_host.requests == []
    foreign_hex = pushed.layer_digests[0].split(":")[1]
    app_hex = pushed.layer_digests[1].split(":")[1]
    with tarfile.open(result.output) as tar:
        names = tar.getnames()
        index = json.loads(tar.extractfile("index.json").read())  # type: ignore[union-attr]
    assert f"blobs/sha256/{app_hex}" in names
    assert f"blobs/sha256/{foreign_hex}" not in names
    assert index["manifests"][0]["digest"] == pushed.manifest_digest


async def test_oci_format_with_foreign_layers_included(
    registry: RegistryServer, foreign_host: HeaderRecorder, tmp_path: Path
) -> None:
    pushed = push_foreign_image(registry, foreign_host)
    opts = options(registry, tmp_path, include_foreign=True)
    opts["insecure"] = [*opts["insecure"], foreign_host.host]
    async with Puller(**opts) as puller:
        result = await puller.pull(pushed.reference, output=tmp_path / "o.tar", format="oci")
    with tarfile.open(result.output) as tar:
        manifest = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
        names = tar.getnames()
    assert f"blobs/sha256/{pushed.layer_digests[0].split(':')[1]}" in names
    (entry,) = manifest
    sources = entry["LayerSources"]
    assert list(sources) == [pushed.diff_ids[0]]
    assert sources[pushed.diff_ids[0]]["urls"] == [f"{foreign_host.url}/foreign/layer.tar.gz"]
