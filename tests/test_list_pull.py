"""Pulls from an image list into one bundle, the lock file, and locked pulls (the library API).

Against the real registry: a list with comments and per-line platforms, images
sharing layers (stored once), the lock file's content, a locked pull reproducing
the bundle byte for byte, and a tag moved after locking.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import tarfile
import uuid
from pathlib import Path
from typing import Any

import pytest

from dockerdrag import (
    Digest,
    ImageListEntry,
    ImageListError,
    LayerPhase,
    LayerProgress,
    LockedImage,
    LockedLayer,
    LockedManifest,
    Lockfile,
    LockfileError,
    ManifestUnknownError,
    OutputError,
    ProgressEvent,
    Puller,
    PullStarted,
    TagMoved,
    UnsupportedFormatError,
    default_lock_path,
    parse_image_list,
    read_image_list,
    read_lockfile,
    verify_archive,
    write_lockfile,
)
from tests.support.archive_check import read_docker_archive
from tests.support.dockerd import DockerDaemon
from tests.support.fault_proxy import FaultProxy, delay
from tests.support.images import (
    OCI_MANIFEST,
    BuiltLayer,
    PushedImage,
    busybox_index,
    push_image,
    sha256_digest,
    text_layer,
)
from tests.support.registry_server import RegistryServer

pytestmark = pytest.mark.anyio

SeededRegistry = tuple[RegistryServer, dict[str, Any]]
CLOSED_PORT_HOST = "127.0.0.1:9"  # nothing listens on the discard port of loopback here


def puller(server: RegistryServer, tmp_path: Path) -> Puller:
    return Puller(insecure=[server.host], cache_dir=tmp_path / "cache")


def unique_repo() -> str:
    return f"lists/{uuid.uuid4().hex[:12]}"


@dataclasses.dataclass
class SharedPair:
    """Two images in one repository whose bottom layer is the same blob."""

    shared: BuiltLayer
    first: PushedImage
    second: PushedImage


def push_shared_pair(server: RegistryServer) -> SharedPair:
    repo = unique_repo()
    shared = text_layer("base.txt", "shared base " + "x" * 4000 + "\n")
    first = push_image(server, repo, "one", [shared, text_layer("one.txt", "one\n")])
    second = push_image(server, repo, "two", [shared, text_layer("two.txt", "two\n")])
    return SharedPair(shared, first, second)


def write_list(tmp_path: Path, server: RegistryServer, pair: SharedPair) -> Path:
    text = f"""\
# images for the far side
{pair.first.reference}

{pair.second.reference}    # shares its base layer with the line above
  {server.host}/test/multiarch --platform linux/arm64 --tag multiarch:arm64
{server.host}/test/multiarch --platform=linux/amd64 --tag=multiarch:amd64  # busybox
"""
    path = tmp_path / "images.txt"
    path.write_text(text)
    return path


def member_digests(archive: Path) -> list[str]:
    """The sha256 of every regular file in a tar."""
    with tarfile.open(archive) as tar:
        digests = []
        for member in tar.getmembers():
            handle = tar.extractfile(member) if member.isfile() else None
            if handle is not None:
                digests.append(sha256_digest(handle.read()))
        return digests


# ---------------------------------------------------------------------------- the list file


def test_list_lines_comments_and_options() -> None:
    entries = parse_image_list(
        "# heading\n\nalpine:3.20\n  busybox --platform linux/arm64  # trailing\n"
        "nginx --tag=web:1 --platform=linux/amd64,linux/arm64\n",
        "images.txt",
    )
    assert entries == [
        ImageListEntry("alpine:3.20", None, None, "images.txt:3"),
        ImageListEntry("busybox", "linux/arm64", None, "images.txt:4"),
        ImageListEntry("nginx", "linux/amd64,linux/arm64", "web:1", "images.txt:5"),
    ]


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("Busybox", "repository name must be lowercase"),
        ("busybox --platform", "--platform needs a value"),
        ("busybox --platform linux/amd64 --platform linux/arm64", "--platform given twice"),
        ("busybox --output x.tar", "unexpected '--output'"),
        ("busybox alpine", "unexpected 'alpine'"),
        ("--platform linux/amd64 busybox", "starts with an image reference"),
        ("busybox --platform linux/amd64/v8/x", "too many components"),
        ("busybox --tag web@sha256:" + "a" * 64, "cannot hold a digest"),
    ],
)
def test_a_malformed_line_names_the_file_and_line(line: str, problem: str) -> None:
    with pytest.raises(ImageListError, match=problem) as caught:
        parse_image_list(f"# ok\nalpine\n{line}\n", "images.txt")
    assert str(caught.value).startswith("images.txt:3: ")
    assert caught.value.exit_code == 2


def test_an_entry_built_in_code_names_its_tag_not_an_option() -> None:
    tag = "web@sha256:" + "a" * 64
    with pytest.raises(ImageListError) as caught:
        ImageListEntry("busybox", tag=tag)
    assert str(caught.value).startswith(f"busybox: the tag {tag!r} cannot hold a digest")
    assert "--" not in str(caught.value)
    assert caught.value.exit_code == 2


def test_an_empty_or_unreadable_list_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "empty.txt").write_text("# nothing yet\n\n")
    with pytest.raises(ImageListError, match=r"empty\.txt lists no image"):
        read_image_list(tmp_path / "empty.txt")
    with pytest.raises(ImageListError, match=r"cannot read image list .*missing\.txt"):
        read_image_list(tmp_path / "missing.txt")


def test_default_lock_path_is_beside_the_bundle() -> None:
    assert default_lock_path("out/bundle.tar") == Path("out/bundle.lock.json")
    assert default_lock_path("layout") == Path("layout.lock.json")


@pytest.mark.parametrize(
    ("document", "problem"),
    [
        (b"not json", "is not JSON"),
        (b'{"version": 2, "images": []}', "version 2 is not 1"),
        (b'{"version": 1, "images": []}', "locks no image"),
        (b'{"version": 1, "images": [{"reference": "a", "manifests": []}]}', "manifests is empty"),
        (
            b'{"version": 1, "images": [{"reference": "a", "manifests": [{"digest": "sha256:1",'
            b' "layers": []}]}]}',
            r"images\[0\].manifests\[0\].digest: invalid digest",
        ),
    ],
)
def test_a_malformed_lock_file_is_refused(document: bytes, problem: str) -> None:
    with pytest.raises(LockfileError, match=problem) as caught:
        Lockfile.from_json(document, "b.lock.json")
    assert str(caught.value).startswith("lock file b.lock.json")


# ---------------------------------------------------------------------------- list pulls


@pytest.mark.parametrize("output_format", ["docker", "oci"])
async def test_list_into_one_bundle_with_a_lock_file(
    seeded_registry: SeededRegistry, tmp_path: Path, output_format: str
) -> None:
    server, _ = seeded_registry
    pair = push_shared_pair(server)
    listed = read_image_list(write_list(tmp_path, server, pair))
    bundle, lock_path = tmp_path / "bundle.tar", tmp_path / "bundle.lock.json"
    async with puller(server, tmp_path) as client:
        result = await client.pull_list(
            listed, output=bundle, format=output_format, lock_output=lock_path
        )

    index = busybox_index("oci")
    arm64 = index.for_platform("linux", "arm64", "v8")
    amd64 = index.for_platform("linux", "amd64")
    archived = read_docker_archive(bundle)
    assert [a.config for a in archived] == [
        pair.first.config,
        pair.second.config,
        arm64.config,
        amd64.config,
    ]
    assert [a.repo_tags for a in archived] == [
        [pair.first.reference],
        [pair.second.reference],
        ["multiarch:arm64"],
        ["multiarch:amd64"],
    ]
    # The shared base layer is in the bundle once (as a layer tar or as a blob).
    shared_forms = {pair.shared.diff_id, pair.shared.digest}
    assert sum(d in shared_forms for d in member_digests(bundle)) == 1
    expected = [pair.first.image, pair.second.image, arm64, amd64]
    assert [str(r.manifest_digest) for r in result.results] == [i.manifest_digest for i in expected]

    lock = json.loads(lock_path.read_text())
    assert lock["version"] == 1
    assert [i["reference"] for i in lock["images"]] == [e.reference for e in listed]
    assert [i["platform"] for i in lock["images"]] == [None, None, "linux/arm64", "linux/amd64"]
    assert [i["tag"] for i in lock["images"]] == [None, None, "multiarch:arm64", "multiarch:amd64"]
    assert [i["index_digest"] for i in lock["images"]] == [None, None, index.digest, index.digest]
    for entry, image in zip(lock["images"], expected, strict=True):
        (manifest,) = entry["manifests"]
        assert manifest["digest"] == image.manifest_digest
        assert manifest["media_type"] == image.manifest_media_type
        assert manifest["config_digest"] == image.config_digest
        kind = "oci" if image.manifest_media_type == OCI_MANIFEST else "docker"
        assert manifest["layers"] == [
            {"digest": ly.digest, "size": ly.size, "media_type": ly.media_type_for(kind)}
            for ly in image.layers
        ]
    assert [m["platform"] for i in lock["images"] for m in i["manifests"]] == [
        "linux/amd64",
        "linux/amd64",
        "linux/arm64",
        "linux/amd64",
    ]
    assert result.lock == read_lockfile(lock_path)
    assert lock_path.read_bytes() == result.lock.to_json()
    assert not list(tmp_path.glob(".bundle.lock.json.*"))
    verified = await verify_archive(bundle)  # offline, every digest and reference
    assert len(verified.images) == 4


async def test_a_list_resolves_its_images_side_by_side(
    proxy: FaultProxy, registry: RegistryServer, tmp_path: Path
) -> None:
    """Every manifest and blob is answered late (as by a far registry): the lines are
    resolved side by side, not one after the other, so every manifest is asked for before
    the first config is; the layers of the images, each from its own repository, are asked
    for together too. The bundle still holds them in the list's order."""
    images = [
        push_image(registry, unique_repo(), "v1", [text_layer(f"line{n}", f"line {n}")])
        for n in range(3)
    ]
    references = [f"{proxy.host}/{image.repo}:v1" for image in images]
    events: list[ProgressEvent] = []
    async with Puller(
        insecure=[proxy.host], cache_dir=tmp_path / "cache", progress=events.append
    ) as client:
        # First the registry's scheme (an insecure one is asked beside the first request,
        # which the others wait for), then the list, every answer late.
        await client.inspect(references[0])
        proxy.reset()
        events.clear()
        proxy.add(delay(0.3), path=r"/(manifests|blobs)/", times=None)
        result = await client.pull_list(
            [ImageListEntry(reference) for reference in references], output=tmp_path / "b.tar"
        )
    # Every line's manifest was asked for before the first line's config.
    paths = [request.path for request in proxy.requests_for()]
    configs = {f"/blobs/{image.config_digest}" for image in images}
    manifests = [n for n, path in enumerate(paths) if path.endswith("/manifests/v1")]
    first_config = next(
        n for n, path in enumerate(paths) if path[path.find("/blobs/") :] in configs
    )
    assert len(manifests) == len(images)
    assert max(manifests) < first_config
    # Every layer was asked for before the first one was complete (not one repository's
    # layers after another's).
    progress = [e for e in events if isinstance(e, LayerProgress)]
    waiting = [n for n, e in enumerate(progress) if e.phase == LayerPhase.WAITING]
    complete = [n for n, e in enumerate(progress) if e.phase == LayerPhase.COMPLETE]
    assert len(waiting) == len(complete) == len(images)
    assert max(waiting) < min(complete)
    assert [a.config for a in read_docker_archive(tmp_path / "b.tar")] == [
        image.config for image in images
    ]
    assert [str(r.manifest_digest) for r in result.results] == [
        image.manifest_digest for image in images
    ]


async def test_the_first_line_that_fails_is_the_one_reported(
    proxy: FaultProxy, registry: RegistryServer, tmp_path: Path
) -> None:
    """Two lines name images that do not exist; the second line's answer comes first
    (the first's is held back): the error names the first line's image, as a pull of
    one line after the other would have."""
    missing = [f"{proxy.host}/{unique_repo()}:gone" for _ in range(2)]
    proxy.add(delay(0.5), path=missing[0].split("/", 1)[1].replace(":", "/manifests/"))
    async with Puller(insecure=[proxy.host], cache_dir=tmp_path / "cache") as client:
        with pytest.raises(ManifestUnknownError) as raised:
            await client.pull_list(
                [ImageListEntry(reference) for reference in missing], output=tmp_path / "b.tar"
            )
    assert missing[0].split("/", 1)[1].split(":")[0] in str(raised.value)
    assert not (tmp_path / "b.tar").exists()


async def test_list_into_an_oci_dir_and_locked_again(
    seeded_registry: SeededRegistry, tmp_path: Path
) -> None:
    server, _ = seeded_registry
    pair = push_shared_pair(server)
    listed = read_image_list(write_list(tmp_path, server, pair))
    layout, again = tmp_path / "layout", tmp_path / "again"
    async with puller(server, tmp_path) as client:
        first = await client.pull_list(
            listed, output=layout, format="oci-dir", lock_output=default_lock_path(layout)
        )
        await client.pull_list(None, output=again, format="oci-dir", locked=first.lock)
    assert read_lockfile(tmp_path / "layout.lock.json") == first.lock

    def files(root: Path) -> dict[str, bytes]:
        return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}

    stored = files(layout)
    assert stored == files(again)
    assert f"blobs/sha256/{pair.shared.digest[7:]}" in stored
    verified = await verify_archive(layout, require_complete=True)
    assert {str(d) for d in verified.manifests} >= {
        pair.first.manifest_digest,
        pair.second.manifest_digest,
    }


async def test_several_platforms_on_a_line_lock_every_manifest(
    seeded_registry: SeededRegistry, tmp_path: Path
) -> None:
    server, images = seeded_registry
    listed = parse_image_list(f"{images['multiarch'].reference} --platform all\n", "l.txt")
    async with puller(server, tmp_path) as client:
        result = await client.pull_list(listed, output=tmp_path / "all.tar", format="oci")
        await client.pull_list(
            None, output=tmp_path / "again.tar", format="oci", locked=result.lock
        )
    (locked,) = result.lock.images
    index = busybox_index("oci")
    assert locked.platform == "all"
    # 'all' is every manifest the index lists, its attestation too (a complete layout)
    every = [i.manifest_digest for i in index.all_manifests]
    assert [str(m.digest) for m in locked.manifests] == every
    assert (tmp_path / "again.tar").read_bytes() == (tmp_path / "all.tar").read_bytes()


async def test_several_platforms_on_a_docker_format_line_fail_before_any_io(
    tmp_path: Path,
) -> None:
    listed = parse_image_list(
        f"{CLOSED_PORT_HOST}/a\n{CLOSED_PORT_HOST}/b --platform linux/amd64,linux/arm64\n", "l.txt"
    )
    async with Puller(insecure=[CLOSED_PORT_HOST], cache_dir=tmp_path / "c") as client:
        with pytest.raises(ImageListError, match=r"^l.txt:2: several platforms need format='oci'"):
            await client.pull_list(listed, output=tmp_path / "x.tar")
    assert not (tmp_path / "x.tar").exists()


async def test_a_malformed_list_fails_before_any_network_io(tmp_path: Path) -> None:
    """The first line names a registry nobody listens on: reaching it would be a
    network error, so the list error proves no request was made."""
    path = tmp_path / "images.txt"
    path.write_text(f"{CLOSED_PORT_HOST}/first:1\n{CLOSED_PORT_HOST}/Second:1\n")
    with pytest.raises(ImageListError, match=r"images.txt:2: .*lowercase"):
        read_image_list(path)
    entries = [
        ImageListEntry(f"{CLOSED_PORT_HOST}/first:1"),
        ImageListEntry(f"{CLOSED_PORT_HOST}/second:1", platform="linux/amd64,linux/arm64"),
    ]
    async with Puller(insecure=[CLOSED_PORT_HOST], cache_dir=tmp_path / "c") as client:
        with pytest.raises(ImageListError, match="several platforms"):
            await client.pull_list(entries, output=tmp_path / "x.tar")


# ---------------------------------------------------------------------------- locked pulls


async def test_locked_pull_reproduces_the_bundle_byte_for_byte(
    seeded_registry: SeededRegistry, tmp_path: Path
) -> None:
    server, _ = seeded_registry
    pair = push_shared_pair(server)
    listed = read_image_list(write_list(tmp_path, server, pair))
    async with puller(server, tmp_path) as client:
        first = await client.pull_list(
            listed, output=tmp_path / "a.tar", lock_output=tmp_path / "a.lock.json"
        )
    locked = read_lockfile(tmp_path / "a.lock.json")
    # A fresh cache: every blob is fetched again, by the locked digests.
    async with Puller(insecure=[server.host], cache_dir=tmp_path / "cache2") as client:
        again = await client.pull_list(
            None, output=tmp_path / "b.tar", locked=locked, lock_output=tmp_path / "b.lock.json"
        )
        with_list = await client.pull_list(listed, output=tmp_path / "c.tar", locked=locked)
    assert (tmp_path / "b.tar").read_bytes() == (tmp_path / "a.tar").read_bytes()
    assert (tmp_path / "c.tar").read_bytes() == (tmp_path / "a.tar").read_bytes()
    assert (tmp_path / "b.lock.json").read_bytes() == (tmp_path / "a.lock.json").read_bytes()
    assert again.moved_tags == () == with_list.moved_tags
    assert again.results == tuple(
        dataclasses.replace(r, output=tmp_path / "b.tar") for r in first.results
    )


async def test_locked_pull_after_the_tag_moved_pulls_the_locked_digest(
    registry: RegistryServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    repo = unique_repo()
    old = push_image(registry, repo, "1", [text_layer("v.txt", "version one\n")])
    listed = parse_image_list(f"{old.reference}\n", "images.txt")
    async with puller(registry, tmp_path) as client:
        first = await client.pull_list(listed, output=tmp_path / "old.tar")
        new = push_image(registry, repo, "1", [text_layer("v.txt", "version two\n")])
        moved = await client.pull_list(listed, output=tmp_path / "new.tar")
        events: list[ProgressEvent] = []
        with caplog.at_level(logging.WARNING, logger="dockerdrag"):
            locked = await client.pull_list(
                listed, output=tmp_path / "locked.tar", locked=first.lock, progress=events.append
            )
    # Without the lock the tag's new image is pulled: the tag really moved.
    assert moved.results[0].manifest_digest != first.results[0].manifest_digest
    assert str(moved.results[0].manifest_digest) == new.manifest_digest
    assert (tmp_path / "locked.tar").read_bytes() == (tmp_path / "old.tar").read_bytes()
    (move,) = locked.moved_tags
    assert (move.reference, str(move.locked), str(move.current)) == (
        old.reference,
        old.manifest_digest,
        new.manifest_digest,
    )
    assert [e for e in events if isinstance(e, TagMoved)] == [move]
    assert isinstance(events[1], PullStarted)  # reported before anything is fetched
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warning == (
        f"images.txt:1: {old.reference} moved since the lock file: locked "
        f"{old.manifest_digest}, now {new.manifest_digest}; pulling the locked "
        f"{old.manifest_digest}"
    )


async def test_locked_pull_needs_no_tag_resolution(
    seeded_registry: SeededRegistry, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The tag of the locked line does not exist: the digests alone are pulled."""
    server, images = seeded_registry
    index = images["multiarch"]
    listed = parse_image_list(f"{index.reference} --platform linux/arm/v7\n", "l.txt")
    async with puller(server, tmp_path) as client:
        first = await client.pull_list(listed, output=tmp_path / "a.tar", format="oci")
        gone = f"{server.host}/test/multiarch:no-such-tag"
        (image,) = first.lock.images
        lock = Lockfile((dataclasses.replace(image, reference=gone),))
        with caplog.at_level(logging.WARNING, logger="dockerdrag"):
            again = await client.pull_list(None, output=tmp_path / "b.tar", locked=lock)
    assert again.moved_tags == ()
    assert (
        str(again.results[0].manifest_digest)
        == index.for_platform("linux", "arm", "v7").manifest_digest
    )
    assert "could not look up whether" in caplog.text and "no-such-tag" in caplog.text
    archived = read_docker_archive(tmp_path / "b.tar")
    assert archived[0].repo_tags == [f"{server.host}/test/multiarch:no-such-tag"]


async def test_a_list_that_differs_from_the_lock_is_refused_before_any_io(tmp_path: Path) -> None:
    listed = parse_image_list(f"{CLOSED_PORT_HOST}/a:1\n{CLOSED_PORT_HOST}/b:1\n", "l.txt")
    digest = "sha256:" + hashlib.sha256(b"m").hexdigest()
    lock = Lockfile.from_json(
        json.dumps(
            {
                "version": 1,
                "images": [
                    {
                        "reference": f"{CLOSED_PORT_HOST}/a:1",
                        "platform": None,
                        "tag": None,
                        "index_digest": None,
                        "manifests": [
                            {
                                "digest": digest,
                                "media_type": "m",
                                "platform": "linux/amd64",
                                "config_digest": digest,
                                "layers": [],
                            }
                        ],
                    }
                ],
            }
        ).encode()
    )
    async with Puller(insecure=[CLOSED_PORT_HOST], cache_dir=tmp_path / "c") as client:
        with pytest.raises(
            LockfileError,
            match="the image list has 2 images, the lock file 1: pull without locked=",
        ):
            await client.pull_list(listed, output=tmp_path / "x.tar", locked=lock)
        with pytest.raises(LockfileError, match=r"^l.txt:1: '.*/a:1 --platform linux/amd64'"):
            await client.pull_list(
                listed[:1], output=tmp_path / "x.tar", locked=lock, platform="linux/amd64"
            )
        with pytest.raises(LockfileError, match="a default platform goes with an image list"):
            await client.pull_list(None, output=tmp_path / "x.tar", locked=lock, platform="linux")


@pytest.mark.parametrize("output_format", ["docker", "oci"])
async def test_a_list_bundle_loads_into_docker(
    seeded_registry: SeededRegistry, dockerd: DockerDaemon, tmp_path: Path, output_format: str
) -> None:
    server, images = seeded_registry
    listed = parse_image_list(
        f"{images['busybox'].reference}\n"
        f"{images['multiarch'].reference} --platform linux/amd64 --tag multiarch:amd64\n"
        f"{images['multilayer'].reference}\n",
        "images.txt",
    )
    async with puller(server, tmp_path) as client:
        result = await client.pull_list(
            listed, output=tmp_path / "bundle.tar", format=output_format
        )
    loaded = dockerd.load(result.results[0].output)
    assert loaded == [
        images["busybox"].reference,
        "multiarch:amd64",
        images["multilayer"].reference,
    ]
    assert dockerd.run("multiarch:amd64", "echo", "ok").strip() == "ok"
    assert dockerd.image_id(images["multilayer"].reference) == images["multilayer"].image_id


async def test_an_unwritable_lock_path_fails_before_any_network_io(tmp_path: Path) -> None:
    listed = parse_image_list(f"{CLOSED_PORT_HOST}/a:1\n", "l.txt")
    async with Puller(insecure=[CLOSED_PORT_HOST], cache_dir=tmp_path / "c") as client:
        with pytest.raises(OutputError, match="missing does not exist"):
            await client.pull_list(
                listed, output=tmp_path / "x.tar", lock_output=tmp_path / "missing" / "x.json"
            )


async def test_an_unknown_format_fails_before_any_network_io(tmp_path: Path) -> None:
    listed = parse_image_list(f"{CLOSED_PORT_HOST}/a:1\n", "l.txt")
    async with Puller(insecure=[CLOSED_PORT_HOST], cache_dir=tmp_path / "c") as client:
        with pytest.raises(UnsupportedFormatError, match="unknown format 'zip'"):
            await client.pull_list(listed, output=tmp_path / "x.tar", format="zip")
    assert list(tmp_path.iterdir()) == []


def test_the_lock_file_is_written_whole_and_readable(tmp_path: Path) -> None:
    digest = sha256_digest(b"m")
    layer = LockedLayer(Digest.parse(digest), 7, "application/vnd.oci.image.layer.v1.tar+gzip")
    manifest = LockedManifest(
        Digest.parse(digest), "m", "linux/amd64", Digest.parse(digest), (layer,)
    )
    lock = Lockfile((LockedImage("a:1", None, None, None, (manifest,)),))
    target = tmp_path / "b.lock.json"
    target.write_text("the old lock")
    write_lockfile(target, lock)
    assert read_lockfile(target) == lock
    assert target.stat().st_mode & 0o777 == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.lock.json"]
