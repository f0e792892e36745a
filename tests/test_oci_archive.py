"""The ``--format oci`` / ``oci-dir`` writers, checked with skopeo, umoci and docker load.

The images come from :mod:`tests.support.images` (gzip layers built with tarfile and
gzip, configs with ``rootfs.diff_ids``, Docker and OCI manifests and indexes); their
blobs are written to a fake cache directory the way the pull module's store keeps them.
"""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import tarfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from dockerdrag.digest import Digest
from dockerdrag.errors import (
    DigestMismatchError,
    InvalidReferenceError,
    OutputError,
    SizeMismatchError,
    UsageError,
)
from dockerdrag.manifest import ImageIndex, ImageManifest, parse_manifest
from dockerdrag.oci_archive import (
    OCI_LAYOUT_BYTES,
    OciImage,
    OciManifest,
    write_oci_archive,
    write_oci_dir,
)
from tests.support import images as im
from tests.support import require_binary
from tests.support.dockerd import DockerDaemon

SKOPEO = require_binary("/usr/bin/skopeo", "skopeo")
UMOCI = require_binary("/usr/bin/umoci", "umoci")

MediaTypes = im.MediaTypes


# ---------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------


def cache_blobs(cache: Path, built: im.BuiltImage) -> dict[Digest, Path]:
    """Write the image's layer blobs as ``cache/<hex>`` files; digest -> path."""
    cache.mkdir(parents=True, exist_ok=True)
    paths = {}
    for layer in built.layers:
        path = cache / layer.digest.removeprefix("sha256:")
        path.write_bytes(layer.blob)
        paths[Digest.parse(layer.digest)] = path
    return paths


def parsed(built: im.BuiltImage) -> ImageManifest:
    manifest = parse_manifest(built.manifest, built.manifest_media_type)
    assert isinstance(manifest, ImageManifest)
    return manifest


def parsed_index(built: im.BuiltIndex) -> ImageIndex:
    index = parse_manifest(built.index, built.media_type)
    assert isinstance(index, ImageIndex)
    return index


def oci_manifest(cache: Path, built: im.BuiltImage) -> OciManifest:
    return OciManifest(parsed(built), built.config, cache_blobs(cache, built))


def single(cache: Path, built: im.BuiltImage, *tags: str) -> OciImage:
    return OciImage([oci_manifest(cache, built)], tags=tags)


def multi(cache: Path, built: im.BuiltIndex, *tags: str) -> OciImage:
    manifests = [oci_manifest(cache, image) for image in built.all_manifests]
    return OciImage(manifests, tags=tags, index=parsed_index(built))


def write_tar(path: Path, images: Sequence[OciImage], **kwargs: Any) -> Path:
    with open(path, "wb") as out:
        write_oci_archive(out, images, **kwargs)
    return path


def tar_files(path: Path) -> dict[str, bytes]:
    """name -> content of every regular file, in archive order."""
    with tarfile.open(path) as tar:
        return {
            member.name: tar.extractfile(member).read()  # type: ignore[union-attr]
            for member in tar.getmembers()
            if member.isfile()
        }


def tar_json(path: Path, name: str) -> Any:
    return json.loads(tar_files(path)[name])


def run(*args: str) -> str:
    result = subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, f"{args} failed:\n{result.stderr}"
    return result.stdout


def skopeo_inspect(ref: str, *options: str) -> Any:
    return json.loads(run(SKOPEO, "inspect", *options, ref))


def skopeo_raw(ref: str, *options: str) -> bytes:
    out = subprocess.run(
        [SKOPEO, "inspect", "--raw", *options, ref], capture_output=True, timeout=120, check=True
    )
    return out.stdout


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def two_layer_image(media_types: MediaTypes = "docker") -> im.BuiltImage:
    return im.build_image(
        [im.text_layer("a.txt", "a\n"), im.text_layer("b/c.txt", "c\n")],
        media_types=media_types,
    )


# ---------------------------------------------------------------------------------------
# Layout, documents, determinism
# ---------------------------------------------------------------------------------------


def test_tar_entries_documents_and_mtimes(tmp_path: Path) -> None:
    built = two_layer_image()
    path = write_tar(tmp_path / "out.tar", [single(tmp_path / "cache", built, "busybox:1.36")])
    blob_hexes = sorted(
        d.removeprefix("sha256:")
        for d in [built.manifest_digest, built.config_digest, *built.layer_digests]
    )
    with tarfile.open(path) as tar:
        members = tar.getmembers()
    assert [m.name for m in members] == [
        "blobs",
        "blobs/sha256",
        *(f"blobs/sha256/{h}" for h in blob_hexes),
        "index.json",
        "manifest.json",
        "oci-layout",
        "repositories",
    ]
    created = im.FIXED_MTIME
    mtimes = {m.name: m.mtime for m in members}
    assert mtimes["blobs"] == created
    assert mtimes["blobs/sha256"] == 0
    assert mtimes[f"blobs/sha256/{built.manifest_digest[7:]}"] == 0
    assert mtimes[f"blobs/sha256/{built.config_digest[7:]}"] == created
    assert all(mtimes[f"blobs/sha256/{d[7:]}"] == created for d in built.layer_digests)
    assert all(mtimes[name] == 0 for name in ("index.json", "manifest.json", "oci-layout"))
    assert all(m.uname == "" and m.uid == 0 for m in members)

    files = tar_files(path)
    assert files["oci-layout"] == OCI_LAYOUT_BYTES == b'{"imageLayoutVersion": "1.0.0"}'
    assert (
        files["index.json"]
        == (
            '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json",'
            f'"manifests":[{{"mediaType":"{im.DOCKER_MANIFEST}","digest":"{built.manifest_digest}",'
            f'"size":{len(built.manifest)},"annotations":{{"io.containerd.image.name":'
            '"docker.io/library/busybox:1.36","org.opencontainers.image.ref.name":"1.36"}}]}'
        ).encode()
    )
    layers = ",".join(f'"blobs/sha256/{d[7:]}"' for d in built.layer_digests)
    assert (
        files["manifest.json"]
        == (
            f'[{{"Config":"blobs/sha256/{built.config_digest[7:]}","RepoTags":["busybox:1.36"],'
            f'"Layers":[{layers}]}}]\n'
        ).encode()
    )
    assert files["repositories"] == (
        f'{{"busybox":{{"1.36":"{built.diff_ids[-1][7:]}"}}}}\n'.encode()
    )


def test_every_blob_is_the_registrys_bytes_under_its_digest(tmp_path: Path) -> None:
    built = im.multilayer_image("docker")  # a layer repeats: stored once
    path = write_tar(tmp_path / "out.tar", [single(tmp_path / "cache", built, "m:1")])
    files = tar_files(path)
    blobs = {n.removeprefix("blobs/sha256/"): d for n, d in files.items() if "sha256/" in n}
    for hex_digest, data in blobs.items():
        assert hashlib.sha256(data).hexdigest() == hex_digest
    expected = {built.manifest_digest: built.manifest, **built.blobs()}
    assert {f"sha256:{h}": d for h, d in blobs.items()} == expected
    with tarfile.open(path) as tar:
        names = tar.getnames()
    assert len(names) == len(set(names))


def test_same_input_gives_the_same_bytes(tmp_path: Path) -> None:
    image = im.busybox_index("oci")
    first = write_tar(tmp_path / "1.tar", [multi(tmp_path / "c1", image, "a:1")])
    second = write_tar(tmp_path / "2.tar", [multi(tmp_path / "c2", image, "a:1")])
    assert first.read_bytes() == second.read_bytes()


def test_output_need_not_be_seekable(tmp_path: Path) -> None:
    class Pipe(io.RawIOBase):
        def __init__(self) -> None:
            self.data = bytearray()

        def writable(self) -> bool:
            return True

        def write(self, b: Any) -> int:
            self.data += b
            return len(b)

    built = two_layer_image()
    images = [single(tmp_path / "cache", built, "x:1")]
    pipe = Pipe()
    write_oci_archive(pipe, images)  # type: ignore[arg-type]
    assert bytes(pipe.data) == write_tar(tmp_path / "seekable.tar", images).read_bytes()


def test_untagged_image_gets_one_bare_index_entry(tmp_path: Path) -> None:
    built = two_layer_image("oci")
    path = write_tar(tmp_path / "out.tar", [single(tmp_path / "cache", built)])
    index = tar_json(path, "index.json")
    assert index["manifests"] == [
        {"mediaType": im.OCI_MANIFEST, "digest": built.manifest_digest, "size": len(built.manifest)}
    ]
    assert tar_json(path, "manifest.json")[0]["RepoTags"] is None
    assert "repositories" not in tar_files(path)


# ---------------------------------------------------------------------------------------
# Independent readers: skopeo (oci-archive and docker-archive), umoci
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("media_types", ["docker", "oci"])
def test_skopeo_reads_the_tar_as_oci_archive_and_docker_archive(
    tmp_path: Path, media_types: MediaTypes
) -> None:
    built = two_layer_image(media_types)
    path = write_tar(tmp_path / "out.tar", [single(tmp_path / "cache", built, "busybox:latest")])

    oci = skopeo_inspect(f"oci-archive:{path}")
    assert oci["Digest"] == built.manifest_digest
    assert oci["Layers"] == built.layer_digests
    assert skopeo_raw(f"oci-archive:{path}") == built.manifest
    assert skopeo_raw(f"oci-archive:{path}", "--config") == built.config

    docker = skopeo_inspect(f"docker-archive:{path}")
    assert docker["Layers"] == built.diff_ids  # skopeo decompressed our gzip layer files
    assert skopeo_raw(f"docker-archive:{path}", "--config") == built.config
    assert skopeo_inspect(f"docker-archive:{path}:busybox:latest")["Os"] == "linux"


def test_skopeo_finds_oci_entries_by_tag(tmp_path: Path) -> None:
    # skopeo 1.9 looks entries up by ref.name only for OCI media types.
    built = two_layer_image("oci")
    path = write_tar(tmp_path / "out.tar", [single(tmp_path / "cache", built, "busybox:1.36")])
    assert skopeo_inspect(f"oci-archive:{path}:1.36")["Digest"] == built.manifest_digest


@pytest.mark.parametrize("media_types", ["docker", "oci"])
def test_skopeo_copy_to_dir_gives_back_the_registry_blobs(
    tmp_path: Path, media_types: MediaTypes
) -> None:
    built = im.mixed_compression_image() if media_types == "oci" else im.busybox_image()
    path = write_tar(tmp_path / "out.tar", [single(tmp_path / "cache", built, "x:1")])
    target = tmp_path / "copied"
    run(SKOPEO, "copy", "--quiet", f"oci-archive:{path}", f"dir:{target}")
    assert (target / "manifest.json").read_bytes() == built.manifest
    for digest, data in built.blobs().items():
        copied = (target / digest.removeprefix("sha256:")).read_bytes()
        assert sha256(copied) == digest
        assert copied == data


def test_oci_dir_is_read_by_skopeo_and_umoci(tmp_path: Path) -> None:
    built = im.multilayer_image("oci")
    target = tmp_path / "layout"
    write_oci_dir(target, [single(tmp_path / "cache", built, "busybox:1.36")])
    assert skopeo_inspect(f"oci:{target}")["Digest"] == built.manifest_digest
    assert skopeo_inspect(f"oci:{target}:1.36")["Layers"] == built.layer_digests
    assert run(UMOCI, "ls", "--layout", str(target)).split() == ["1.36"]
    stat = json.loads(run(UMOCI, "stat", "--json", "--image", f"{target}:1.36"))
    layer_entries = [entry for entry in stat["history"] if not entry.get("empty_layer")]
    assert len(layer_entries) == len(built.layers)
    assert [e["layer"]["digest"] for e in layer_entries] == built.layer_digests


def test_oci_dir_holds_exactly_the_tar_files(tmp_path: Path) -> None:
    image = im.busybox_index("oci")
    images = [multi(tmp_path / "cache", image, "busybox:latest")]
    target = tmp_path / "layout"
    write_oci_dir(target, images)
    in_dir = {str(p.relative_to(target)): p.read_bytes() for p in target.rglob("*") if p.is_file()}
    assert in_dir == tar_files(write_tar(tmp_path / "out.tar", images))
    assert (target / "blobs").stat().st_mtime == im.FIXED_MTIME
    assert (target / "index.json").stat().st_mtime == 0
    assert (target.stat().st_mode & 0o777) == 0o755


# ---------------------------------------------------------------------------------------
# Several images, several platforms
# ---------------------------------------------------------------------------------------


def test_several_images_share_blobs_and_keep_their_order(tmp_path: Path) -> None:
    base = im.text_layer("base.txt", "shared base\n")
    first = im.build_image([base, im.text_layer("one.txt", "1\n")], media_types="oci")
    second = im.build_image([base, im.text_layer("two.txt", "2\n")], media_types="oci")
    third = im.build_image([base], media_types="oci", cmd=["three"])
    cache = tmp_path / "cache"
    images = [
        single(cache, second, "example.com/team/two:v2"),
        single(cache, first, "one:latest", "one:1"),
        single(cache, third),
    ]
    path = write_tar(tmp_path / "out.tar", images)

    with tarfile.open(path) as tar:
        names = tar.getnames()
    assert names.count(f"blobs/sha256/{base.digest[7:]}") == 1
    assert len(names) == len(set(names))

    entries = tar_json(path, "index.json")["manifests"]
    assert [(e["digest"], e.get("annotations")) for e in entries] == [
        (
            second.manifest_digest,
            {
                "io.containerd.image.name": "example.com/team/two:v2",
                "org.opencontainers.image.ref.name": "v2",
            },
        ),
        (
            first.manifest_digest,
            {
                "io.containerd.image.name": "docker.io/library/one:latest",
                "org.opencontainers.image.ref.name": "latest",
            },
        ),
        (
            first.manifest_digest,
            {
                "io.containerd.image.name": "docker.io/library/one:1",
                "org.opencontainers.image.ref.name": "1",
            },
        ),
        (third.manifest_digest, None),
    ]
    manifest = tar_json(path, "manifest.json")
    assert [(m["Config"], m["RepoTags"]) for m in manifest] == [
        (f"blobs/sha256/{second.config_digest[7:]}", ["example.com/team/two:v2"]),
        (f"blobs/sha256/{first.config_digest[7:]}", ["one:latest", "one:1"]),
        (f"blobs/sha256/{third.config_digest[7:]}", None),
    ]
    assert json.loads(tar_files(path)["repositories"]) == {
        "example.com/team/two": {"v2": second.diff_ids[-1][7:]},
        "one": {"1": first.diff_ids[-1][7:], "latest": first.diff_ids[-1][7:]},
    }
    assert skopeo_inspect(f"oci-archive:{path}:v2")["Digest"] == second.manifest_digest
    assert skopeo_inspect(f"oci-archive:{path}:1")["Digest"] == first.manifest_digest
    one = skopeo_raw(f"docker-archive:{path}:one:1", "--config")
    assert one == first.config


def test_one_image_given_twice_merges_into_one_docker_entry(tmp_path: Path) -> None:
    built = two_layer_image()
    cache = tmp_path / "cache"
    images = [single(cache, built, "a:1"), single(cache, built, "b:2", "a:1")]
    path = write_tar(tmp_path / "out.tar", images)
    assert len(tar_json(path, "index.json")["manifests"]) == 2
    assert [m["RepoTags"] for m in tar_json(path, "manifest.json")] == [["a:1", "b:2"]]


def test_multi_platform_image_points_at_the_registry_index(tmp_path: Path) -> None:
    image = im.busybox_index("oci")
    amd64, arm64, armv7 = image.images
    attestation = image.attestations[0]
    path = write_tar(tmp_path / "out.tar", [multi(tmp_path / "cache", image, "busybox:latest")])

    entries = tar_json(path, "index.json")["manifests"]
    assert entries == [
        {
            "mediaType": im.OCI_INDEX,
            "digest": image.digest,
            "size": len(image.index),
            "annotations": {
                "io.containerd.image.name": "docker.io/library/busybox:latest",
                "org.opencontainers.image.ref.name": "latest",
            },
        }
    ]
    files = tar_files(path)
    stored = {f"sha256:{n.removeprefix('blobs/sha256/')}" for n in files if "sha256/" in n}
    expected = {image.digest}
    for platform_image in image.images:
        expected |= {platform_image.manifest_digest, *platform_image.blobs()}
    assert stored == expected  # the attestation is dropped
    assert attestation.manifest_digest not in stored

    manifest = tar_json(path, "manifest.json")
    assert [(m["Config"][13:], m["RepoTags"]) for m in manifest] == [
        (amd64.config_digest[7:], ["busybox:latest"]),
        (arm64.config_digest[7:], None),
        (armv7.config_digest[7:], None),
    ]
    assert skopeo_raw(f"oci-archive:{path}") == image.index
    assert skopeo_inspect(f"oci-archive:{path}")["Architecture"] == "amd64"
    arm = skopeo_inspect(f"oci-archive:{path}:latest", "--override-arch", "arm64")
    assert arm["Layers"] == arm64.layer_digests
    loaded = skopeo_raw(f"docker-archive:{path}:busybox:latest", "--config")
    assert loaded == amd64.config


def test_attestations_are_stored_when_asked(tmp_path: Path) -> None:
    image = im.busybox_index("docker")
    attestation = image.attestations[0]
    images = [multi(tmp_path / "cache", image, "busybox:latest")]
    path = write_tar(tmp_path / "out.tar", images, include_attestations=True)
    files = tar_files(path)
    for digest in (attestation.manifest_digest, *attestation.blobs()):
        assert f"blobs/sha256/{digest[7:]}" in files
    assert len(tar_json(path, "manifest.json")) == len(image.images)

    # Now the layout is complete: skopeo can copy every instance.
    target = tmp_path / "all"
    run(SKOPEO, "copy", "--quiet", "--all", f"oci-archive:{path}", f"dir:{target}")
    assert (target / "manifest.json").read_bytes() == image.index
    for manifest in image.all_manifests:
        assert (target / f"{manifest.manifest_digest[7:]}.manifest.json").exists()


def test_multi_platform_oci_dir(tmp_path: Path) -> None:
    image = im.busybox_index("oci")
    target = tmp_path / "layout"
    write_oci_dir(target, [multi(tmp_path / "cache", image, "busybox:latest")])
    assert run(UMOCI, "ls", "--layout", str(target)).split() == ["latest"]
    arm = skopeo_inspect(
        f"oci:{target}:latest", "--override-arch", "arm", "--override-variant", "v7"
    )
    assert arm["Layers"] == image.images[2].layer_digests


def test_a_different_os_is_left_out_of_manifest_json(tmp_path: Path) -> None:
    linux = two_layer_image("oci")
    windows = im.build_image([im.text_layer("w.txt", "w\n")], media_types="oci", os="windows")
    index = im.build_index([linux, windows])
    path = write_tar(tmp_path / "out.tar", [multi(tmp_path / "cache", index, "x:1")])
    assert [m["Config"][13:] for m in tar_json(path, "manifest.json")] == [linux.config_digest[7:]]
    assert f"blobs/sha256/{windows.layer_digests[0][7:]}" in tar_files(path)


# ---------------------------------------------------------------------------------------
# Layer kinds: zstd, foreign
# ---------------------------------------------------------------------------------------


def test_zstd_layers_are_kept_as_pulled(tmp_path: Path) -> None:
    built = im.zstd_image()
    path = write_tar(tmp_path / "out.tar", [single(tmp_path / "cache", built, "z:1")])
    layer_name = f"blobs/sha256/{built.layer_digests[0][7:]}"
    assert tar_files(path)[layer_name] == built.layers[0].blob
    assert tar_json(path, "manifest.json")[0]["Layers"] == [layer_name]
    assert skopeo_inspect(f"oci-archive:{path}")["Layers"] == built.layer_digests


def foreign_image() -> im.BuiltImage:
    foreign = im.layer(
        {"base.txt": b"windows base\n"},
        media_type=im.DOCKER_FOREIGN_LAYER,
        urls=["https://example.com/base.tar.gz"],
    )
    return im.build_image([foreign, im.text_layer("app.txt", "app\n")])


def test_foreign_layers_get_layer_sources(tmp_path: Path) -> None:
    built = foreign_image()
    paths = cache_blobs(tmp_path / "cache", built)
    image = OciImage([OciManifest(parsed(built), built.config, paths)], tags=["w:1"])
    path = write_tar(tmp_path / "out.tar", [image])
    foreign = built.layers[0]
    [entry] = tar_json(path, "manifest.json")
    assert entry["LayerSources"] == {
        foreign.diff_id: {
            "mediaType": im.DOCKER_FOREIGN_LAYER,
            "size": foreign.size,
            "digest": foreign.digest,
            "urls": ["https://example.com/base.tar.gz"],
        }
    }
    text = tar_files(path)["manifest.json"].decode()
    assert text.index('"mediaType"') < text.index('"size"') < text.index('"digest"')


def test_a_missing_foreign_blob_leaves_the_image_out_of_manifest_json(tmp_path: Path) -> None:
    built = foreign_image()
    paths = cache_blobs(tmp_path / "cache", built)
    del paths[Digest.parse(built.layers[0].digest)]
    image = OciImage([OciManifest(parsed(built), built.config, paths)], tags=["w:1"])
    path = write_tar(tmp_path / "out.tar", [image])
    assert tar_json(path, "manifest.json") == []
    assert f"blobs/sha256/{built.layers[0].digest[7:]}" not in tar_files(path)
    assert f"blobs/sha256/{built.layers[1].digest[7:]}" in tar_files(path)


# ---------------------------------------------------------------------------------------
# Verification and errors
# ---------------------------------------------------------------------------------------


def tamper_flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


def tamper_truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-1])


def tamper_append(path: Path) -> None:
    path.write_bytes(path.read_bytes() + b"\0")


@pytest.mark.parametrize(
    ("tamper", "error"),
    [
        (tamper_flip, DigestMismatchError),
        (tamper_truncate, SizeMismatchError),
        (tamper_append, SizeMismatchError),
    ],
)
def test_a_tampered_cache_file_is_refused(
    tmp_path: Path, tamper: Any, error: type[Exception]
) -> None:
    built = two_layer_image()
    image = single(tmp_path / "cache", built, "x:1")
    tamper(image.manifests[0].blob_paths[Digest.parse(built.layer_digests[1])])
    with pytest.raises(error, match="is corrupt"):
        write_tar(tmp_path / "out.tar", [image])
    target = tmp_path / "layout"
    with pytest.raises(error):
        write_oci_dir(target, [image])
    assert not target.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "out.tar"]


def test_a_big_blob_is_streamed_in_chunks(tmp_path: Path) -> None:
    payload = bytes(range(256)) * (3 * 4096 + 17)  # ~3 MiB, little compression gain
    big = im.layer({"big.bin": payload}, "none")
    built = im.build_image([big], media_types="oci")
    chunks: list[int] = []
    path = write_tar(
        tmp_path / "out.tar", [single(tmp_path / "cache", built, "big:1")], on_chunk=chunks.append
    )
    assert len(chunks) > 1 and max(chunks) <= 1 << 20  # bounded chunks, never the whole blob
    assert sum(chunks) == big.size
    assert tar_files(path)[f"blobs/sha256/{big.digest[7:]}"] == big.blob


def test_on_chunk_can_abort_the_write(tmp_path: Path) -> None:
    class Stop(Exception):
        pass

    def stop(size: int) -> None:
        raise Stop

    image = single(tmp_path / "cache", two_layer_image(), "x:1")
    with pytest.raises(Stop):
        write_oci_dir(tmp_path / "layout", [image], on_chunk=stop)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache"]


def test_a_config_that_misses_its_digest_is_refused(tmp_path: Path) -> None:
    built = two_layer_image()
    paths = cache_blobs(tmp_path / "cache", built)
    wrong = built.config.replace(b"amd64", b"arm64")
    with pytest.raises(DigestMismatchError):
        write_tar(tmp_path / "out.tar", [OciImage([OciManifest(parsed(built), wrong, paths)])])
    with pytest.raises(SizeMismatchError):
        write_tar(tmp_path / "o.tar", [OciImage([OciManifest(parsed(built), b"{}", paths)])])


def test_an_unreadable_blob_file_is_an_output_error(tmp_path: Path) -> None:
    built = two_layer_image()
    image = single(tmp_path / "cache", built, "x:1")
    image.manifests[0].blob_paths[Digest.parse(built.layer_digests[0])].unlink()
    with pytest.raises(OutputError, match="reading blob"):
        write_tar(tmp_path / "out.tar", [image])


def test_bad_arguments_are_refused(tmp_path: Path) -> None:
    built = two_layer_image()
    cache = tmp_path / "cache"
    one = oci_manifest(cache, built)
    with pytest.raises(UsageError):
        write_tar(tmp_path / "out.tar", [])
    with pytest.raises(InvalidReferenceError):
        write_tar(tmp_path / "out.tar", [OciImage([one], tags=[f"x@{built.manifest_digest}"])])
    with pytest.raises(ValueError, match="index"):
        write_tar(tmp_path / "out.tar", [OciImage([one, one])])
    index = im.build_index([two_layer_image("oci")])
    with pytest.raises(ValueError, match="not listed"):
        write_tar(tmp_path / "out.tar", [OciImage([one], index=parsed_index(index))])
    other = single(cache, im.build_image(media_types="oci"), "x:1")
    with pytest.raises(UsageError, match="two different images"):
        write_tar(tmp_path / "out.tar", [OciImage([one], tags=["x:1"]), other])
    with pytest.raises(ValueError, match="no blob file"):
        write_tar(tmp_path / "out.tar", [OciImage([OciManifest(parsed(built), built.config)])])


def test_oci_dir_target_must_be_absent_or_empty(tmp_path: Path) -> None:
    images = [single(tmp_path / "cache", two_layer_image("oci"), "x:1")]
    empty = tmp_path / "empty"
    empty.mkdir()
    write_oci_dir(empty, images)
    assert (empty / "oci-layout").read_bytes() == OCI_LAYOUT_BYTES

    with pytest.raises(OutputError, match="not empty"):
        write_oci_dir(empty, images)
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(OutputError, match="not a directory"):
        write_oci_dir(a_file, images)
    with pytest.raises(OutputError, match="does not exist"):
        write_oci_dir(tmp_path / "missing" / "layout", images)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "empty", "file"]


# ---------------------------------------------------------------------------------------
# docker load (Docker 20.10 daemon)
# ---------------------------------------------------------------------------------------


def loaded_ids(dockerd: DockerDaemon) -> set[str]:
    return set(dockerd.image_ids())


@pytest.mark.docker
@pytest.mark.parametrize("media_types", ["docker", "oci"])
def test_docker_loads_and_runs_the_oci_tar(
    tmp_path: Path, dockerd: DockerDaemon, media_types: MediaTypes
) -> None:
    built = im.busybox_image(media_types)
    path = write_tar(tmp_path / "out.tar", [single(tmp_path / "cache", built, "ocitest:1")])
    assert dockerd.load(path) == ["ocitest:1"]
    assert dockerd.image_id("ocitest:1") == built.config_digest
    assert dockerd.run("ocitest:1", "echo", "ok").strip() == "ok"


@pytest.mark.docker
def test_docker_loads_every_platform_and_tags_the_first(
    tmp_path: Path, dockerd: DockerDaemon
) -> None:
    image = im.busybox_index("oci")
    path = write_tar(tmp_path / "out.tar", [multi(tmp_path / "cache", image, "multi:latest")])
    dockerd.load(path)
    assert dockerd.image_id("multi:latest") == image.images[0].config_digest
    assert loaded_ids(dockerd) == {platform.config_digest for platform in image.images}
    assert dockerd.run("multi:latest", "echo", "ok").strip() == "ok"
