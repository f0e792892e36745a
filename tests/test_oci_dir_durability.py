"""An ``--format oci-dir`` layout is on the disk when the pull reports success: every file
and directory of it fsynced before it is renamed into place, the rename fsynced after;
and the blobs it links are written back to the disk while they download, so those
fsyncs find little left to write.

Both are watched at the OS-call boundary (``os.fsync``, ``osfiles._fadvise``) during
real pulls from the registry fixture.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from dockerdrag import Puller, oci_dir, os_copies, osfiles, partial_blob
from dockerdrag.digest import Digest
from dockerdrag.download import TransferOptions
from tests.support.fault_proxy import FaultProxy, throttle
from tests.support.images import PushedImage, push_image, random_layer, text_layer
from tests.support.registry_server import RegistryServer
from tests.test_transfer import FAST, blob_re

pytestmark = pytest.mark.anyio

CHUNKED = TransferOptions(chunk_threshold=1 << 20, chunk_size=256 << 10, chunk_ramp=1, small_blob=0)
Inode = tuple[int, int]

_pushed: dict[str, PushedImage] = {}


@pytest.fixture
def image(registry: RegistryServer) -> PushedImage:
    """A small layer (streamed) and two bigger ones (in chunks)."""
    if registry.url not in _pushed:
        layers = [
            text_layer("small.txt", "a small layer"),
            random_layer(31, 2_500_000),
            random_layer(32, 1_200_000),
        ]
        _pushed[registry.url] = push_image(registry, "durable/layout", "v1", layers)
    return _pushed[registry.url]


async def pull(
    source: RegistryServer | FaultProxy,
    image: PushedImage,
    tmp_path: Path,
    fmt: str,
    transfer: TransferOptions = CHUNKED,
) -> Path:
    host = source.url.split("://", 1)[1]
    output = tmp_path / f"out-{fmt}"
    async with Puller(
        insecure=[host],
        cache_dir=tmp_path / f"cache-{fmt}",
        use_docker_config=False,
        retry=FAST,
        transfer=transfer,
        concurrency=3,
    ) as puller:
        await puller.pull(f"{host}/{image.repo}:{image.tag}", output=output, format=fmt)
    return output


def inode(found: os.stat_result) -> Inode:
    return found.st_dev, found.st_ino


class DiskLog:
    """The fsyncs of the process, in order, and where the layout was renamed into place."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.fsyncs: list[tuple[Inode, int, bool]] = []  # file, its size then, a directory
        self.moved_at: int | None = None  # fsyncs made before the layout got its name
        real_fsync, real_move = os.fsync, oci_dir.move_dir_into_place

        def fsync(fd: int) -> None:
            real_fsync(fd)
            found = os.fstat(fd)
            self.fsyncs.append((inode(found), found.st_size, stat.S_ISDIR(found.st_mode)))

        def move(source: Path, target: Path) -> None:
            real_move(source, target)
            self.moved_at = len(self.fsyncs)

        monkeypatch.setattr(os, "fsync", fsync)
        monkeypatch.setattr(oci_dir, "move_dir_into_place", move)

    def flushed_before_the_move(self, path: Path) -> bool:
        """Whether ``path`` (as it is now) was fsynced before the layout was renamed into
        place: a directory at all, a file once it had all its bytes."""
        found = path.stat()
        assert self.moved_at is not None
        return any(
            flushed == inode(found) and (directory or size == found.st_size)
            for flushed, size, directory in self.fsyncs[: self.moved_at]
        )

    def flushed_after_the_move(self, directory: Path) -> bool:
        assert self.moved_at is not None
        wanted = inode(directory.stat())
        return any(flushed == wanted for flushed, _, _ in self.fsyncs[self.moved_at :])


@pytest.mark.parametrize("blob_files", ["linked", "copied"])
async def test_the_layout_is_on_the_disk_before_the_pull_reports_success(
    registry: RegistryServer,
    image: PushedImage,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    blob_files: str,
) -> None:
    if blob_files == "copied":
        monkeypatch.setattr(os_copies, "_link", None)
    log = DiskLog(monkeypatch)
    layout = await pull(registry, image, tmp_path, "oci-dir")
    entries = [layout, *layout.rglob("*")]
    files = [entry for entry in entries if entry.is_file()]
    assert len([f for f in files if f.parent.name == "sha256"]) == len(image.layers) + 2
    big = layout / "blobs" / "sha256" / Digest.parse(image.layers[1].digest).hex
    assert big.stat().st_nlink == (2 if blob_files == "linked" else 1)
    not_flushed = [str(entry) for entry in entries if not log.flushed_before_the_move(entry)]
    assert not not_flushed
    assert log.flushed_after_the_move(tmp_path)  # the rename into place


class WriteBacks:
    """The write-backs started (``osfiles._fadvise``): each file's ranges, in order."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.ranges: dict[Inode, list[tuple[int, int]]] = {}
        real: Callable[[int, int, int, int], None] | None = osfiles._fadvise
        assert real is not None  # Linux

        def fadvise(fd: int, offset: int, length: int, advice: int) -> None:
            self.ranges.setdefault(inode(os.fstat(fd)), []).append((offset, length))
            real(fd, offset, length, advice)

        monkeypatch.setattr(osfiles, "_fadvise", fadvise)


async def test_each_blob_of_a_layout_is_written_back_as_it_downloads(
    registry: RegistryServer,
    image: PushedImage,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    step = 1 << 20
    monkeypatch.setattr(partial_blob, "WRITE_BACK_STEP", step)
    started = WriteBacks(monkeypatch)
    with FaultProxy(registry.url) as proxy:
        # The big blob arrives over about a second, so its hash (and write-back) steps along.
        proxy.add(throttle(2_500_000), path=blob_re(image.layers[1]), times=None)
        layout = await pull(proxy, image, tmp_path, "oci-dir")
    for built in image.layers:
        blob = layout / "blobs" / "sha256" / Digest.parse(built.digest).hex
        ranges = started.ranges[inode(blob.stat())]
        # Front to back, every byte once, a step at least at a time but the last.
        assert [offset for offset, _ in ranges] == [0] + [
            offset + length for offset, length in ranges[:-1]
        ]
        assert sum(length for _, length in ranges) == built.size
        assert all(length >= step for _, length in ranges[:-1])
    big = layout / "blobs" / "sha256" / Digest.parse(image.layers[1].digest).hex
    assert len(started.ranges[inode(big.stat())]) > 1  # while it downloads


async def test_a_small_blob_is_left_to_the_fsync(
    registry: RegistryServer,
    image: PushedImage,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A small blob's file work is on the event loop: no write-back there."""
    started = WriteBacks(monkeypatch)
    small = image.layers[2].size + 1
    transfer = TransferOptions(chunk_threshold=1 << 20, chunk_size=256 << 10, small_blob=small)
    layout = await pull(registry, image, tmp_path, "oci-dir", transfer)
    blobs = layout / "blobs" / "sha256"
    written_back = {
        built.digest
        for built in image.layers
        if inode((blobs / Digest.parse(built.digest).hex).stat()) in started.ranges
    }
    assert written_back == {image.layers[1].digest}


async def test_blobs_read_again_by_the_writer_are_not_written_back(
    registry: RegistryServer,
    image: PushedImage,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The tar formats read each blob from the cache after it downloads: its pages stay."""
    started = WriteBacks(monkeypatch)
    for fmt in ("oci", "docker"):
        await pull(registry, image, tmp_path, fmt)
    assert started.ranges == {}
