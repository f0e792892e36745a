"""What a pull of many small layers costs beyond the bytes (issue 18): one token for the
whole pull, no fsync per cached blob (the output alone is fsynced)."""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from dockerdrag import Puller, download
from dockerdrag.digest import Digest
from dockerdrag.registry import RegistryClient
from dockerdrag.store import BlobStore
from tests.support.archive_check import read_docker_archive
from tests.support.client_options import client_options
from tests.support.images import PushedImage, push_image, text_layer
from tests.support.registry_server import RegistryServer

pytestmark = pytest.mark.anyio

LAYERS = 24


def many_layers(server: RegistryServer, repository: str) -> PushedImage:
    layers = [text_layer(f"f{i}.txt", f"layer {i}\n" * 50) for i in range(LAYERS)]
    return push_image(server, repository, "v1", layers)


async def test_a_many_layer_pull_asks_for_one_token(
    token_registry: RegistryServer, tmp_path: Path
) -> None:
    token_server = token_registry.token_server
    assert token_server is not None
    image = many_layers(token_registry, "small/tokens")
    token_server.clear_requests()
    async with Puller(cache_dir=tmp_path / "c", **client_options(token_registry)) as puller:
        await puller.pull(image.reference, output=tmp_path / "x.tar")
    # The manifest's 401 asks for the token; the config and every layer reuse it,
    # however many of them start at once.
    assert len(token_server.requests_from("dockerdrag/")) == 1
    (archived,) = read_docker_archive(tmp_path / "x.tar")
    assert len(archived.layer_paths) == LAYERS


@pytest.mark.skipif(sys.platform != "linux", reason="names descriptors through /proc/self/fd")
async def test_cached_blobs_are_not_fsynced_the_output_is(
    registry: RegistryServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    image = many_layers(registry, "small/fsync")
    synced: list[str] = []
    guard = threading.Lock()
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        with guard:
            synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    cache = tmp_path / "cache"
    async with Puller(cache_dir=cache, **client_options(registry)) as puller:
        await puller.pull(image.reference, output=out_dir / "x.tar")
    assert [path for path in synced if path.startswith(str(cache))] == []
    assert [path for path in synced if Path(path).parent == out_dir]  # the archive
    assert len(list((cache / "blobs" / "sha256").iterdir())) == LAYERS + 1  # and the config
    (archived,) = read_docker_archive(out_dir / "x.tar")
    assert len(archived.layer_paths) == LAYERS


@pytest.mark.parametrize("renames_open_files", [True, False])
async def test_blobs_are_committed_on_the_event_loop_where_no_reader_can_hold_the_rename(
    registry: RegistryServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    renames_open_files: bool,
) -> None:
    """Where open files can be renamed, a verified blob is renamed into the cache on the
    event loop (no thread hop per blob); where they cannot (Windows), in a thread, where
    the rename may wait for a reader."""
    image = many_layers(registry, "small/commit")
    monkeypatch.setattr(download, "renames_open_files", lambda _directory: renames_open_files)
    committed_in: list[str] = []
    real_commit = BlobStore.commit

    def recording_commit(store: BlobStore, digest: Digest, size: int | None = None) -> Path:
        committed_in.append(threading.current_thread().name)
        return real_commit(store, digest, size)

    monkeypatch.setattr(BlobStore, "commit", recording_commit)
    loop_thread = threading.current_thread().name
    async with Puller(cache_dir=tmp_path / "c", **client_options(registry)) as puller:
        await puller.pull(image.reference, output=tmp_path / "x.tar")
    assert len(committed_in) == LAYERS + 1  # and the config
    on_loop = [name == loop_thread for name in committed_in]
    assert on_loop == [renames_open_files] * (LAYERS + 1)
    (archived,) = read_docker_archive(tmp_path / "x.tar")
    assert len(archived.layer_paths) == LAYERS


async def test_the_first_layer_is_asked_for_before_the_others_make_their_files(
    registry: RegistryServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every layer's download starts at once; the first one's request is made before the
    next layers take their locks and create their files (which, for dozens of layers,
    would delay it by milliseconds each)."""
    image = many_layers(registry, "small/first-request")
    layers = {layer.digest for layer in image.layers}
    locks = tmp_path / "c" / "locks"
    locked_when_asked: list[int] = []
    original = RegistryClient.open_blob

    @contextlib.asynccontextmanager
    async def noting(
        client: RegistryClient, reference: Any, digest: Digest, *args: Any, **kwargs: Any
    ) -> AsyncIterator[Any]:
        if str(digest) in layers:
            held = [path for path in locks.iterdir() if f"sha256:{path.stem}" in layers]
            locked_when_asked.append(len(held))
        async with original(client, reference, digest, *args, **kwargs) as response:
            yield response

    monkeypatch.setattr(RegistryClient, "open_blob", noting)
    async with Puller(cache_dir=tmp_path / "c", **client_options(registry)) as puller:
        await puller.pull(image.reference, output=tmp_path / "x.tar")
    assert len(locked_when_asked) == LAYERS
    assert locked_when_asked[0] == 1  # its own lock only
    (archived,) = read_docker_archive(tmp_path / "x.tar")
    assert len(archived.layer_paths) == LAYERS
