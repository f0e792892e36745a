"""``--platform all`` stores everything the index lists (attestations included), so the
oci formats are complete layouts: containerd imports them with ``--all-platforms`` and
``verify --complete`` accepts them."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dockerdrag import Puller, verify_archive
from dockerdrag.cli import build_parser
from tests.support.containerd import Containerd, start_containerd
from tests.support.fault_proxy import FaultProxy, delay
from tests.support.registry_server import RegistryServer

pytestmark = pytest.mark.anyio

SeededRegistry = tuple[RegistryServer, dict[str, Any]]


@pytest.fixture(scope="module")
def containerd() -> Iterator[Containerd]:
    daemon = start_containerd()
    try:
        yield daemon
    finally:
        daemon.stop()


async def pull_all(server: RegistryServer, tmp_path: Path, reference: str, fmt: str) -> Path:
    output = tmp_path / f"all-{fmt}"
    async with Puller(insecure=[server.host], cache_dir=tmp_path / "cache") as puller:
        result = await puller.pull(reference, platform="all", output=output, format=fmt)
    return result.output


def as_tar(layout: Path) -> Path:
    """An oci-dir layout as a tar (``tar -C DIR -cf x.tar .``, as the README says)."""
    archive = layout.with_suffix(".tar")
    subprocess.run(["tar", "-C", str(layout), "-cf", str(archive), "."], check=True)
    return archive


@pytest.mark.parametrize("fmt", ["oci", "oci-dir"])
async def test_all_platforms_is_complete_and_imports_into_containerd(
    seeded_registry: SeededRegistry, tmp_path: Path, containerd: Containerd, fmt: str
) -> None:
    server, images = seeded_registry
    index = images["multiarch"]  # three platforms and an attestation manifest
    output = await pull_all(server, tmp_path, index.reference, fmt)

    verified = await verify_archive(output, require_complete=True)
    every = {index.digest} | {m.manifest_digest for m in index.index.all_manifests}
    assert {str(digest) for digest in verified.manifests} == every
    attestation = index.index.attestations[0]
    for digest in attestation.blobs():
        assert any(str(stored) == digest for stored in verified.blobs)

    archive = output if fmt == "oci" else as_tar(output)
    name = f"{index.reference}-{fmt}"
    namespace = f"complete-{fmt}"
    imported = containerd.ctr(
        "images",
        "import",
        "--all-platforms",
        "--no-unpack",
        "--index-name",
        name,
        str(archive),
        namespace=namespace,
    )
    assert imported.returncode == 0, imported.stdout + imported.stderr
    listed = containerd.ctr("images", "ls", "--quiet", namespace=namespace).stdout.split()
    assert index.reference in listed and name in listed
    content = containerd.ctr("content", "ls", "--quiet", namespace=namespace).stdout.split()
    assert set(every) <= set(content)
    assert set(attestation.blobs()) <= set(content)

    # What containerd's own exporter writes from it is a complete archive too.
    exported = tmp_path / "exported.tar"
    done = containerd.ctr(
        "images", "export", "--all-platforms", str(exported), index.reference, namespace=namespace
    )
    assert done.returncode == 0, done.stderr
    again = await verify_archive(exported, require_complete=True)
    assert {str(digest) for digest in again.manifests} == every
    assert again.images[0].repo_tags == (index.reference,)


async def test_a_sparse_layout_is_what_containerd_refuses(
    seeded_registry: SeededRegistry, tmp_path: Path, containerd: Containerd
) -> None:
    """What the test above guards against: an index whose children are not all stored."""
    server, images = seeded_registry
    index = images["multiarch"]
    output = tmp_path / "two.tar"
    async with Puller(insecure=[server.host], cache_dir=tmp_path / "cache") as puller:
        await puller.pull(
            index.reference, platform="linux/amd64,linux/arm64", output=output, format="oci"
        )
    verified = await verify_archive(output)
    assert not verified.complete
    imported = containerd.ctr(
        "images", "import", "--all-platforms", "--no-unpack", str(output), namespace="sparse"
    )
    assert imported.returncode != 0
    assert "not found" in imported.stderr


async def test_every_platform_of_the_index_is_fetched_side_by_side(
    proxy: FaultProxy, seeded_registry: SeededRegistry, tmp_path: Path
) -> None:
    """Every manifest and blob answered late (as by a far registry): the index's manifests
    are asked for side by side, and then their configs, not each in turn, so each request
    is in flight beside the others, on a connection of its own."""
    _, images = seeded_registry
    index = images["multiarch"]
    reference = f"{proxy.host}/{index.repo}:{index.tag}"
    async with Puller(insecure=[proxy.host], cache_dir=tmp_path / "cache") as puller:
        await puller.inspect(reference, platform="linux/amd64")  # the scheme, asked first
        proxy.reset()
        proxy.add(delay(0.3), path=r"/(manifests|blobs)/", times=None)
        await puller.pull(reference, platform="all", output=tmp_path / "all", format="oci-dir")
    every = index.index.all_manifests
    manifests = proxy.requests_for("|".join(f"/manifests/{m.manifest_digest}$" for m in every))
    configs = proxy.requests_for("|".join(f"/blobs/{m.config_digest}$" for m in every))
    assert len(manifests) == len(every) > 1
    assert len({request.client_port for request in manifests}) == len(manifests)
    assert len(configs) > 1
    assert len({request.client_port for request in configs}) == len(configs)


def test_help_says_all_stores_everything() -> None:
    _, parsers = build_parser()
    text = " ".join(parsers["pull"].format_help().split())
    assert "'all': every manifest the index lists, attestations included" in text
