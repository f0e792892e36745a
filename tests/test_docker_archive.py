"""The legacy docker save writer reproduces Docker 20.10 byte for byte (format sections 2 and 4)."""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import json
import lzma
import tarfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import BinaryIO

import pytest
import zstandard

from dockerdrag.digest import Digest
from dockerdrag.docker_archive import (
    ArchiveImage,
    ArchiveLayer,
    DockerArchiveOptions,
    ManifestItem,
    chain_ids,
    manifest_json,
    plan_image,
    repositories_json,
    write_docker_archive,
)
from dockerdrag.errors import (
    DiffIDMismatchError,
    InvalidManifestError,
    InvalidReferenceError,
    UsageError,
)
from dockerdrag.gojson import decode_image_config
from dockerdrag.layers import announced_size, open_decompressed

FIXTURES = Path(__file__).parent / "fixtures" / "docker-save-20.10"
IMAGE_FIXTURES = sorted(
    path.name for path in FIXTURES.iterdir() if path.is_dir() and not path.name.startswith("_")
)


def fixture_tag(name: str) -> str:
    return f"127.0.0.1:5101/fid/{name}:latest"


def _opener(path: Path) -> Callable[[], BinaryIO]:
    return lambda: open_decompressed(path)


def fixture_image(
    name: str, repo_tags: Sequence[str] | None = None, *, announce: bool = False
) -> ArchiveImage:
    """An ArchiveImage built from the fixture's ``registry/`` directory alone.

    ``announce``: the layers tell their announced sizes (for the parallel writer).
    """
    registry = FIXTURES / name / "registry"
    manifest = json.loads((registry / "manifest.json").read_bytes())
    config_bytes = (registry / Digest.parse(manifest["config"]["digest"]).hex).read_bytes()
    diff_ids = decode_image_config(config_bytes).diff_ids
    paths = [registry / Digest.parse(layer["digest"]).hex for layer in manifest["layers"]]
    layers = [
        ArchiveLayer(
            diff_id,
            _opener(path),
            (lambda p=path: announced_size(p)) if announce else None,
        )
        for path, diff_id in zip(paths, diff_ids, strict=True)
    ]
    tags = [fixture_tag(name)] if repo_tags is None else list(repo_tags)
    return ArchiveImage.of(config_bytes, layers, tags)


def v1_layer_ids(config: bytes, options: DockerArchiveOptions | None = None) -> list[str]:
    return plan_image(decode_image_config(config), options or DockerArchiveOptions()).v1_ids


def build(images: Sequence[ArchiveImage], **options: object) -> bytes:
    out = io.BytesIO()
    write_docker_archive(out, images, DockerArchiveOptions(**options))  # type: ignore[arg-type]
    return out.getvalue()


def symlink_mtime(archive: Path) -> int:
    with tarfile.open(archive) as tar:
        return next(int(member.mtime) for member in tar.getmembers() if member.issym())


def manifest_of(archive: Path) -> list[dict[str, object]]:
    with tarfile.open(archive) as tar:
        member = tar.extractfile("manifest.json")
        assert member is not None
        result: list[dict[str, object]] = json.loads(member.read())
        return result


def assert_same_bytes(got: bytes, expected: bytes) -> None:
    if got != expected:
        first = next(
            (i for i, (a, b) in enumerate(zip(got, expected, strict=False)) if a != b),
            min(len(got), len(expected)),
        )
        pytest.fail(
            f"archives differ at byte {first} (sizes {len(got)} vs {len(expected)}): "
            f"{got[first - 40 : first + 40]!r} vs {expected[first - 40 : first + 40]!r}"
        )


# --- golden fixtures --------------------------------------------------------------


@pytest.mark.parametrize("name", IMAGE_FIXTURES)
def test_fixture_is_reproduced_byte_for_byte(name: str) -> None:
    expected_path = FIXTURES / name / "docker-save.tar"
    now = symlink_mtime(expected_path) if name == "duplayer" else None
    assert_same_bytes(build([fixture_image(name)], now=now), expected_path.read_bytes())


def test_duplayer_second_run() -> None:
    expected_path = FIXTURES / "duplayer" / "docker-save.second-run.tar"
    now = symlink_mtime(expected_path)
    assert_same_bytes(build([fixture_image("duplayer")], now=now), expected_path.read_bytes())


def _fixture_name_by_config() -> dict[str, str]:
    names = {}
    for name in IMAGE_FIXTURES:
        manifest = json.loads((FIXTURES / name / "registry" / "manifest.json").read_bytes())
        names[Digest.parse(manifest["config"]["digest"]).hex + ".json"] = name
    return names


@pytest.mark.parametrize(
    "archive",
    ["save-multi-single-shared.run1.tar", "save-shared-multi-single.run3.tar"],
)
def test_multi_image_archive_in_the_order_docker_used(archive: str) -> None:
    expected_path = FIXTURES / "_multi-image" / archive
    by_config = _fixture_name_by_config()
    order = [by_config[str(entry["Config"])] for entry in manifest_of(expected_path)]
    images = [fixture_image(name) for name in order]
    got = build(images, now=symlink_mtime(expected_path))
    assert_same_bytes(got, expected_path.read_bytes())


@pytest.mark.parametrize(
    ("archive", "repo_tags"),
    [
        ("multi-saved-by-image-id.tar", []),
        ("multi-saved-by-repo-digest.tar", []),
        (
            "multi-saved-by-name-only.tar",
            ["127.0.0.1:5101/fid/multi:latest", "127.0.0.1:5101/fid/multi:v2"],
        ),
        (
            "multi-saved-with-4-tags.tar",
            [
                "127.0.0.1:5101/fid/multi:v2",
                "example.com/other/multi:zz",
                "fidmulti:1",
                "127.0.0.1:5101/fid/multi:latest",
            ],
        ),
    ],
)
def test_save_variants(archive: str, repo_tags: list[str]) -> None:
    expected = (FIXTURES / "_save-variants" / archive).read_bytes()
    assert_same_bytes(build([fixture_image("multi", repo_tags)]), expected)


def test_duplicate_tags_and_duplicate_images_are_merged() -> None:
    tag = fixture_tag("multi")
    twice = [fixture_image("multi", [tag, tag]), fixture_image("multi", [tag])]
    assert_same_bytes(build(twice), (FIXTURES / "multi" / "docker-save.tar").read_bytes())


# --- quick vectors (format section 10) ------------------------------------------------


def test_quick_vectors() -> None:
    emptylayers = fixture_image("emptylayers").plan.config.raw
    assert v1_layer_ids(emptylayers) == [
        "f03864c0f72757e67c0d6af984daa3696f5078671d742348d7e50eabadc043de",
        "0a8788067fbb2dd127b9c3e6493a1808ae7ac4dd195544ce165ac07ff1829dd6",
    ]
    assert str(decode_image_config(emptylayers).diff_ids[0]) == (
        "sha256:04df3292fbf571acc09bc0fb21065d96f2e09e903386ea0eef272e78ec52170c"
    )
    assert v1_layer_ids(fixture_image("minimal").plan.config.raw) == [
        "fe307dbe06d2e59fbe294f665c66fb18d012ae98a115b0d2f1ee82313c50dc6f"
    ]


def test_minimal_has_all_mtimes_zero() -> None:
    with tarfile.open(fileobj=io.BytesIO(build([fixture_image("minimal")]))) as tar:
        assert {member.mtime for member in tar.getmembers()} == {0}


def test_chain_ids() -> None:
    a, b = Digest("a" * 64), Digest("b" * 64)
    assert chain_ids([a, b]) == [a, Digest.of(f"{a} {b}".encode())]


# --- options ------------------------------------------------------------------------


def test_daemon_time_zone_changes_lower_layers_and_all_ids() -> None:
    config = fixture_image("emptylayers").plan.config.raw
    options = DockerArchiveOptions(epoch_utc_offset_seconds=3600)
    ids = v1_layer_ids(config, options)
    assert ids[0] != v1_layer_ids(config)[0]
    assert ids[1] != v1_layer_ids(config)[1]
    archive = build([fixture_image("emptylayers")], epoch_utc_offset_seconds=3600)
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        member = tar.extractfile(f"{ids[0]}/json")
        assert member is not None
        assert b'"created":"1970-01-01T01:00:00+01:00"' in member.read()


@pytest.mark.parametrize(("flavour", "type_bits"), [("23", True), ("24", False)])
def test_header_flavours_change_only_headers(flavour: str, type_bits: bool) -> None:
    reference = (FIXTURES / "duplayer" / "docker-save.tar").read_bytes()
    now = symlink_mtime(FIXTURES / "duplayer" / "docker-save.tar")
    got = build([fixture_image("duplayer")], now=now, header_flavour=flavour)
    assert len(got) == len(reference)
    with tarfile.open(FIXTURES / "duplayer" / "docker-save.tar") as tar:
        header_offsets = {member.offset for member in tar.getmembers()}
    for offset in range(0, len(got), 512):
        block, ref_block = got[offset : offset + 512], reference[offset : offset + 512]
        if offset not in header_offsets:
            assert block == ref_block
            continue
        assert block[265:297] == b"\0" * 32  # uname
        mode = int(block[100:107], 8)
        assert (mode > 0o7777) is type_bits
        assert block[:100] == ref_block[:100] and block[124:148] == ref_block[124:148]


def test_bad_header_flavour_is_a_usage_error() -> None:
    with pytest.raises(UsageError):
        build([fixture_image("single")], header_flavour="25")


# --- validation ---------------------------------------------------------------------


def _image_with_layer_bytes(layer_bytes: bytes, tmp_path: Path, diff_id: Digest) -> ArchiveImage:
    path = tmp_path / "layer"
    path.write_bytes(layer_bytes)
    config = json.dumps(
        {"os": "linux", "rootfs": {"type": "layers", "diff_ids": [str(diff_id)]}}
    ).encode()
    return ArchiveImage.of(config, [ArchiveLayer(diff_id, _opener(path))], ["x:1"])


def test_diff_id_mismatch(tmp_path: Path) -> None:
    claimed = Digest.of(b"other")
    image = _image_with_layer_bytes(b"actual layer", tmp_path, claimed)
    with pytest.raises(DiffIDMismatchError) as caught:
        build([image])
    message = str(caught.value)
    assert "layer 0" in message
    assert str(claimed) in message
    assert str(Digest.of(b"actual layer")) in message


def test_layer_count_and_diff_ids_must_match_the_config(tmp_path: Path) -> None:
    image = fixture_image("multi")
    with pytest.raises(InvalidManifestError):
        build([ArchiveImage(image.plan, image.layers[:2], image.repo_tags)])
    swapped = [image.layers[1], image.layers[0], image.layers[2]]
    with pytest.raises(InvalidManifestError):
        build([ArchiveImage(image.plan, swapped, image.repo_tags)])


@pytest.mark.parametrize(
    "config",
    [
        b'{"rootfs":{"type":"layers","diff_ids":[]}}',
        b'{"rootfs":{"type":"layers"}}',
        b'{"rootfs":{"diff_ids":["sha256:abc"]}}',
        b'{"rootfs":{"diff_ids":["sha256:' + b"a" * 64 + b'"]},"history":[{},{}]}',
        b'{"os":"linux"}',
    ],
)
def test_configs_docker_refuses(config: bytes) -> None:
    with pytest.raises(InvalidManifestError):
        v1_layer_ids(config)


def test_created_after_2242_is_unsupported(tmp_path: Path) -> None:
    layer = _layer_tar()
    diff_id = Digest.of(layer)
    image = _image_with_layer_bytes(layer, tmp_path, diff_id)
    config = json.loads(image.plan.config.raw)
    for created, supported in (("2262-01-01T00:00:00Z", False), ("2300-01-01T00:00:00Z", True)):
        config["created"] = created  # after 2262 Docker clamps the mtime to 0
        dated = ArchiveImage.of(json.dumps(config).encode(), image.layers, image.repo_tags)
        if supported:
            build([dated])
        else:
            with pytest.raises(InvalidManifestError):
                build([dated])


def test_no_images_is_a_usage_error() -> None:
    with pytest.raises(UsageError):
        build([])


# --- compressed and uncompressed layers -----------------------------------------------


def _layer_tar() -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        info = tarfile.TarInfo("hello.txt")
        payload = b"hello from a layer\n" * 200
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    return buffer.getvalue() + b"\0" * 1536


@pytest.mark.parametrize(
    "compress",
    [
        gzip.compress,
        bz2.compress,
        lzma.compress,
        lambda data: zstandard.ZstdCompressor().compress(data),
        lambda data: data,
    ],
    ids=["gzip", "bzip2", "xz", "zstd", "uncompressed"],
)
def test_layers_are_stored_uncompressed(tmp_path: Path, compress: Callable[[bytes], bytes]) -> None:
    layer = _layer_tar()
    diff_id = Digest(hashlib.sha256(layer).hexdigest())
    image = _image_with_layer_bytes(compress(layer), tmp_path, diff_id)
    output = tmp_path / "out.tar"
    with output.open("wb") as out:
        write_docker_archive(out, [image])
    (v1_id,) = v1_layer_ids(image.plan.config.raw)
    with tarfile.open(output) as tar:
        member = tar.extractfile(f"{v1_id}/layer.tar")
        assert member is not None
        assert member.read() == layer
        member = tar.extractfile("repositories")
        assert member is not None
        assert member.read() == b'{"x":{"1":"' + v1_id.encode() + b'"}}\n'


def test_duplicate_layer_data_is_read_once() -> None:
    image = fixture_image("duplayer")
    opened: list[Digest] = []

    def counting(layer: ArchiveLayer) -> ArchiveLayer:
        def open_layer() -> BinaryIO:
            opened.append(layer.diff_id)
            return layer.open()

        return ArchiveLayer(layer.diff_id, open_layer)

    counted = ArchiveImage(image.plan, [counting(x) for x in image.layers], image.repo_tags)
    build([counted], now=0)
    assert len(opened) == 2 and len(set(opened)) == 2


# --- manifest.json and repositories ----------------------------------------------------


def test_manifest_json_encoding() -> None:
    items = [
        ManifestItem("a.json", ["r:1", "x<y>:2"], ["l/layer.tar"]),
        ManifestItem("b.json", None, []),
    ]
    assert manifest_json(items) == (
        b'[{"Config":"a.json","RepoTags":["r:1","x\\u003cy\\u003e:2"],"Layers":["l/layer.tar"]},'
        b'{"Config":"b.json","RepoTags":null,"Layers":[]}]\n'
    )


def test_repositories_json_sorts_both_levels() -> None:
    tags = [("b/x:2", "id1"), ("localhost:5000/a:t", "id2"), ("b/x:10", "id1")]
    assert repositories_json(tags) == (
        b'{"b/x":{"10":"id1","2":"id1"},"localhost:5000/a":{"t":"id2"}}\n'
    )
    with pytest.raises(InvalidReferenceError):
        repositories_json([("localhost:5000/a", "id")])
