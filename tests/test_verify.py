"""``verify_archive`` / ``dockerdrag verify``: real archives verify; every defect is found
and named (flipped bytes, truncation, missing members, broken references)."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest

from dockerdrag import (
    CorruptArchiveError,
    ImageManifest,
    IntegrityError,
    Puller,
    VerifiedArchive,
    verify_archive,
)
from dockerdrag.cli_verify import describe_archive
from dockerdrag.errors import DiffIDMismatchError, DigestMismatchError, InvalidManifestError
from tests.support.docker25_archive import write_docker25_archive
from tests.support.registry_server import RegistryServer

pytestmark = pytest.mark.anyio

SeededRegistry = tuple[RegistryServer, dict[str, Any]]
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "docker-save-20.10"
DOCKER_SAVES = sorted(FIXTURES.glob("**/*.tar"))
FRACTIONS = [(2 * n + 1) / 16 for n in range(8)]  # where in a member a byte is flipped


# ---------------------------------------------------------------------------------------
# Helpers: archives pulled from the registry, and damaged copies of them
# ---------------------------------------------------------------------------------------


async def pull(
    server: RegistryServer, tmp_path: Path, reference: str, output_format: str, **kwargs: Any
) -> Path:
    output = tmp_path / f"{output_format}-{len(list(tmp_path.iterdir()))}"
    async with Puller(insecure=[server.host], cache_dir=tmp_path.parent / "cache") as puller:
        await puller.pull(reference, output=output, format=output_format, **kwargs)
    return output


def member_offsets(path: Path) -> dict[str, tuple[int, int]]:
    """Each regular member's (data offset, size)."""
    with tarfile.open(path) as tar:
        return {m.name: (m.offset_data, m.size) for m in tar.getmembers() if m.isfile()}


def flip_byte(source: Path, target: Path, position: int) -> None:
    data = bytearray(source.read_bytes())
    data[position] ^= 0x01
    target.write_bytes(bytes(data))


def rewrite_tar(
    source: Path, target: Path, drop: str, replace: dict[str, bytes] | None = None
) -> None:
    """``source`` without the member ``drop``, with the members ``replace`` names
    replaced or added (at the end)."""
    replace = dict(replace or {})
    with tarfile.open(source) as old, tarfile.open(target, "w", format=tarfile.USTAR_FORMAT) as new:
        for member in old.getmembers():
            if member.name == drop:
                continue
            if member.name in replace:
                continue
            new.addfile(member, old.extractfile(member) if member.isfile() else None)
        for name, data in replace.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            new.addfile(info, io.BytesIO(data))


# ---------------------------------------------------------------------------------------
# What verifies
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("archive", DOCKER_SAVES, ids=lambda p: str(p.relative_to(FIXTURES)))
async def test_docker_save_archives_verify(archive: Path) -> None:
    verified = await verify_archive(archive)
    assert verified.layout == "docker" and verified.complete
    with tarfile.open(archive) as tar:
        manifest = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
    assert [list(image.repo_tags) for image in verified.images] == [
        entry["RepoTags"] or [] for entry in manifest
    ]
    for image, entry in zip(verified.images, manifest, strict=True):
        assert image.config.digest.hex in entry["Config"]
        assert len(image.layers) == len(entry["Layers"]) == len(image.diff_ids)


@pytest.mark.parametrize("docker_version", [25, 27])
@pytest.mark.parametrize("name", ["multi", "duplayer", "uncompressed"])
async def test_docker25_archives_verify(tmp_path: Path, name: str, docker_version: int) -> None:
    archive = tmp_path / "saved.tar"
    reference = f"127.0.0.1:5101/fid/{name}:latest"
    write_docker25_archive(
        FIXTURES / name / "registry", reference, archive, docker_version=docker_version
    )
    verified = await verify_archive(archive)
    assert verified.layout == "docker+oci" and verified.complete
    (image,) = verified.images
    assert image.repo_tags == (reference,)
    assert [layer.name for layer in image.layers] == [
        f"blobs/sha256/{diff_id.hex}" for diff_id in image.diff_ids
    ]
    assert verified.index is not None and len(verified.manifests) == 1


async def test_docker25_layerless_manifest_needs_manifest_json(tmp_path: Path) -> None:
    archive = tmp_path / "saved.tar"
    write_docker25_archive(FIXTURES / "multi" / "registry", "a/b:c", archive, docker_version=25)
    bare = tmp_path / "bare.tar"
    rewrite_tar(archive, bare, drop="manifest.json")
    with pytest.raises(InvalidManifestError, match="lists no layers"):
        await verify_archive(bare)


async def test_docker25_flipped_layer_is_found(tmp_path: Path) -> None:
    archive = tmp_path / "saved.tar"
    write_docker25_archive(FIXTURES / "multi" / "registry", "a/b:c", archive, docker_version=27)
    verified = await verify_archive(archive)
    layer = verified.images[0].layers[1]
    assert layer.offset is not None
    damaged = tmp_path / "damaged.tar"
    flip_byte(archive, damaged, layer.offset + layer.size // 2)
    with pytest.raises(DigestMismatchError, match=layer.name):
        await verify_archive(damaged)


@pytest.mark.parametrize("output_format", ["docker", "oci", "oci-dir"])
async def test_pulled_archives_verify_in_every_format(
    seeded_registry: SeededRegistry, tmp_path: Path, output_format: str
) -> None:
    server, images = seeded_registry
    for name in ("busybox", "busybox_oci", "multilayer", "multilayer_oci", "uncompressed"):
        pushed = images[name]
        archive = await pull(server, tmp_path, pushed.reference, output_format)
        verified = await verify_archive(archive)
        assert verified.complete
        (image,) = verified.images
        assert str(image.config.digest) == pushed.config_digest
        assert [str(diff_id) for diff_id in image.diff_ids] == pushed.diff_ids
        assert image.repo_tags == (pushed.reference,)
        if output_format != "docker":
            assert verified.layout == "docker+oci"
            assert {str(d) for d in verified.manifests} == {pushed.manifest_digest}
            for digest in pushed.layer_digests:  # compressed blobs, as pulled
                assert verified.blobs[next(d for d in verified.blobs if str(d) == digest)]


@pytest.mark.parametrize("output_format", ["oci", "oci-dir"])
async def test_pulled_zstd_and_mixed_layers_verify(
    seeded_registry: SeededRegistry, tmp_path: Path, output_format: str
) -> None:
    server, images = seeded_registry
    for name in ("zstd", "mixed"):
        archive = await pull(server, tmp_path, images[name].reference, output_format)
        verified = await verify_archive(archive)
        assert [str(d) for d in verified.images[0].diff_ids] == images[name].diff_ids


async def test_some_platforms_of_an_index_are_a_sparse_layout(
    seeded_registry: SeededRegistry, tmp_path: Path
) -> None:
    server, images = seeded_registry
    index = images["multiarch"]
    platforms = "linux/arm64,linux/amd64"
    archive = await pull(server, tmp_path, index.reference, "oci", platform=platforms)
    verified = await verify_archive(archive)
    assert not verified.complete
    stored = {str(d) for d in verified.manifests}
    chosen = [index.image("linux", "arm64", "v8"), index.image("linux", "amd64")]
    assert stored == {index.digest} | {image.manifest_digest for image in chosen}
    armv7 = index.image("linux", "arm", "v7").manifest_digest
    attestation = index.index.attestations[0].manifest_digest
    assert {str(entry.digest) for entry in verified.missing} == {armv7, attestation}
    with pytest.raises(CorruptArchiveError, match="sparse: 2 manifest"):
        await verify_archive(archive, require_complete=True)


# ---------------------------------------------------------------------------------------
# What is found
# ---------------------------------------------------------------------------------------


@pytest.fixture
async def oci_archive(seeded_registry: SeededRegistry, tmp_path: Path) -> Path:
    server, images = seeded_registry
    return await pull(server, tmp_path, images["multilayer_oci"].reference, "oci")


@pytest.fixture
async def docker_archive(seeded_registry: SeededRegistry, tmp_path: Path) -> Path:
    server, images = seeded_registry
    return await pull(server, tmp_path, images["multilayer"].reference, "docker")


@pytest.fixture(params=["oci", "docker"])
async def archive(request: pytest.FixtureRequest, seeded_registry: SeededRegistry) -> Path:
    """The multilayer image pulled as ``--format oci`` and as ``--format docker``."""
    server, images = seeded_registry
    name = "multilayer_oci" if request.param == "oci" else "multilayer"
    tmp_path: Path = request.getfixturevalue("tmp_path")
    return await pull(server, tmp_path, images[name].reference, request.param)


def targets(archive: Path, verified: VerifiedArchive) -> dict[str, str]:
    """kind -> member name, for each kind of member a byte can be flipped in."""
    image = verified.images[0]
    found = {
        "layer": image.layers[1].name,
        "config": image.config.name,
        "manifest.json": "manifest.json",
        "repositories": "repositories",
    }
    if verified.index is not None:
        found["index.json"] = "index.json"
        found["manifest"] = f"blobs/sha256/{next(iter(verified.manifests)).hex}"
    return found


async def test_a_flipped_byte_anywhere_is_found_and_named(archive: Path, tmp_path: Path) -> None:
    verified = await verify_archive(archive)
    offsets = member_offsets(archive)
    damaged = tmp_path / "damaged.tar"
    checked = 0
    kinds = targets(archive, verified)
    for kind, name in kinds.items():
        offset, size = offsets[name]
        for fraction in FRACTIONS:
            position = offset + int(size * fraction)
            flip_byte(archive, damaged, position)
            with pytest.raises(IntegrityError) as caught:
                await verify_archive(damaged)
            if kind in ("layer", "config", "manifest"):
                assert name in str(caught.value), (kind, position, caught.value)
            checked += 1
    assert checked == len(FRACTIONS) * len(kinds) >= 32


async def test_a_flipped_byte_in_a_tar_header_is_found(
    docker_archive: Path, tmp_path: Path
) -> None:
    damaged = tmp_path / "damaged.tar"
    offset, _ = member_offsets(docker_archive)["manifest.json"]
    flip_byte(docker_archive, damaged, offset - 512 + 3)  # inside the member's name
    with pytest.raises(CorruptArchiveError, match=f"byte {offset - 512}"):
        await verify_archive(damaged)


async def test_a_flipped_layer_of_the_legacy_format_names_its_member(
    docker_archive: Path, tmp_path: Path
) -> None:
    verified = await verify_archive(docker_archive)
    layer = verified.images[0].layers[0]
    assert layer.name.endswith("/layer.tar") and layer.offset is not None
    damaged = tmp_path / "damaged.tar"
    flip_byte(docker_archive, damaged, layer.offset + 100)
    with pytest.raises(DiffIDMismatchError, match=layer.name):
        await verify_archive(damaged)


async def test_truncated_archives_are_found(archive: Path, tmp_path: Path) -> None:
    data = archive.read_bytes()
    offsets = member_offsets(archive)
    last_offset, last_size = max(offsets.values())
    member_end = last_offset + -(-last_size // 512) * 512
    cuts = [len(data) // 3, len(data) // 2 + 7, member_end, member_end + 100, last_offset - 200]
    cut_file = tmp_path / "cut.tar"
    for cut in cuts:
        cut_file.write_bytes(data[:cut])
        with pytest.raises(CorruptArchiveError, match="truncated"):
            await verify_archive(cut_file)


async def test_missing_members_are_found_and_named(archive: Path, tmp_path: Path) -> None:
    verified = await verify_archive(archive)
    image = verified.images[0]
    smaller = tmp_path / "smaller.tar"
    for name in (image.layers[-1].name, image.config.name):
        rewrite_tar(archive, smaller, drop=name)
        with pytest.raises(CorruptArchiveError, match=name):
            await verify_archive(smaller)
    rewrite_tar(archive, smaller, drop="manifest.json")
    with pytest.raises(IntegrityError, match=r"manifest\.json"):
        await verify_archive(smaller)
    rewrite_tar(archive, smaller, drop="repositories")
    assert (await verify_archive(smaller)).images == verified.images


async def test_a_config_whose_diff_ids_do_not_match_the_layers_is_found(tmp_path: Path) -> None:
    source = FIXTURES / "multi" / "docker-save.tar"
    with tarfile.open(source) as tar:
        manifest = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
        config_name = manifest[0]["Config"]
        config = json.loads(tar.extractfile(config_name).read())  # type: ignore[union-attr]
    diff_ids = config["rootfs"]["diff_ids"]
    diff_ids[0], diff_ids[1] = diff_ids[1], diff_ids[0]
    raw = json.dumps(config).encode()
    new_name = f"{hashlib.sha256(raw).hexdigest()}.json"
    manifest[0]["Config"] = new_name
    swapped = tmp_path / "swapped.tar"
    rewrite_tar(
        source,
        swapped,
        drop=config_name,
        replace={"manifest.json": json.dumps(manifest).encode(), new_name: raw},
    )
    with pytest.raises(DiffIDMismatchError, match=r"layer 0 of manifest\.json entry 0"):
        await verify_archive(swapped)


def test_every_docker_save_fixture_is_covered() -> None:
    assert len(DOCKER_SAVES) >= 15


async def test_oci_dir_damage_is_found(seeded_registry: SeededRegistry, tmp_path: Path) -> None:
    server, images = seeded_registry
    layout = await pull(server, tmp_path, images["busybox_oci"].reference, "oci-dir")
    verified = await verify_archive(layout)
    layer = verified.images[0].layers[0]
    path = layout / layer.name
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    os.chmod(path, 0o644)
    path.write_bytes(bytes(data))
    with pytest.raises(DigestMismatchError, match=layer.name):
        await verify_archive(layout)
    path.unlink()
    with pytest.raises(CorruptArchiveError, match=layer.name):
        await verify_archive(layout)


async def test_a_compressed_archive_verifies(docker_archive: Path, tmp_path: Path) -> None:
    compressed = tmp_path / "archive.tar.gz"
    compressed.write_bytes(gzip.compress(docker_archive.read_bytes()))
    verified = await verify_archive(compressed)
    assert verified.images[0].config == (await verify_archive(docker_archive)).images[0].config


async def test_open_reads_a_member(oci_archive: Path) -> None:
    verified = await verify_archive(oci_archive)
    layer = verified.images[0].layers[0]
    with verified.open(layer) as stream:
        assert hashlib.sha256(stream.read()).hexdigest() == layer.digest.hex


@pytest.mark.parametrize("destination", ["oci-archive", "docker-archive", "oci"])
async def test_archives_other_tools_write_verify(
    oci_archive: Path, tmp_path: Path, destination: str
) -> None:
    """skopeo's own writers (OCI layout tar and directory, docker-archive)."""
    written = tmp_path / f"skopeo-{destination}"
    subprocess.run(
        ["skopeo", "copy", "-q", f"oci-archive:{oci_archive}", f"{destination}:{written}"],
        check=True,
        capture_output=True,
    )
    original = (await verify_archive(oci_archive)).images[0]
    verified = await verify_archive(written)
    assert verified.layout == ("docker" if destination == "docker-archive" else "oci")
    if verified.images:
        assert verified.images[0].diff_ids == original.diff_ids
    else:
        (entry,) = verified.index.manifests if verified.index else ()
        manifest = verified.manifests[entry.digest]
        assert isinstance(manifest, ImageManifest)
        assert manifest.config.digest == original.config.digest
        lines = describe_archive(verified)
        assert f"{written}: OK (OCI layout; 1 index.json entr(y/ies), " in lines[0]
        assert lines[1].split() == ["(unnamed)", "manifest", str(entry.digest)]


async def test_progress_reports_the_bytes_read(tmp_path: Path) -> None:
    archive = tmp_path / "big.tar"
    layer = bytes(48 << 20)
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "rootfs": {
                "type": "layers",
                "diff_ids": [f"sha256:{hashlib.sha256(layer).hexdigest()}"],
            },
        }
    ).encode()
    config_name = f"{hashlib.sha256(config).hexdigest()}.json"
    entry = [{"Config": config_name, "RepoTags": None, "Layers": ["l/layer.tar"]}]
    with tarfile.open(archive, "w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in [
            ("l/layer.tar", layer),
            (config_name, config),
            ("manifest.json", json.dumps(entry).encode()),
        ]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    reports: list[int] = []
    verified = await verify_archive(archive, progress=reports.append)
    assert reports[-1] == verified.total_size == len(layer) + len(config) + len(json.dumps(entry))
    assert reports == sorted(reports) and len(reports) >= 2


async def test_names_compare_in_full_and_digest_names_have_no_tag(tmp_path: Path) -> None:
    """RepoTags and repositories in full (``docker.io/library/...``) agree with familiar
    and full names elsewhere; an index.json entry named by digest is no tag."""
    archive = tmp_path / "saved.tar"
    reference = "docker.io/library/fidmulti:1"
    write_docker25_archive(FIXTURES / "multi" / "registry", reference, archive, docker_version=27)
    verified = await verify_archive(archive)
    assert verified.images[0].repo_tags == (reference,)
    assert verified.index is not None
    (entry,) = [descriptor.to_json() for descriptor in verified.index.manifests]
    by_digest = {
        **entry,
        "annotations": {"io.containerd.image.name": f"fidmulti@{entry['digest']}"},
    }
    index = {"schemaVersion": 2, "manifests": [entry, by_digest]}
    both = tmp_path / "both.tar"
    rewrite_tar(archive, both, drop="", replace={"index.json": json.dumps(index).encode()})
    assert len((await verify_archive(both)).index.manifests) == 2  # type: ignore[union-attr]
