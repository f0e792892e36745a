"""A big blob comes whole, for every format (the docker writer follows it as it arrives).

One request, ``Range: bytes=0-``, hashed as it is written; no ranges sidecar while its
bytes on disk are a prefix; split into ranged chunks only while it comes slowly (the
sidecar saved before the first byte is written past the prefix); never split when the
registry answered that request with a 200; in ranked chunks from the start over a link
that proved slow (a far registry). And the prefix of a blob fetched in chunks is
hashed as its blocks are written whenever they continue it, not read back. A blob whose
file work runs in disk threads is written in bigger blocks than one written on the event
loop.

Every pull goes through a :class:`FaultProxy` in front of the real ``docker-registry``.
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

import anyio
import pytest

from dockerdrag import Puller
from dockerdrag import partial_blob as partial_blob_module
from dockerdrag.blob_bodies import (
    BLOCK_BYTES,
    THREAD_BLOCK_BYTES,
    THREAD_BLOCKS_BUDGET,
    thread_block_bytes,
)
from dockerdrag.chunk_split import OpenChunks
from dockerdrag.download import TransferOptions
from dockerdrag.partial_blob import PartialBlob
from dockerdrag.pull import PullResult
from dockerdrag.store import BlobStore
from tests.support.fault_proxy import FaultProxy, ignore_range, stall, throttle
from tests.support.images import BuiltLayer, PushedImage, push_image
from tests.test_link_speed import _Clock, _receiving
from tests.test_transfer import (
    FAST,
    assert_archive,
    blob_file,
    blob_re,
    cancel_once_downloaded,
    random_layer,
    served,
)
from tests.test_transfer import pull as pull_through

pytestmark = pytest.mark.anyio

MIB = 1 << 20
# Big blobs (over 1 MiB) in chunks of 512 KiB where chunks are used, a straggler split
# while 2 MiB of it are to come; file work in threads.
BIG = TransferOptions(
    chunk_threshold=MIB, chunk_size=512 << 10, chunk_ramp=1, small_blob=0, split_min_bytes=MIB
)
RANKED = replace(BIG, whole_blobs=False)
SLOW = 1_000_000  # bytes a second: far below TransferOptions.slow_connection_rate

_pushed: dict[str, PushedImage] = {}


@pytest.fixture
def image(registry: Any) -> PushedImage:
    if registry.url not in _pushed:
        layers = [random_layer(61, 200_000), random_layer(62, 3_000_000)]
        _pushed[registry.url] = push_image(registry, "whole/app", "v1", layers)
    return _pushed[registry.url]


def big(image: PushedImage) -> BuiltLayer:
    return image.layers[1]


async def pull(
    proxy: FaultProxy,
    image: PushedImage,
    cache: Path,
    output_format: str,
    *,
    transfer: TransferOptions = BIG,
    progress: Any = None,
) -> PullResult:
    output = cache.parent / f"{cache.name}.{output_format}"
    return await pull_through(
        proxy,
        image,
        cache,
        output,
        transfer=transfer,
        progress=progress,
        output_format=output_format,
    )


def ranges_asked(proxy: FaultProxy, data: BuiltLayer) -> list[str | None]:
    proxy.wait_idle()
    return [r.header("Range") for r in proxy.requests_for(blob_re(data))]


@pytest.fixture
def disk_log(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int, int]]:
    """Every block written to the partial of a blob over 1 MiB (``write``, its offset, the
    hashed prefix's end after it), every byte run read back to hash it (``read``, offset,
    length) and every sidecar save (``save``, bytes recorded, 0), in the order they
    happened."""
    log: list[tuple[str, int, int]] = []
    lock = threading.Lock()
    real_write, real_save, real_pread = (
        PartialBlob.write,
        BlobStore.save_ranges,
        partial_blob_module.pread,
    )

    def write(self: PartialBlob, pos: int, block: memoryview) -> None:
        real_write(self, pos, block)
        if self.size > MIB:
            with lock:
                log.append(("write", pos, self.hashed))

    def save_ranges(self: BlobStore, digest: Any, size: int, ranges: Any) -> None:
        with lock:
            log.append(("save", ranges.total(), 0))
        real_save(self, digest, size, ranges)

    def pread(fd: int, size: int, offset: int) -> bytes:
        data = real_pread(fd, size, offset)
        with lock:
            log.append(("read", offset, len(data)))
        return data

    monkeypatch.setattr(PartialBlob, "write", write)
    monkeypatch.setattr(BlobStore, "save_ranges", save_ranges)
    monkeypatch.setattr(partial_blob_module, "pread", pread)
    return log


@pytest.mark.parametrize("output_format", ["docker", "oci", "oci-dir"])
async def test_a_big_blob_comes_whole_over_a_fast_link(
    proxy: FaultProxy,
    image: PushedImage,
    tmp_path: Path,
    disk_log: list[tuple[str, int, int]],
    output_format: str,
) -> None:
    """One request for the whole blob, every block hashed as it is written (nothing read
    back) and no sidecar saved; with ``whole_blobs=False``, ranked chunks."""
    await pull(proxy, image, tmp_path / "c", output_format)
    assert ranges_asked(proxy, big(image)) == ["bytes=0-"]
    assert served(proxy, big(image)) == big(image).size
    writes = [entry for entry in disk_log if entry[0] == "write"]
    assert len(writes) > 1
    assert all(hashed > pos for _, pos, hashed in writes)  # each one hashed as written
    assert not [entry for entry in disk_log if entry[0] in ("read", "save")]
    proxy.reset()
    await pull(proxy, image, tmp_path / "d", output_format, transfer=RANKED)
    assert len(ranges_asked(proxy, big(image))) == -(-big(image).size // BIG.chunk_size)


@pytest.mark.parametrize("output_format", ["docker", "oci"])
async def test_a_whole_blob_that_comes_slowly_is_split(
    proxy: FaultProxy,
    image: PushedImage,
    tmp_path: Path,
    disk_log: list[tuple[str, int, int]],
    output_format: str,
) -> None:
    """A slow body (a link that caps each connection): idle connections take halves of
    it. The sidecar is saved before the first byte is written past the prefix. (The
    docker writer, following the blob's prefix, still writes the archive.)"""
    proxy.add(throttle(SLOW), path=blob_re(big(image)), times=None)
    with anyio.fail_after(30):
        result = await pull(proxy, image, tmp_path / "c", output_format)
    if output_format == "docker":
        assert_archive(result, image)
    asked = ranges_asked(proxy, big(image))
    assert asked[0] == "bytes=0-"
    assert len(asked) > 1
    assert all(r is not None and not r.startswith("bytes=0-") for r in asked[1:])
    prefix = 0
    for kind, pos, hashed in disk_log:
        if kind == "save":
            break
        assert kind == "write" and pos == prefix  # before a save, only the prefix grows
        prefix = hashed
    else:
        pytest.fail("no sidecar saved before the split-off half was written")


async def test_over_a_far_registry_a_big_blob_comes_in_ranked_chunks(
    proxy: FaultProxy, image: PushedImage, tmp_path: Path
) -> None:
    """The config took long to come (held back at the proxy, as a far registry's would):
    every request waits that long, and a whole blob would be split, losing the bytes in
    flight on each connection it splits, so the blob comes in chunks from the start."""
    proxy.add(stall(0.2), path=rf"/blobs/{image.config_digest}$")
    await pull(proxy, image, tmp_path / "c", "oci")
    asked = ranges_asked(proxy, big(image))
    assert asked[0] == f"bytes=0-{BIG.chunk_size - 1}"
    assert len(asked) == -(-big(image).size // BIG.chunk_size)


async def test_a_blob_answered_whole_is_never_split(
    proxy: FaultProxy, image: PushedImage, tmp_path: Path
) -> None:
    """A registry that answers ``bytes=0-`` with a 200 may not honour ranges: the slow
    body is left alone (a split's answer would throw the download away)."""
    proxy.add(ignore_range(), throttle(4 * SLOW), path=blob_re(big(image)), times=None)
    with anyio.fail_after(30):
        await pull(proxy, image, tmp_path / "c", "oci")
    proxy.wait_idle()
    (request,) = proxy.requests_for(blob_re(big(image)))
    assert request.status == 200
    assert served(proxy, big(image)) == big(image).size


async def test_a_cancelled_whole_blob_resumes_from_its_prefix(
    proxy: FaultProxy, image: PushedImage, tmp_path: Path
) -> None:
    """No sidecar: the partial's length is what a resume keeps, and it asks for the rest."""
    cache = tmp_path / "c"
    proxy.add(throttle(4 * SLOW), path=blob_re(big(image)), times=None)
    with anyio.CancelScope() as scope:
        cancel = cancel_once_downloaded(scope, big(image), 1_200_000)
        # Fast as far as splits go: a cancelled split would leave a sidecar.
        never_split = TransferOptions(
            chunk_threshold=MIB, small_blob=0, slow_connection_rate=SLOW / 10
        )
        await pull(proxy, image, cache, "oci-dir", transfer=never_split, progress=cancel)
    assert scope.cancelled_caught
    assert not blob_file(cache, big(image), ".ranges").exists()
    kept = blob_file(cache, big(image), ".partial").stat().st_size
    assert 1_200_000 <= kept < big(image).size
    proxy.reset()
    await pull(proxy, image, cache, "oci-dir")
    assert ranges_asked(proxy, big(image)) == [f"bytes={kept}-"]
    assert served(proxy, big(image)) == big(image).size - kept


async def test_chunks_that_continue_the_prefix_are_hashed_as_written(
    proxy: FaultProxy, image: PushedImage, tmp_path: Path, disk_log: list[tuple[str, int, int]]
) -> None:
    """One connection: the docker format's chunks come one after the other, each block
    continuing the hashed prefix, so none is read back to be hashed."""
    async with Puller(
        insecure=[proxy.host],
        cache_dir=tmp_path / "c",
        use_docker_config=False,
        retry=FAST,
        transfer=RANKED,
        concurrency=1,
    ) as puller:
        await puller.pull(
            f"{proxy.host}/{image.repo}:{image.tag}", output=tmp_path / "x.tar", format="docker"
        )
    assert len(ranges_asked(proxy, big(image))) > 1
    assert not [entry for entry in disk_log if entry[0] == "read"]


def test_a_fast_chunk_is_not_split_under_a_rate_limit() -> None:
    """With ``max_rate`` a chunk that comes faster is left alone however long its rest
    would take (the client, not the link, holds it back); a slower one is split."""
    clock = _Clock()
    limited = OpenChunks(MIB, 0.5, clock, max_rate=16 * MIB)
    unlimited = OpenChunks(MIB, 0.5, clock)
    with contextlib.ExitStack() as stack:
        fast = _receiving(limited, stack, 0, 256 * MIB)
        fast_too = _receiving(unlimited, stack, 0, 256 * MIB)
        clock.now += 0.5
        fast.pos = fast_too.pos = 20 * MIB  # 40 MiB/s: 5.9 s to go
        assert limited.split() is None
        assert limited.seconds_until_judged() is None
        assert unlimited.split() is not None
        slow = _receiving(limited, stack, 256 * MIB, 512 * MIB)
        clock.now += 0.5
        slow.pos = 260 * MIB  # 8 MiB/s
        rest = limited.split()
        assert rest is not None
        assert rest.end == 512 * MIB
        assert fast.end == 256 * MIB


def test_the_block_of_a_body_shrinks_as_more_bodies_go_to_the_disk_threads() -> None:
    """Up to six bodies at once each gets a full block; more share the budget, down to a
    small blob's block: the blocks of 16 connections hold no more than those of six."""
    assert THREAD_BLOCKS_BUDGET == 6 * THREAD_BLOCK_BYTES
    assert [thread_block_bytes(n) for n in (0, 1, 6)] == [THREAD_BLOCK_BYTES] * 3
    assert thread_block_bytes(12) == THREAD_BLOCK_BYTES // 2
    assert thread_block_bytes(16) * 16 <= THREAD_BLOCKS_BUDGET
    assert thread_block_bytes(16) == BLOCK_BYTES
    assert thread_block_bytes(100) == BLOCK_BYTES


@pytest.mark.parametrize("small_blob", [MIB, 4 * MIB])
async def test_a_blob_written_in_disk_threads_is_written_in_bigger_blocks(
    proxy: FaultProxy,
    image: PushedImage,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    small_blob: int,
) -> None:
    """The 3 MB blob's file work runs in disk threads when it is over ``small_blob``:
    then every block but its last is of THREAD_BLOCK_BYTES or more; on the event loop
    (under ``small_blob``) every block is under that, and BLOCK_BYTES or more but its last."""
    writes: list[tuple[int, str]] = []  # bytes written, by which thread
    real_write = PartialBlob.write

    def write(self: PartialBlob, pos: int, pieces: Any) -> None:
        if self.size == big(image).size:
            writes.append((sum(len(piece) for piece in pieces), threading.current_thread().name))
        real_write(self, pos, pieces)

    monkeypatch.setattr(PartialBlob, "write", write)
    await pull(proxy, image, tmp_path / "c", "oci", transfer=replace(BIG, small_blob=small_blob))
    sizes = [size for size, _ in writes]
    assert sum(sizes) == big(image).size
    threads = {thread for _, thread in writes}
    if small_blob < big(image).size:
        assert all(thread.startswith("dockerdrag-disk") for thread in threads)
        assert all(size >= THREAD_BLOCK_BYTES for size in sizes[:-1])
    else:
        assert threads == {threading.main_thread().name}
        assert all(BLOCK_BYTES <= size < THREAD_BLOCK_BYTES for size in sizes[:-1])
        assert len(sizes) > big(image).size // THREAD_BLOCK_BYTES
