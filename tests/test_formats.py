"""Output formats (docker, oci, oci-dir), bundles of several images, multi-platform OCI.

Every archive is read by an independent tool (skopeo, umoci, the Docker daemon).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dockerdrag import OutputError, PlatformNotFoundError, Puller, UsageError, pull_image
from dockerdrag.errors import UnsupportedFormatError
from dockerdrag.pull import pull_images
from tests.support.archive_check import read_docker_archive
from tests.support.command import run_cli
from tests.support.dockerd import DockerDaemon
from tests.support.fault_proxy import FaultProxy
from tests.support.images import busybox_layer, push_image, text_layer
from tests.support.registry_server import RegistryServer

pytestmark = pytest.mark.anyio

SeededRegistry = tuple[RegistryServer, dict[str, Any]]


def skopeo(*args: str) -> dict[str, Any]:
    completed = subprocess.run(
        ["skopeo", "inspect", *args], capture_output=True, text=True, check=True
    )
    result: dict[str, Any] = json.loads(completed.stdout)
    return result


def options(server: RegistryServer, tmp_path: Path) -> dict[str, Any]:
    return {"insecure": [server.host], "cache_dir": tmp_path / "cache"}


@pytest.mark.parametrize("name", ["busybox", "busybox_oci", "multilayer", "mixed"])
async def test_oci_tar_is_an_oci_layout_and_a_docker_archive(
    seeded_registry: SeededRegistry, tmp_path: Path, name: str
) -> None:
    server, images = seeded_registry
    pushed = images[name]
    result = await pull_image(
        pushed.reference, output=tmp_path / "o.tar", format="oci", **options(server, tmp_path)
    )
    assert result.format == "oci"
    as_oci = skopeo(f"oci-archive:{result.output}")
    assert as_oci["Digest"] == pushed.manifest_digest
    assert as_oci["Layers"] == list(dict.fromkeys(pushed.layer_digests)) or as_oci["Layers"] == (
        pushed.layer_digests
    )
    as_docker = skopeo(f"docker-archive:{result.output}")
    assert as_docker["Layers"] == pushed.diff_ids
    with tarfile.open(result.output) as tar:
        names = tar.getnames()
        assert "oci-layout" in names and "index.json" in names and "manifest.json" in names
        for digest in pushed.layer_digests:  # compressed blobs kept as pulled
            member = tar.extractfile(f"blobs/sha256/{digest.split(':')[1]}")
            assert member is not None and member.read() == pushed.blobs()[digest]
        index = json.loads(tar.extractfile("index.json").read())  # type: ignore[union-attr]
    annotations = index["manifests"][0]["annotations"]
    assert annotations["org.opencontainers.image.ref.name"] == "latest"
    assert annotations["io.containerd.image.name"] == pushed.reference


async def test_oci_dir_is_read_by_skopeo_and_umoci(
    seeded_registry: SeededRegistry, tmp_path: Path
) -> None:
    server, images = seeded_registry
    pushed = images["busybox_oci"]
    target = tmp_path / "layout"
    await pull_image(pushed.reference, output=target, format="oci-dir", **options(server, tmp_path))
    assert (target / "oci-layout").exists()
    assert skopeo(f"oci:{target}")["Digest"] == pushed.manifest_digest
    listed = subprocess.run(
        ["umoci", "ls", "--layout", str(target)], capture_output=True, text=True, check=True
    )
    assert listed.stdout.split() == ["latest"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


async def test_every_format_is_deterministic(
    seeded_registry: SeededRegistry, tmp_path: Path
) -> None:
    server, images = seeded_registry
    for output_format in ("docker", "oci"):
        first = await pull_image(
            images["busybox"].reference,
            output=tmp_path / f"a-{output_format}.tar",
            format=output_format,
            **options(server, tmp_path),
        )
        second = await pull_image(
            images["busybox"].reference,
            output=tmp_path / f"b-{output_format}.tar",
            format=output_format,
            insecure=[server.host],
            cache_dir=tmp_path / "other-cache",
        )
        assert first.output.read_bytes() == second.output.read_bytes(), output_format


@pytest.mark.parametrize("output_format", ["docker", "oci"])
async def test_bundle_of_several_images(
    seeded_registry: SeededRegistry, tmp_path: Path, output_format: str
) -> None:
    server, images = seeded_registry
    images = {
        **images,
        "plus": push_image(
            server, "test/busybox-plus", "latest", [busybox_layer(), text_layer("x", "plus")]
        ),
    }
    names = ["multilayer", "busybox", "plus"]
    results = await pull_images(
        [images[n].reference for n in names],
        output=tmp_path / "bundle.tar",
        format=output_format,
        **options(server, tmp_path),
    )
    assert [r.reference for r in results] == [images[n].reference for n in names]
    archived = read_docker_archive(tmp_path / "bundle.tar")
    assert [a.repo_tags for a in archived] == [[images[n].reference] for n in names]
    assert [a.config for a in archived] == [images[n].config for n in names]
    # busybox and busybox-plus share their bottom layer: its data is stored once.
    with tarfile.open(tmp_path / "bundle.tar") as tar:
        regular = [m for m in tar.getmembers() if m.isfile() and m.size > 500_000]
    assert len(regular) == 1


async def test_all_platforms_into_oci_keeps_the_index(
    seeded_registry: SeededRegistry, tmp_path: Path
) -> None:
    server, images = seeded_registry
    index = images["multiarch"]
    result = await pull_image(
        index.reference,
        platform="all",
        output=tmp_path / "all.tar",
        format="oci",
        **options(server, tmp_path),
    )
    assert [str(p) for p in result.platforms] == ["linux/amd64", "linux/arm64", "linux/arm/v7"]
    assert skopeo("--raw", f"oci-archive:{result.output}")["manifests"]
    with tarfile.open(result.output) as tar:
        top = json.loads(tar.extractfile("index.json").read())  # type: ignore[union-attr]
        blob_names = {n.rsplit("/", 1)[1] for n in tar.getnames() if n.startswith("blobs/sha256/")}
    assert top["manifests"][0]["digest"] == index.digest
    for image in index.index.images:
        assert image.manifest_digest.split(":")[1] in blob_names
    attestation = index.index.attestations[0].manifest_digest.split(":")[1]
    assert attestation in blob_names  # everything the index lists is stored


async def test_platform_list_with_attestations_kept(
    seeded_registry: SeededRegistry, tmp_path: Path
) -> None:
    server, images = seeded_registry
    index = images["multiarch"]
    async with Puller(include_attestations=True, **options(server, tmp_path)) as puller:
        result = await puller.pull(
            index.reference,
            platform="linux/arm64,linux/amd64",
            output=tmp_path / "two.tar",
            format="oci",
        )
    assert [str(p) for p in result.platforms] == ["linux/arm64", "linux/amd64"]
    with tarfile.open(result.output) as tar:
        blob_names = {n.rsplit("/", 1)[1] for n in tar.getnames() if n.startswith("blobs/")}
    attestation = index.index.attestations[0].manifest_digest.split(":")[1]
    assert attestation in blob_names


async def test_platform_list_matching_nothing(
    seeded_registry: SeededRegistry, tmp_path: Path
) -> None:
    server, images = seeded_registry
    with pytest.raises(PlatformNotFoundError):
        await pull_image(
            images["multiarch"].reference,
            platform="linux/s390x,linux/ppc64le",
            output=tmp_path / "x.tar",
            format="oci",
            **options(server, tmp_path),
        )
    assert not (tmp_path / "x.tar").exists()


async def test_bad_format_and_platform_combinations(tmp_path: Path) -> None:
    with pytest.raises(UnsupportedFormatError):
        await pull_image("busybox", output=tmp_path / "x.tar", format="zip")
    with pytest.raises(UsageError, match="format='oci'"):
        await pull_image("busybox", output=tmp_path / "x.tar", platform="all")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("output_format", ["docker", "oci"])
async def test_output_in_missing_or_read_only_directory(
    seeded_registry: SeededRegistry, tmp_path: Path, output_format: str
) -> None:
    server, images = seeded_registry
    with pytest.raises(OutputError, match="does not exist"):
        await pull_image(
            images["busybox"].reference,
            output=tmp_path / "missing" / "x.tar",
            format=output_format,
            **options(server, tmp_path),
        )
    read_only = tmp_path / "ro"
    read_only.mkdir()
    with read_only_directory(read_only):
        with pytest.raises(OutputError):
            await pull_image(
                images["busybox"].reference,
                output=read_only / "x.tar",
                format=output_format,
                **options(server, tmp_path),
            )
        assert list(read_only.iterdir()) == []


@contextlib.contextmanager
def read_only_directory(path: Path) -> Iterator[None]:
    """A read-only directory even for root: a read-only tmpfs mounted on it."""
    if os.geteuid() != 0:
        path.chmod(0o555)
        try:
            yield
        finally:
            path.chmod(0o755)
        return
    subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(path)], check=True)
    try:
        yield
    finally:
        subprocess.run(["umount", str(path)], check=True)


def test_cli_format_and_bundle(seeded_registry: SeededRegistry, tmp_path: Path) -> None:
    server, images = seeded_registry
    base = ["pull", "--insecure", server.host]
    both = [images["busybox"].reference, images["multilayer"].reference]
    bundle = run_cli(*base, *both, "-o", "b.tar", cwd=tmp_path)
    assert bundle.returncode == 0, bundle.stderr
    assert len(read_docker_archive(tmp_path / "b.tar")) == 2
    no_output = run_cli(*base, *both, cwd=tmp_path)
    assert no_output.returncode == 2 and "-o" in no_output.stderr
    bad_format = run_cli(*base, images["busybox"].reference, "--format", "zip", cwd=tmp_path)
    assert bad_format.returncode == 2 and "invalid choice" in bad_format.stderr


@pytest.mark.docker
@pytest.mark.parametrize("output_format", ["docker", "oci"])
async def test_docker_loads_every_format_and_bundle(
    seeded_registry: SeededRegistry, dockerd: DockerDaemon, tmp_path: Path, output_format: str
) -> None:
    server, images = seeded_registry
    refs = [images["busybox"].reference, images["multilayer"].reference]
    await pull_images(
        refs, output=tmp_path / "b.tar", format=output_format, **options(server, tmp_path)
    )
    dockerd.load(tmp_path / "b.tar")
    assert dockerd.image_id(refs[1]) == images["multilayer"].image_id
    assert dockerd.run(refs[0], "echo", "ok").strip() == "ok"


async def test_oci_dir_is_deterministic(seeded_registry: SeededRegistry, tmp_path: Path) -> None:
    server, images = seeded_registry

    def snapshot(root: Path) -> list[tuple[str, bytes, int]]:
        return sorted(
            (str(p.relative_to(root)), p.read_bytes(), int(p.stat().st_mtime))
            for p in root.rglob("*")
            if p.is_file()
        )

    layouts = []
    for run in ("a", "b"):
        target = tmp_path / f"layout-{run}"
        await pull_image(
            images["multilayer"].reference,
            output=target,
            format="oci-dir",
            insecure=[server.host],
            cache_dir=tmp_path / f"cache-{run}",
        )
        layouts.append(snapshot(target))
    assert layouts[0] == layouts[1]


@pytest.mark.parametrize("format", ["oci", "oci-dir"])
async def test_a_cached_blob_that_rotted_is_caught_on_copy(
    seeded_registry: SeededRegistry, tmp_path: Path, format: str
) -> None:
    """Blobs this pull downloaded were hashed as they were written and are copied as is;
    a blob found in the cache from an earlier run is hashed again on the way out (and,
    found rotted, fetched again: tests/test_cache_corruption.py)."""
    server, images = seeded_registry
    pushed = images["multilayer"]
    first = await pull_image(
        pushed.reference, output=tmp_path / "first", format=format, **options(server, tmp_path)
    )
    assert first.output.exists()
    digest = pushed.layer_digests[0].split(":")[1]
    cached = tmp_path / "cache" / "blobs" / "sha256" / digest
    rotted = bytearray(cached.read_bytes())
    rotted[len(rotted) // 2] ^= 0x01  # same size: only the hash can tell
    cached.write_bytes(bytes(rotted))
    with FaultProxy(server.url) as proxy:
        await pull_image(
            pushed.reference.replace(server.host, proxy.host),
            output=tmp_path / "second",
            format=format,
            cache_dir=tmp_path / "cache",
            insecure=[proxy.host],
        )
        fetched = [r.path for r in proxy.requests_for(r"/blobs/")]
    assert fetched == [f"/v2/{pushed.repo}/blobs/sha256:{digest}"]  # only the rotted one
    assert hashlib.sha256(cached.read_bytes()).hexdigest() == digest


async def test_oci_dir_blobs_are_kernel_copied_and_the_fallback_gives_the_same_layout(
    seeded_registry: SeededRegistry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where no hard link can be made, layers this pull downloaded go from the cache into
    the layout by copy_file_range; where the call is missing or refused (EXDEV) they are
    read and written instead, with the same files and mtimes (fresh cache each run, so
    every layer is verified on arrival).
    """
    from dockerdrag import os_copies

    monkeypatch.setattr(os_copies, "_link", None)
    server, images = seeded_registry
    pushed = images["multilayer"]
    real_copy = os.copy_file_range
    kernel_copied: list[int] = []

    def counted(src: int, dst: int, count: int, src_off: int, dst_off: int) -> int:
        done = real_copy(src, dst, count, src_off, dst_off)
        kernel_copied.append(done)
        return done

    def refused(*args: int) -> int:
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    def snapshot(root: Path) -> list[tuple[str, bytes, int]]:
        return sorted(
            (str(p.relative_to(root)), p.read_bytes(), int(p.stat().st_mtime))
            for p in root.rglob("*")
            if p.is_file()
        )

    layouts = []
    for run, kernel_copy in (("kernel", counted), ("missing", None), ("refused", refused)):
        monkeypatch.setattr(os_copies, "_copy_file_range", kernel_copy)
        target = tmp_path / f"layout-{run}"
        await pull_image(
            pushed.reference,
            output=target,
            format="oci-dir",
            insecure=[server.host],
            cache_dir=tmp_path / f"cache-{run}",
        )
        layouts.append(snapshot(target))
    layer_bytes = sum(len(pushed.blobs()[digest]) for digest in set(pushed.layer_digests))
    assert sum(kernel_copied) == layer_bytes > 0
    assert layouts[0] == layouts[1] == layouts[2]
