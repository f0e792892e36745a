"""A slow link filled: the connection ramp and the split of straggling chunks.

Every pull goes through a :class:`FaultProxy` in front of the real ``docker-registry``;
connections are counted there (the client ports that carried blob requests), and a
straggling chunk is made with a stall on its body. No timings are asserted.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path

import anyio
import pytest

from dockerdrag.blob_body import Cursor
from dockerdrag.chunk_split import OpenChunks
from dockerdrag.download import INITIAL_CONNECTIONS, TransferOptions
from dockerdrag.events import LayerPhase, LayerProgress, ProgressEvent
from dockerdrag.pull import PullResult
from tests.support.archive_check import read_docker_archive
from tests.support.fault_proxy import FaultProxy, delay, stall, throttle
from tests.support.images import BuiltLayer, PushedImage, layer, push_image
from tests.support.registry_server import RegistryServer
from tests.test_transfer import pull as pull_through

pytestmark = pytest.mark.anyio

MIB = 1 << 20
LAYER_SIZE = 3_000_000
# Two chunks (of one size: no ramp): [0, 2 MiB) and the rest; a straggling first chunk has
# 2 MiB left, twice the least half, so it is split once, at 1 MiB. Chunks for the oci
# formats too (not whole blobs), ranked by the order the writer reads the blobs.
SPLITTING = TransferOptions(
    chunk_threshold=MIB,
    chunk_size=2 * MIB,
    chunk_ramp=1,
    small_blob=0,
    split_min_bytes=MIB,
    whole_blobs=False,
)
# Many small chunks (never split): one request per chunk, enough to keep 16 connections busy.
MANY_CHUNKS = TransferOptions(
    chunk_threshold=MIB, chunk_size=128 << 10, chunk_ramp=1, small_blob=0, whole_blobs=False
)

_pushed: dict[str, PushedImage] = {}
_two_layers: dict[str, PushedImage] = {}
_two_big_layers: dict[str, PushedImage] = {}


@pytest.fixture
def image(registry: RegistryServer) -> PushedImage:
    if registry.url not in _pushed:
        data = random.Random(18).randbytes(LAYER_SIZE)
        _pushed[registry.url] = push_image(
            registry, "speed/app", "v1", [layer({"data.bin": data}, compression="none")]
        )
    return _pushed[registry.url]


@pytest.fixture
def two_layers(registry: RegistryServer) -> PushedImage:
    if registry.url not in _two_layers:
        layers = [
            layer({"data.bin": random.Random(seed).randbytes(1_500_000)}, compression="none")
            for seed in (180, 181)
        ]
        _two_layers[registry.url] = push_image(registry, "speed/two", "v1", layers)
    return _two_layers[registry.url]


@pytest.fixture
def two_big_layers(registry: RegistryServer) -> PushedImage:
    """Two layers of two chunks each with ``SPLITTING``."""
    if registry.url not in _two_big_layers:
        layers = [
            layer({"data.bin": random.Random(seed).randbytes(LAYER_SIZE)}, compression="none")
            for seed in (182, 183)
        ]
        _two_big_layers[registry.url] = push_image(registry, "speed/two-big", "v1", layers)
    return _two_big_layers[registry.url]


def blob_re(data: BuiltLayer) -> str:
    return rf"/blobs/{data.digest}$"


async def pull(
    proxy: FaultProxy,
    image: PushedImage,
    cache: Path,
    transfer: TransferOptions,
    *,
    concurrency: int = 3,
    progress: Callable[[ProgressEvent], None] | None = None,
    output_format: str = "docker",
) -> PullResult:
    output = cache.parent / f"{cache.name}.tar"
    result = await pull_through(
        proxy,
        image,
        cache,
        output,
        transfer=transfer,
        concurrency=concurrency,
        progress=progress,
        output_format=output_format,
    )
    if output_format == "docker":
        (loaded,) = read_docker_archive(result.output)
        assert loaded.diff_ids == image.diff_ids  # every layer verified and written
    return result


def ranges_asked(proxy: FaultProxy, data: BuiltLayer) -> list[str | None]:
    proxy.wait_idle()
    return [r.header("Range") for r in proxy.requests_for(blob_re(data))]


# -- the split of a straggling chunk ------------------------------------------------------


async def test_an_idle_connection_takes_the_second_half_of_a_straggling_chunk(
    proxy: FaultProxy, image: PushedImage, tmp_path: Path
) -> None:
    """The first chunk stalls; once the other chunk is done, its connection asks for the
    second half of the first one, and the blob still verifies."""
    (data,) = image.layers
    proxy.add(stall(2.0), path=blob_re(data))  # the first request: the first chunk
    with anyio.fail_after(30):
        await pull(proxy, image, tmp_path / "c", SPLITTING)
    asked = ranges_asked(proxy, data)
    assert asked[0] == f"bytes=0-{2 * MIB - 1}"
    assert f"bytes={2 * MIB}-" in asked  # the rest of the blob
    assert f"bytes={MIB}-{2 * MIB - 1}" in asked  # the split-off half
    assert len(asked) == 3  # 1 MiB left of the straggler is not worth splitting again


async def test_a_pull_stopped_after_a_split_resumes_only_what_is_missing(
    proxy: FaultProxy, image: PushedImage, tmp_path: Path
) -> None:
    """The ranges sidecar records the split-off half and the other chunk, not the
    straggler's unfetched bytes: the next run asks for exactly those."""
    (data,) = image.layers
    cache = tmp_path / "c"
    proxy.add(stall(60.0), path=blob_re(data))  # the straggler never gets anywhere
    with anyio.CancelScope() as scope:

        def cancel_when_the_rest_is_in(event: ProgressEvent) -> None:
            if (
                isinstance(event, LayerProgress)
                and event.phase is LayerPhase.DOWNLOADING
                and event.done >= data.size - MIB
            ):
                scope.cancel()

        with anyio.fail_after(30):
            await pull(proxy, image, cache, SPLITTING, progress=cancel_when_the_rest_is_in)
    assert scope.cancelled_caught
    assert f"bytes={MIB}-{2 * MIB - 1}" in ranges_asked(proxy, data)
    proxy.reset()
    await pull(proxy, image, cache, SPLITTING)
    assert ranges_asked(proxy, data) == [f"bytes=0-{MIB - 1}"]
    assert proxy.bytes_served(blob_re(data)) == MIB


async def test_a_blobs_first_chunks_grow_to_the_chunk_size(
    proxy: FaultProxy, image: PushedImage, tmp_path: Path
) -> None:
    """A ramp of 4 steps to 1 MiB: the chunks are 1, 2, 3 and 4 quarters of a MiB, then
    whole MiBs (the last one shorter), so they come in one after the other."""
    (data,) = image.layers
    ramp = TransferOptions(
        chunk_threshold=MIB, chunk_size=MIB, chunk_ramp=4, small_blob=0, whole_blobs=False
    )
    await pull(proxy, image, tmp_path / "c", ramp)
    quarter = MIB // 4
    starts = [0, quarter, 3 * quarter, 6 * quarter, 10 * quarter]
    asked = ranges_asked(proxy, data)
    assert sorted(asked, key=lambda r: int(str(r)[6:].split("-")[0])) == [
        *(f"bytes={start}-{end - 1}" for start, end in itertools.pairwise(starts)),
        f"bytes={starts[-1]}-",  # the rest of the blob
    ]


def test_chunk_ramp_is_at_least_one() -> None:
    with pytest.raises(ValueError, match="chunk_ramp"):
        TransferOptions(chunk_ramp=0)


def test_split_min_bytes_is_at_least_a_mebibyte() -> None:
    with pytest.raises(ValueError, match="split_min_bytes"):
        TransferOptions(split_min_bytes=MIB - 1)


async def test_a_straggler_is_split_only_once_no_other_chunk_waits(
    proxy: FaultProxy, two_big_layers: PushedImage, tmp_path: Path
) -> None:
    """Two layers of two chunks over two connections; the first chunk of the layer read
    first stalls. Once that layer has no chunk left to start, its idle connection could
    split the straggler, but it waits until the other layer's second chunk has a
    connection: a split closes the straggler's connection and loses its bytes in flight."""
    first, second = sorted(two_big_layers.layers, key=lambda data: data.digest)
    proxy.add(stall(2.5), path=blob_re(first), range_header=f"bytes=0-{2 * MIB - 1}")
    # Paced bodies: the straggler has stalled long enough to be judged when the first
    # layer's other chunk is done.
    proxy.add(throttle(2_000_000), path=r"/blobs/", times=None)
    with anyio.fail_after(30):
        await pull(
            proxy, two_big_layers, tmp_path / "c", SPLITTING, concurrency=2, output_format="oci"
        )
    proxy.wait_idle()
    asked = [
        (record.path.rsplit("/", 1)[-1], record.header("Range"))
        for record in proxy.requests_for(r"/blobs/sha256:")
    ]
    split_off = asked.index((str(first.digest), f"bytes={MIB}-{2 * MIB - 1}"))
    other_rest = asked.index((str(second.digest), f"bytes={2 * MIB}-"))
    assert other_rest < split_off


# -- the connection ramp --------------------------------------------------------------------


async def test_a_slow_link_gets_more_connections_than_a_fast_one(
    proxy: FaultProxy, image: PushedImage, tmp_path: Path
) -> None:
    """Every body paced (a CDN capping each connection): the limit doubles up to the
    ceiling. The same pull where every rate counts as fast keeps the initial connections.
    Connections are counted at the proxy: the client ports that carried blob requests."""
    (data,) = image.layers
    fast = replace(MANY_CHUNKS, slow_connection_rate=0.0, far_round_trip=None)
    await pull(proxy, image, tmp_path / "fast", fast, concurrency=16)
    fast_connections = proxy.connections(r"/blobs/")
    proxy.reset()
    proxy.add(throttle(250_000), path=blob_re(data), times=None)
    with anyio.fail_after(60):
        await pull(proxy, image, tmp_path / "slow", MANY_CHUNKS, concurrency=16)
    slow_connections = proxy.connections(r"/blobs/")
    assert fast_connections <= INITIAL_CONNECTIONS
    assert slow_connections >= 2 * INITIAL_CONNECTIONS


async def test_a_far_registry_gets_every_connection_at_once(
    proxy: FaultProxy, image: PushedImage, tmp_path: Path
) -> None:
    """The config takes a while to come (held back at the proxy, as a far registry's
    would): the layer's chunks get every connection the ceiling allows, though no
    connection ever counts as slow. Connections are counted at the proxy."""
    (data,) = image.layers
    proxy.add(stall(0.2), path=rf"/blobs/{image.config_digest}$")
    proxy.add(throttle(250_000), path=blob_re(data), times=None)  # every chunk held a while
    never_slow = replace(MANY_CHUNKS, slow_connection_rate=0.0)
    with anyio.fail_after(60):
        await pull(proxy, image, tmp_path / "far", never_slow, concurrency=16)
    assert proxy.connections(blob_re(data)) > 2 * INITIAL_CONNECTIONS


async def test_a_far_registry_gets_connections_opened_while_the_config_comes(
    proxy: FaultProxy, image: PushedImage, tmp_path: Path
) -> None:
    """The manifest's answer is held back at the proxy (a far registry's would be): while
    the config comes (held back too), the client opens the connections the layer's chunks
    will take, so the proxy has accepted them before it has answered the config. The same
    pull, where no registry counts as far, opens none ahead."""

    async def connections_by_the_config(cache: Path, transfer: TransferOptions) -> int:
        proxy.reset()
        proxy.add(delay(0.1), path=r"/manifests/")
        proxy.add(stall(0.3), path=rf"/blobs/{image.config_digest}$")
        before = proxy.connections_accepted
        with anyio.fail_after(60):
            await pull(proxy, image, cache, transfer, concurrency=16)
        proxy.wait_idle()
        (config,) = proxy.requests_for(rf"/blobs/{image.config_digest}$")
        return config.connections_when_done - before

    near = await connections_by_the_config(
        tmp_path / "near", replace(MANY_CHUNKS, far_round_trip=None)
    )
    far = await connections_by_the_config(tmp_path / "far", MANY_CHUNKS)
    assert far == near + 16  # one for each request the chunked layer starts with


def test_the_connection_limit_doubles_twice_within_a_fifth_of_a_second() -> None:
    """Each doubling takes two slow looks in a row (the first may be connection set-up);
    over a far link a pull of many small layers is mostly this ramp, so the looks come at
    least every 50 ms (6 -> 12 -> 16 connections after 0.2 s, not 0.4 s)."""
    looks_per_doubling = 2
    assert 2 * looks_per_doubling * TransferOptions().growth_check_seconds <= 0.2


# -- the order blobs finish in ----------------------------------------------------------------


async def test_a_freed_connection_goes_to_the_blob_the_writer_needs_first(
    proxy: FaultProxy, two_layers: PushedImage, tmp_path: Path
) -> None:
    """Two layers in chunks over two connections: once each has its first chunk going,
    every freed connection goes to the layer the OCI writer reads first (the lower
    digest), so it finishes before the other gets a second request."""
    first, second = sorted(two_layers.layers, key=lambda data: data.digest)
    # Paced bodies: each layer's further chunks are queued before a first chunk ends.
    proxy.add(throttle(2_000_000), path=r"/blobs/", times=None)
    await pull(proxy, two_layers, tmp_path / "c", MANY_CHUNKS, concurrency=2, output_format="oci")
    proxy.wait_idle()
    order = [
        record.path.rsplit("/", 1)[-1]
        for record in proxy.requests_for(r"/blobs/sha256:")
        if record.path.endswith((first.digest, second.digest))
    ]
    chunks = -(-first.size // MANY_CHUNKS.chunk_size)
    assert order.count(first.digest) == chunks
    last_of_first = max(i for i, digest in enumerate(order) if digest == first.digest)
    second_requests = [i for i, digest in enumerate(order) if digest == second.digest]
    assert second_requests[0] < last_of_first  # both started at once
    assert all(i > last_of_first for i in second_requests[1:])


async def test_the_docker_format_fetches_the_layers_its_decoders_read_side_by_side(
    proxy: FaultProxy, two_layers: PushedImage, tmp_path: Path
) -> None:
    """Two layers, two decoders, each reading one layer from its start as it arrives:
    freed connections go to the chunks of both layers in turn, each front first, not to
    the layer the archive holds first until it is complete."""
    first, second = sorted(two_layers.layers, key=lambda data: data.digest)
    proxy.add(throttle(2_000_000), path=r"/blobs/", times=None)
    await pull(proxy, two_layers, tmp_path / "c", MANY_CHUNKS, concurrency=2)
    proxy.wait_idle()
    order = [
        record.path.rsplit("/", 1)[-1]
        for record in proxy.requests_for(r"/blobs/sha256:")
        if record.path.endswith((first.digest, second.digest))
    ]
    early = order[: len(order) // 2]
    assert abs(early.count(first.digest) - early.count(second.digest)) <= 2


async def test_a_blob_is_verified_once_its_chunks_are_in(
    proxy: FaultProxy, two_layers: PushedImage, tmp_path: Path
) -> None:
    """Two layers in chunks over two connections: the layer read first gets every freed
    connection and is complete while the other still has chunks to ask for. It is verified
    then, not once its idle connections (waiting for a straggler to split, behind every
    request of the other layer) have each had a place."""
    first, second = sorted(two_layers.layers, key=lambda data: data.digest)
    proxy.add(throttle(2_000_000), path=r"/blobs/", times=None)
    asked_for_second: list[int] = []

    def note_first_complete(event: ProgressEvent) -> None:
        if (
            isinstance(event, LayerProgress)
            and str(event.digest) == first.digest
            and event.phase is LayerPhase.COMPLETE
        ):
            asked_for_second.append(len(proxy.requests_for(blob_re(second))))

    await pull(
        proxy,
        two_layers,
        tmp_path / "c",
        MANY_CHUNKS,
        concurrency=2,
        output_format="oci",
        progress=note_first_complete,
    )
    chunks = -(-second.size // MANY_CHUNKS.chunk_size)
    assert len(asked_for_second) == 1
    assert asked_for_second[0] < chunks


# -- which straggler is worth a split (the rule alone, on a clock of its own) --------------


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _receiving(chunks: OpenChunks, stack: ExitStack, pos: int, end: int) -> Cursor:
    cursor = Cursor(pos, end)
    stack.enter_context(chunks.receiving(cursor))
    return cursor


def test_a_chunk_that_will_finish_soon_is_not_split() -> None:
    """Over a fast link the rest of a chunk comes sooner than a new request would pay
    (the split would also lose the bytes in flight on its connection)."""
    clock = _Clock()
    chunks = OpenChunks(MIB, 0.5, clock)
    with ExitStack() as stack:
        cursor = _receiving(chunks, stack, 0, 16 * MIB)
        clock.now += 0.2
        cursor.pos = 8 * MIB  # 40 MiB/s: the other 8 MiB take 0.2 s
        assert chunks.split() is None
        assert chunks.seconds_until_judged() is None
        assert cursor.end == 16 * MIB


def test_the_chunk_that_would_take_longest_is_split_in_the_middle() -> None:
    clock = _Clock()
    chunks = OpenChunks(MIB, 0.5, clock)
    with ExitStack() as stack:
        slow = _receiving(chunks, stack, 0, 16 * MIB)
        slower = _receiving(chunks, stack, 16 * MIB, 24 * MIB)
        clock.now += 0.5
        slow.pos = 4 * MIB  # 8 MiB/s: 1.5 s to go
        slower.pos = 17 * MIB  # 2 MiB/s: 3.5 s to go
        rest = chunks.split()
        assert rest is not None
        assert (rest.pos, rest.end) == (20 * MIB + MIB // 2, 24 * MIB)
        assert slower.end == rest.pos
        assert slow.end == 16 * MIB


def test_a_chunk_is_judged_only_once_its_body_has_come_for_a_while() -> None:
    """A body that has only just begun has no rate yet: the idle connection is told how
    long to wait; a body that sends nothing in that time is a straggler."""
    clock = _Clock()
    chunks = OpenChunks(MIB, 0.5, clock)
    with ExitStack() as stack:
        stalled = _receiving(chunks, stack, 0, 16 * MIB)
        clock.now += 0.05
        assert chunks.split() is None
        wait = chunks.seconds_until_judged()
        assert wait == pytest.approx(0.075)
        clock.now += 0.075
        rest = chunks.split()
        assert rest is not None
        assert (rest.pos, rest.end, stalled.end) == (8 * MIB, 16 * MIB, 8 * MIB)


def test_split_min_seconds_is_not_negative() -> None:
    with pytest.raises(ValueError, match="split_min_seconds"):
        TransferOptions(split_min_seconds=-1.0)
