"""push_archive: archives pulled from one registry, pushed into another, pulled back."""

from __future__ import annotations

import gzip
import json
import shutil
import socket
from collections.abc import Callable
from pathlib import Path

import pytest

from dockerdrag import (
    Credentials,
    IntegrityError,
    NetworkError,
    Puller,
    RetryPolicy,
    UsageError,
    push_archive,
)
from dockerdrag.events import LayerPhase, LayerProgress, ManifestPushed, PushEvent
from tests.support import pusher
from tests.support.archive_check import read_docker_archive
from tests.support.docker25_archive import write_docker25_archive
from tests.support.dockerd import DockerDaemon
from tests.support.fault_proxy import FaultProxy, drop_request_after, status, throttle
from tests.support.images import SeededImages
from tests.support.oci_layout import write_random_layout
from tests.support.registry_server import RegistryServer

pytestmark = pytest.mark.anyio

SeededRegistry = tuple[RegistryServer, SeededImages]
Factory = Callable[..., RegistryServer]


def client_options(server: RegistryServer) -> dict[str, object]:
    """The options a client needs for ``server`` (insecure, CA, credentials)."""
    options: dict[str, object] = {"use_docker_config": False}
    if server.insecure:
        options["insecure"] = [server.host]
    if server.ca_pem_path is not None:
        options["ca_cert"] = server.ca_pem_path
    if server.username is not None and server.password is not None:
        options["credentials"] = {server.host: Credentials(server.username, server.password)}
    return options


async def pull(
    server: RegistryServer,
    references: list[str],
    output: Path,
    cache: Path,
    *,
    format: str = "oci",
    platform: str | None = "all",
) -> None:
    async with Puller(cache_dir=cache, include_attestations=True, **client_options(server)) as p:  # type: ignore[arg-type]
        await p.pull_many(references, output=output, format=format, platform=platform)


def layout_blobs(archive: Path) -> set[str]:
    """The blob names of an OCI layout, tar or directory."""
    import tarfile

    if archive.is_dir():
        return {p.name for p in (archive / "blobs" / "sha256").iterdir()}
    with tarfile.open(archive) as tar:
        return {
            name.rsplit("/", 1)[1] for name in tar.getnames() if name.startswith("blobs/sha256/")
        }


@pytest.mark.parametrize("output_format", ["oci", "oci-dir"])
async def test_oci_round_trip_keeps_every_digest(
    seeded_registry: SeededRegistry,
    registry_factory: Factory,
    tmp_path: Path,
    output_format: str,
) -> None:
    source, images = seeded_registry
    target = registry_factory(auth="token")
    refs = [images["multiarch"].reference, images["busybox_oci"].reference]
    archive = tmp_path / "bundle"
    await pull(source, refs, archive, tmp_path / "cache-a", format=output_format)

    events: list[PushEvent] = []
    result = await push_archive(
        archive,
        f"{target.host}/mirror",
        progress=events.append,
        cache_dir=tmp_path / "work",
        **client_options(target),  # type: ignore[arg-type]
    )

    assert [image.reference for image in result.images] == [
        f"{target.host}/mirror/test/multiarch:latest",
        f"{target.host}/mirror/test/busybox-oci:latest",
    ]
    assert [str(image.digest) for image in result.images] == [
        images["multiarch"].digest,
        images["busybox_oci"].manifest_digest,
    ]
    assert not any(image.rewritten for image in result.images)
    # busybox-oci's blobs are the multi-platform image's amd64 ones: mounted (token auth
    # scoped to pull from the other repository)
    assert result.mounted == 2
    assert [e.rewritten for e in events if isinstance(e, ManifestPushed)] == [False, False]
    # The registry serves the archive's own bytes under the source's tags.
    for name, repo in (
        ("multiarch", "mirror/test/multiarch"),
        ("busybox_oci", "mirror/test/busybox-oci"),
    ):
        original = pusher.get_manifest(source, images[name].repo, "latest")
        copied = pusher.get_manifest(target, repo, "latest")
        assert copied.body == original.body

    again = tmp_path / "again"
    await pull(
        target,
        [
            f"{target.host}/mirror/test/multiarch:latest",
            f"{target.host}/mirror/test/busybox-oci:latest",
        ],
        again,
        tmp_path / "cache-b",
        format=output_format,
    )
    assert layout_blobs(again) == layout_blobs(archive)


async def test_sparse_index_is_refused_before_any_upload(
    seeded_registry: SeededRegistry, registry_factory: Factory, tmp_path: Path
) -> None:
    source, images = seeded_registry
    target = registry_factory()
    archive = tmp_path / "one.tar"
    await pull(
        source, [images["multiarch"].reference], archive, tmp_path / "c", platform="linux/amd64"
    )
    with FaultProxy(target.url) as proxy:
        with pytest.raises(IntegrityError, match="does not hold"):
            await push_archive(
                archive, f"{proxy.host}/m", insecure=[proxy.host], cache_dir=tmp_path / "w"
            )
        assert proxy.requests == []


def flip_byte_in(archive: Path, member: str, damaged: Path) -> None:
    """A copy of the tar ``archive`` with one byte of ``member``'s data inverted."""
    import tarfile

    shutil.copyfile(archive, damaged)
    with tarfile.open(archive) as tar:
        info = tar.getmember(member)
    with damaged.open("r+b") as handle:
        handle.seek(info.offset_data + info.size // 2)
        byte = handle.read(1)
        handle.seek(-1, 1)
        handle.write(bytes([byte[0] ^ 0xFF]))


@pytest.mark.parametrize("output_format", ["oci", "docker"])
async def test_a_flipped_byte_is_refused_before_anything_is_uploaded(
    seeded_registry: SeededRegistry,
    registry_factory: Factory,
    tmp_path: Path,
    output_format: str,
) -> None:
    source, images = seeded_registry
    target = registry_factory()
    archive = tmp_path / "bb.tar"
    await pull(
        source,
        [images["busybox"].reference],
        archive,
        tmp_path / "c",
        format=output_format,
        platform=None,
    )
    layer = (
        f"blobs/sha256/{images['busybox'].layer_digests[0].split(':')[1]}"
        if output_format == "oci"
        else next(name for name in _tar_names(archive) if name.endswith("/layer.tar"))
    )
    damaged = tmp_path / "damaged.tar"
    flip_byte_in(archive, layer, damaged)
    with FaultProxy(target.url) as proxy:
        with pytest.raises(IntegrityError):
            await push_archive(
                damaged, f"{proxy.host}/m", insecure=[proxy.host], cache_dir=tmp_path / "w"
            )
        assert proxy.requests == []


def _tar_names(archive: Path) -> list[str]:
    import tarfile

    with tarfile.open(archive) as tar:
        return tar.getnames()


async def test_docker_archive_round_trip_loads_and_runs(
    seeded_registry: SeededRegistry,
    registry_factory: Factory,
    dockerd: DockerDaemon,
    tmp_path: Path,
) -> None:
    source, images = seeded_registry
    target = registry_factory(auth="basic")
    busybox = images["busybox"]
    archive = tmp_path / "bb.tar"
    await pull(source, [busybox.reference], archive, tmp_path / "c", format="docker", platform=None)
    options = client_options(target)

    first = await push_archive(archive, f"{target.host}/team", cache_dir=tmp_path / "w", **options)  # type: ignore[arg-type]
    (image,) = first.images
    assert image.rewritten
    assert image.reference == f"{target.host}/team/test/busybox:latest"
    manifest = json.loads(pusher.get_manifest(target, "team/test/busybox", "latest").body)
    assert manifest["mediaType"] == "application/vnd.docker.distribution.manifest.v2+json"
    assert manifest["config"]["digest"] == busybox.config_digest  # the image ID survives
    # Deterministic gzip: the same archive pushed again gives the same blobs and manifest.
    second = await push_archive(
        archive, f"{target.host}/again", cache_dir=tmp_path / "w", **options
    )  # type: ignore[arg-type]
    assert second.images[0].digest == image.digest
    assert second.uploaded == first.uploaded == 2

    again = tmp_path / "again.tar"
    await pull(target, [image.reference], again, tmp_path / "c2", format="docker", platform=None)
    (reloaded,) = read_docker_archive(again)
    assert reloaded.config == busybox.config
    assert dockerd.load(again) == [image.reference]
    assert dockerd.image_id(image.reference) == busybox.image_id
    assert dockerd.run(image.reference, "echo", "ok").strip() == "ok"


async def test_existing_blobs_are_skipped_and_shared_ones_mounted(
    seeded_registry: SeededRegistry, registry_factory: Factory, tmp_path: Path
) -> None:
    source, images = seeded_registry
    target = registry_factory()
    busybox = images["busybox_oci"]
    archive = tmp_path / "two-names.tar"
    copy_name = f"{source.host}/test/copy:v2"
    async with Puller(cache_dir=tmp_path / "c", **client_options(source)) as puller:  # type: ignore[arg-type]
        await puller.pull_many(
            [busybox.reference, busybox.reference],
            output=archive,
            tags=[None, copy_name],
            format="oci",
        )
    blobs = 1 + len(busybox.layer_digests)
    with FaultProxy(target.url) as proxy:
        options = {"insecure": [proxy.host], "cache_dir": tmp_path / "w"}
        first = await push_archive(archive, f"{proxy.host}/m", **options)  # type: ignore[arg-type]
        assert [image.reference for image in first.images] == [
            f"{proxy.host}/m/test/busybox-oci:latest",
            f"{proxy.host}/m/test/copy:v2",
        ]
        assert (first.uploaded, first.mounted, first.existing) == (blobs, blobs, 0)
        mounts = [r for r in proxy.requests_for("/blobs/uploads/", "POST") if "mount=" in r.query]
        assert len(mounts) == blobs
        assert all(
            "from=m%2Ftest%2Fbusybox-oci" in r.query or "from=m/test/busybox-oci" in r.query
            for r in mounts
        )
        assert {r.status for r in mounts} == {201}

        proxy.clear_requests()
        events: list[PushEvent] = []
        second = await push_archive(archive, f"{proxy.host}/m", progress=events.append, **options)  # type: ignore[arg-type]
        phases = [e.phase for e in events if isinstance(e, LayerProgress)]
        assert set(phases) == {LayerPhase.WAITING, LayerPhase.EXISTS}  # nothing is uploading
        assert (second.uploaded, second.mounted, second.existing) == (0, 0, 2 * blobs)
        # HEADs, then manifests (besides the /v2/ that opens a plain-HTTP connection)
        assert {r.method for r in proxy.requests if r.path != "/v2/"} == {"HEAD", "PUT"}
        assert len(proxy.requests_for("/blobs/", "HEAD")) == 2 * blobs


async def test_an_upload_cut_mid_layer_resumes_where_the_registry_stands(
    registry_factory: Factory, tmp_path: Path
) -> None:
    size, chunk, cut = 100 << 20, 16 << 20, 5 << 20
    layer = write_random_layout(tmp_path / "layout", size)
    target = registry_factory()
    with FaultProxy(target.url) as proxy:
        uploads = r"/blobs/uploads/."
        # The config's chunk and the layer's first three pass (a fault that changes
        # nothing: their answers are empty); the layer's fourth is cut after 5 MiB, before
        # the registry saw any of it.
        proxy.add(throttle(1e12), path=uploads, method="PATCH", times=4)
        proxy.add(drop_request_after(cut), path=uploads, method="PATCH")
        result = await push_archive(
            tmp_path / "layout",
            f"{proxy.host}/big",
            insecure=[proxy.host],
            chunk_size=chunk,
            cache_dir=tmp_path / "w",
        )
        assert result.images[0].reference == f"{proxy.host}/big:big"
        patches = [
            r
            for r in proxy.requests_for(uploads, "PATCH")
            if int(r.header("Content-Length") or 0) > 1000  # the layer's, not the config's
        ]
        statuses = proxy.requests_for(uploads, "GET")
        starts = proxy.requests_for("/blobs/uploads/$", "POST")
    assert len(starts) == 2  # the config's upload and the layer's: never started over
    ranges = [r.header("Content-Range") for r in patches]
    assert ranges[3] == f"{3 * chunk}-{4 * chunk - 1}"  # the cut chunk ...
    assert patches[3].request_bytes == cut and patches[3].status is None
    assert [r.response_header("Range") for r in statuses] == [f"0-{3 * chunk - 1}"]
    assert ranges[4] == f"{3 * chunk}-{4 * chunk - 1}"  # ... sent again from its start
    assert len(patches) == 8  # 7 chunks, one of them twice
    # The registry received every byte of the layer exactly once.
    assert sum(r.request_bytes for r in patches if r is not patches[3]) == size
    assert pusher.blob_exists(target, "big", layer)


async def test_an_upload_the_registry_dropped_starts_over(
    registry_factory: Factory, tmp_path: Path
) -> None:
    size, chunk = 3 << 20, 1 << 20
    layer = write_random_layout(tmp_path / "layout", size)
    target = registry_factory()
    with FaultProxy(target.url) as proxy:
        uploads = r"/blobs/uploads/."
        proxy.add(throttle(1e12), path=uploads, method="PATCH", times=1)  # the config
        proxy.add(drop_request_after(1000), path=uploads, method="PATCH")
        unknown = b'{"errors":[{"code":"BLOB_UPLOAD_UNKNOWN","message":"blob upload unknown"}]}'
        proxy.add(status(404, body=unknown), path=uploads, method="GET")
        await push_archive(
            tmp_path / "layout",
            f"{proxy.host}/dropped",
            insecure=[proxy.host],
            chunk_size=chunk,
            cache_dir=tmp_path / "w",
        )
        starts = proxy.requests_for("/blobs/uploads/$", "POST")
    assert len(starts) == 3  # config, layer, layer again
    assert pusher.blob_exists(target, "dropped", layer)


async def test_an_unreachable_registry_is_one_network_error(
    seeded_registry: SeededRegistry, tmp_path: Path
) -> None:
    source, images = seeded_registry
    archive = tmp_path / "bb.tar"
    await pull(source, [images["busybox_oci"].reference], archive, tmp_path / "c", platform=None)
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
    host = f"127.0.0.1:{closed.getsockname()[1]}"
    try:
        with pytest.raises(NetworkError, match=host):
            await push_archive(
                archive,
                f"{host}/x",
                insecure=[host],
                retry=RetryPolicy(attempts=1),
                cache_dir=tmp_path / "w",
            )
    finally:
        closed.close()
    assert list((tmp_path / "w").iterdir()) == []  # the work directory is gone


FIXTURES = Path(__file__).resolve().parent / "fixtures" / "docker-save-20.10"


@pytest.mark.parametrize("docker_version", [25, 27])
async def test_docker_25_and_27_archives(
    registry_factory: Factory, tmp_path: Path, docker_version: int
) -> None:
    """Docker 25/26 layouts leave their layers to manifest.json: their images are pushed as
    legacy ones; Docker 27's list every layer: pushed as they are."""
    archive = tmp_path / "saved.tar"
    registry_dir = FIXTURES / "multi" / "registry"
    write_docker25_archive(
        registry_dir, "example.com/team/multi:1", archive, docker_version=docker_version
    )
    target = registry_factory()
    result = await push_archive(
        archive, f"{target.host}/up", insecure=[target.host], cache_dir=tmp_path / "w"
    )
    (image,) = result.images
    assert image.reference == f"{target.host}/up/team/multi:1"
    assert image.rewritten is (docker_version < 27)
    pushed = pusher.get_manifest(target, "up/team/multi", "1")
    source_config = json.loads((registry_dir / "manifest.json").read_bytes())["config"]["digest"]
    assert json.loads(pushed.body)["config"]["digest"] == source_config
    assert str(image.digest) == pushed.digest


async def test_a_docker_save_archive_and_a_compressed_one(
    registry_factory: Factory, tmp_path: Path
) -> None:
    saved = FIXTURES / "multi" / "docker-save.tar"
    target = registry_factory()
    options = {"insecure": [target.host], "cache_dir": tmp_path / "w"}
    result = await push_archive(saved, f"{target.host}/up", **options)  # type: ignore[arg-type]
    assert [(i.reference, i.rewritten) for i in result.images] == [
        (f"{target.host}/up/fid/multi:latest", True)
    ]
    compressed = tmp_path / "saved.tar.gz"
    compressed.write_bytes(gzip.compress(saved.read_bytes()))
    with pytest.raises(UsageError, match="decompress it first"):
        await push_archive(compressed, f"{target.host}/up", **options)  # type: ignore[arg-type]


async def test_a_registry_alone_as_destination(
    seeded_registry: SeededRegistry, registry_factory: Factory, tmp_path: Path
) -> None:
    source, images = seeded_registry
    target = registry_factory()
    archive = tmp_path / "bb.tar"
    await pull(source, [images["busybox_oci"].reference], archive, tmp_path / "c", platform=None)
    events: list[PushEvent] = []
    result = await push_archive(
        archive,
        target.host,
        insecure=[target.host],
        cache_dir=tmp_path / "w",
        progress=events.append,
    )
    assert [i.reference for i in result.images] == [f"{target.host}/test/busybox-oci:latest"]
    uploads = [e for e in events if isinstance(e, LayerProgress)]
    for digest in {e.digest for e in uploads}:
        phases = [e.phase for e in uploads if e.digest == digest]
        assert phases[0] is LayerPhase.WAITING and phases[-1] is LayerPhase.COMPLETE
        assert set(phases[1:-1]) == {LayerPhase.UPLOADING}

    write_random_layout(tmp_path / "layout", 1000)  # named only by its tag, "big"
    with pytest.raises(UsageError, match="only by its tag"):
        await push_archive(tmp_path / "layout", target.host, insecure=[target.host])
