"""Blob transfer end to end: cache, resume, chunks, retries and faults between client and registry.

Every pull goes through a :class:`FaultProxy` in front of the real ``docker-registry``,
so the bytes the proxy served are the bytes the client fetched. The test image has
a small base layer (always one stream) and a 3 MB layer of random data that is
fetched as one stream (``STREAM``) or as 512 KiB chunks (``CHUNKED``).
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import random
import re
import signal
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import anyio
import pytest

from dockerdrag import (
    AuthenticationError,
    Digest,
    DigestMismatchError,
    DockerDragError,
    NetworkError,
    Puller,
    RegistryError,
    RetryPolicy,
)
from dockerdrag.connection_growth import GROWTH_FACTOR, ConnectionGrowth, next_connection_limit
from dockerdrag.connection_limit import ConnectionLimit
from dockerdrag.download import INITIAL_CONNECTIONS, TransferOptions
from dockerdrag.errors import BlobUnknownError, SizeMismatchError
from dockerdrag.events import LayerPhase, LayerProgress, ProgressEvent
from dockerdrag.pull import PullResult
from dockerdrag.registry import RegistryClient
from dockerdrag.store import BlobStore
from tests.support.archive_check import read_docker_archive
from tests.support.command import assert_nothing_left_at, cli_command, cli_env
from tests.support.fault_proxy import (
    FaultProxy,
    drop_after,
    flip_byte,
    ignore_range,
    lie_content_length,
    stall,
    status,
    strip_content_length,
    swap_body,
    throttle,
    wrong_content_range,
)
from tests.support.images import BuiltLayer, PushedImage, layer, push_image
from tests.support.registry_server import RegistryServer

pytestmark = pytest.mark.anyio

FAST = RetryPolicy(base_delay=0.01, max_delay=0.05)
STREAM = TransferOptions()  # the test blobs are small: file work on the event loop
CHUNK = 512 << 10
CHUNKED = TransferOptions(
    chunk_threshold=1 << 20, chunk_size=CHUNK, chunk_ramp=1, small_blob=0, whole_blobs=False
)
# Each mode is a path a real pull takes: small blobs streamed, big ones in chunks, and
# a big blob streamed whole (file work in worker threads) when ranges are unusable.
MODES = {"stream": STREAM, "chunked": CHUNKED, "threaded-stream": TransferOptions(small_blob=0)}
REPO = "transfer/app"


def random_layer(seed: int, size: int) -> BuiltLayer:
    """An uncompressed layer holding ``size`` random bytes (incompressible, deterministic)."""
    return layer({"data.bin": random.Random(seed).randbytes(size)}, compression="none")


@dataclass(frozen=True)
class Images:
    """The test images, pushed once per registry."""

    app: PushedImage  # base + big
    other: PushedImage  # base + a small layer of its own
    twin: PushedImage  # two layers of exactly the same size

    @property
    def base(self) -> BuiltLayer:
        return self.app.layers[0]

    @property
    def big(self) -> BuiltLayer:
        return self.app.layers[1]


_pushed: dict[str, Images] = {}


def images_in(server: RegistryServer) -> Images:
    if server.url not in _pushed:
        base = random_layer(1, 300_000)
        big = random_layer(2, 3_000_000)
        _pushed[server.url] = Images(
            app=push_image(server, REPO, "v1", [base, big]),
            other=push_image(server, "transfer/other", "v1", [base, random_layer(3, 50_000)]),
            twin=push_image(
                server, "transfer/twin", "v1", [random_layer(4, 700_000), random_layer(5, 700_000)]
            ),
        )
    return _pushed[server.url]


@pytest.fixture
def images(registry: RegistryServer) -> Images:
    return images_in(registry)


# -- helpers ---------------------------------------------------------------------------


def ref(proxy: FaultProxy, image: PushedImage) -> str:
    return f"{proxy.host}/{image.repo}:{image.tag}"


def blob_re(data: BuiltLayer | str) -> str:
    digest = data if isinstance(data, str) else data.digest
    return rf"/blobs/{digest}$"


def served(proxy: FaultProxy, data: BuiltLayer) -> int:
    proxy.wait_idle()
    return proxy.bytes_served(blob_re(data))


def gets(proxy: FaultProxy, data: BuiltLayer | str) -> int:
    proxy.wait_idle()
    return len(proxy.requests_for(blob_re(data)))


def blob_file(cache: Path, data: BuiltLayer | str, suffix: str = "") -> Path:
    digest = data if isinstance(data, str) else data.digest
    return cache / "blobs" / "sha256" / (Digest.parse(digest).hex + suffix)


def recorded_bytes(cache: Path, data: BuiltLayer) -> int:
    """What a resume will keep: the sidecar's ranges, else the partial's length."""
    sidecar = blob_file(cache, data, ".ranges")
    if sidecar.exists():
        return sum(hi - lo for lo, hi in json.loads(sidecar.read_text())["ranges"])
    return blob_file(cache, data, ".partial").stat().st_size


async def pull(
    proxy: FaultProxy,
    image: PushedImage,
    cache: Path,
    output: Path,
    *,
    transfer: TransferOptions = STREAM,
    retry: RetryPolicy = FAST,
    concurrency: int = 3,
    progress: Callable[[ProgressEvent], None] | None = None,
    read_timeout: float | None = None,
    output_format: str = "docker",
) -> PullResult:
    """Pull ``image`` through ``proxy`` into ``output`` (as ``output_format``)."""
    puller = Puller(
        insecure=[proxy.host],
        cache_dir=cache,
        use_docker_config=False,
        retry=retry,
        transfer=transfer,
        concurrency=concurrency,
        progress=progress,
    )
    if read_timeout is not None:
        puller.transport.config = replace(puller.transport.config, read_timeout=read_timeout)
    async with puller:
        return await puller.pull(ref(proxy, image), output=output, format=output_format)


def assert_archive(result: PullResult, image: PushedImage) -> None:
    (loaded,) = read_docker_archive(result.output)
    assert loaded.config == image.config
    assert loaded.diff_ids == image.diff_ids


async def warm_base(proxy: FaultProxy, images: Images, cache: Path, tmp_path: Path) -> None:
    """Pull ``other`` so the shared base layer is verified in the cache beforehand."""
    await pull(proxy, images.other, cache, tmp_path / "other.tar")
    assert blob_file(cache, images.base).exists()
    proxy.reset()


# -- the cache -------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
async def test_second_pull_makes_no_blob_requests(
    proxy: FaultProxy, images: Images, tmp_path: Path, mode: str
) -> None:
    cache = tmp_path / "cache"
    first = await pull(proxy, images.app, cache, tmp_path / "1.tar", transfer=MODES[mode])
    assert_archive(first, images.app)
    assert served(proxy, images.big) == images.big.size
    assert not list((cache / "blobs" / "sha256").glob("*.partial"))
    assert not list((cache / "blobs" / "sha256").glob("*.ranges"))
    proxy.reset()
    second = await pull(proxy, images.app, cache, tmp_path / "2.tar", transfer=MODES[mode])
    assert_archive(second, images.app)
    assert proxy.requests_for(r"/blobs/") == []
    assert (tmp_path / "1.tar").read_bytes() == (tmp_path / "2.tar").read_bytes()


async def test_shared_base_layer_is_fetched_once(
    proxy: FaultProxy, images: Images, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    await pull(proxy, images.app, cache, tmp_path / "a.tar")
    await pull(proxy, images.other, cache, tmp_path / "o.tar")
    assert gets(proxy, images.base) == 1
    assert gets(proxy, images.other.layers[1]) == 1


async def test_concurrent_pulls_in_one_process_fetch_each_blob_once(
    proxy: FaultProxy, images: Images, tmp_path: Path
) -> None:
    proxy.add(throttle(3_000_000), path=blob_re(images.big), times=None)
    cache = tmp_path / "cache"
    results: list[PullResult] = []

    async def one(name: str, transfer: TransferOptions) -> None:
        results.append(
            await pull(proxy, images.app, cache, tmp_path / f"{name}.tar", transfer=transfer)
        )

    async with anyio.create_task_group() as group:
        group.start_soon(one, "a", STREAM)
        group.start_soon(one, "b", CHUNKED)
    for result in results:
        assert_archive(result, images.app)
    assert served(proxy, images.big) == images.big.size
    assert gets(proxy, images.base) == 1


def cli(proxy: FaultProxy, image: PushedImage, cache: Path, output: Path) -> list[str]:
    pull = ["pull", ref(proxy, image), "-o", str(output), "--cache-dir", str(cache)]
    return cli_command(*pull, "--insecure", proxy.host, "-q")


async def test_two_processes_pulling_the_same_blob_share_it(
    proxy: FaultProxy, images: Images, tmp_path: Path
) -> None:
    proxy.add(throttle(3_000_000), path=blob_re(images.big), times=None)
    cache = tmp_path / "cache"
    procs = [
        subprocess.Popen(
            cli(proxy, images.app, cache, tmp_path / f"{n}.tar"),
            env=cli_env(tmp_path),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for n in ("a", "b")
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err.decode()
    assert (tmp_path / "a.tar").read_bytes() == (tmp_path / "b.tar").read_bytes()
    assert served(proxy, images.big) == images.big.size
    assert gets(proxy, images.big) == 1


# -- resume ----------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
async def test_dropped_connection_reconnects_at_the_offset(
    proxy: FaultProxy, images: Images, tmp_path: Path, mode: str
) -> None:
    cut = 1_300_000 if mode != "chunked" else 300_000  # a chunk is 512 KiB
    proxy.add(drop_after(cut), path=blob_re(images.big))
    result = await pull(proxy, images.app, tmp_path / "c", tmp_path / "x.tar", transfer=MODES[mode])
    assert_archive(result, images.app)
    requests = proxy.requests_for(blob_re(images.big))
    assert requests[0].aborted
    tail = "" if mode != "chunked" else str(CHUNK - 1)
    (offset,) = [
        int(match[1])
        for r in requests[1:]
        if (match := re.fullmatch(rf"bytes=(\d+)-{tail}", r.header("Range") or ""))
        and match[1] != "0"
    ]
    # aiohttp drops what it had buffered when the RST arrives (its reader's buffer plus
    # asyncio's 256 KiB reads, so up to about 3 blocks); only that is fetched again.
    assert cut - 768 * 1024 <= offset <= cut
    assert served(proxy, images.big) == images.big.size + cut - offset


async def test_reconnects_without_progress_give_up_and_the_next_run_resumes(
    proxy: FaultProxy, images: Images, tmp_path: Path
) -> None:
    cache = tmp_path / "c"
    await warm_base(proxy, images, cache, tmp_path)
    proxy.add(drop_after(100_000), path=blob_re(images.big), times=None)
    with pytest.raises(NetworkError):
        await pull(proxy, images.app, cache, tmp_path / "x.tar")
    assert_nothing_left_at(tmp_path / "x.tar")
    assert gets(proxy, images.big) == FAST.attempts
    kept = blob_file(cache, images.big, ".partial").stat().st_size
    assert kept == FAST.attempts * 100_000
    assert blob_file(cache, images.base).exists()
    proxy.reset()
    result = await pull(proxy, images.app, cache, tmp_path / "x.tar")
    assert_archive(result, images.app)
    assert served(proxy, images.big) == images.big.size - kept


def cancel_once_downloaded(
    scope: anyio.CancelScope, data: BuiltLayer, done: int
) -> Callable[[ProgressEvent], None]:
    """A progress callback that cancels ``scope`` once ``done`` bytes of ``data`` are in."""
    digest = Digest.parse(data.digest)

    def cancel(event: ProgressEvent) -> None:
        if (
            isinstance(event, LayerProgress)
            and event.digest == digest
            and event.phase is LayerPhase.DOWNLOADING
            and event.done >= done
        ):
            scope.cancel()

    return cancel


@pytest.mark.parametrize("mode", MODES)
async def test_cancelled_pull_keeps_the_partial_and_resumes_it(
    proxy: FaultProxy, images: Images, tmp_path: Path, mode: str
) -> None:
    cache, output = tmp_path / "c", tmp_path / "x.tar"
    proxy.add(throttle(4_000_000), path=blob_re(images.big), times=None)
    with anyio.CancelScope() as scope:
        cancel_halfway = cancel_once_downloaded(scope, images.big, 1_200_000)
        await pull(proxy, images.app, cache, output, transfer=MODES[mode], progress=cancel_halfway)
    assert scope.cancelled_caught
    assert_nothing_left_at(output)
    assert blob_file(cache, images.big, ".partial").exists()
    assert blob_file(cache, images.big, ".ranges").exists() == (mode == "chunked")
    kept = recorded_bytes(cache, images.big)
    assert 1_200_000 <= kept < images.big.size
    proxy.reset()
    result = await pull(proxy, images.app, cache, output, transfer=MODES[mode])
    assert_archive(result, images.app)
    assert served(proxy, images.big) == images.big.size - kept


async def test_a_cancellation_stops_a_body_that_never_waits(
    registry: RegistryServer, tmp_path: Path
) -> None:
    """Over loopback a body can arrive faster than it is written: its reads find the bytes
    there and the waits for the disk threads are shielded, so no await suspends the pull
    where a cancellation is delivered. It must still stop between blocks, not at the end
    of the body."""
    cache, output = tmp_path / "c", tmp_path / "x.tar"
    data = random_layer(7, 64 << 20)
    push_image(registry, "transfer/fast", "v1", [data])
    with anyio.CancelScope() as scope:
        cancel_early = cancel_once_downloaded(scope, data, 8 << 20)
        async with Puller(
            insecure=[registry.host],
            cache_dir=cache,
            use_docker_config=False,
            transfer=TransferOptions(chunk_threshold=1 << 40),
            progress=cancel_early,
        ) as puller:
            await puller.pull(f"{registry.host}/transfer/fast:v1", output=output)
    assert scope.cancelled_caught
    assert not blob_file(cache, data).exists()
    assert recorded_bytes(cache, data) < data.size // 2


async def test_killed_cli_pull_resumes_in_the_next_run(
    proxy: FaultProxy, images: Images, tmp_path: Path
) -> None:
    cache, output = tmp_path / "c", tmp_path / "x.tar"
    partial = blob_file(cache, images.big, ".partial")
    proxy.add(throttle(1_500_000), path=blob_re(images.big), times=None)
    proc = subprocess.Popen(
        cli(proxy, images.app, cache, output),
        env=cli_env(tmp_path),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while not (partial.exists() and partial.stat().st_size >= 1 << 20):
            assert time.monotonic() < deadline and proc.poll() is None
            await anyio.sleep(0.02)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    kept = partial.stat().st_size
    assert 0 < kept < images.big.size
    assert_nothing_left_at(output)
    proxy.reset()
    result = await pull(proxy, images.app, cache, output)
    assert_archive(result, images.app)
    assert served(proxy, images.big) == images.big.size - kept


async def test_interrupted_cli_pull_exits_promptly_and_keeps_the_partial(
    proxy: FaultProxy, images: Images, tmp_path: Path
) -> None:
    cache, output = tmp_path / "c", tmp_path / "x.tar"
    partial = blob_file(cache, images.big, ".partial")
    proxy.add(throttle(1_500_000), path=blob_re(images.big), times=None)
    proc = subprocess.Popen(
        cli(proxy, images.app, cache, output),
        env=cli_env(tmp_path),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        # A shell's background job ignores SIGINT and its children inherit that.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        deadline = time.monotonic() + 30
        while not (partial.exists() and partial.stat().st_size >= 1 << 20):
            assert time.monotonic() < deadline and proc.poll() is None
            await anyio.sleep(0.02)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=5)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err.decode()
    assert b"interrupted" in err
    assert partial.stat().st_size >= 1 << 20
    assert_nothing_left_at(output)


async def test_complete_partial_is_verified_without_a_request(
    proxy: FaultProxy, images: Images, tmp_path: Path
) -> None:
    cache = tmp_path / "c"
    blob_file(cache, images.big).parent.mkdir(parents=True)
    blob_file(cache, images.big, ".partial").write_bytes(images.big.blob)
    result = await pull(proxy, images.app, cache, tmp_path / "x.tar")
    assert_archive(result, images.app)
    assert gets(proxy, images.big) == 0


@pytest.mark.parametrize("mode", MODES)
async def test_corrupt_partial_is_fetched_again_from_zero(
    proxy: FaultProxy, images: Images, tmp_path: Path, mode: str
) -> None:
    cache = tmp_path / "c"
    blob_file(cache, images.big).parent.mkdir(parents=True)
    corrupt = bytearray(images.big.blob[:2_000_000])
    corrupt[10] ^= 0xFF
    blob_file(cache, images.big, ".partial").write_bytes(bytes(corrupt))
    result = await pull(proxy, images.app, cache, tmp_path / "x.tar", transfer=MODES[mode])
    assert_archive(result, images.app)
    assert served(proxy, images.big) == images.big.size - 2_000_000 + images.big.size


async def test_unusable_sidecar_starts_over(
    proxy: FaultProxy, images: Images, tmp_path: Path
) -> None:
    cache = tmp_path / "c"
    blob_file(cache, images.big).parent.mkdir(parents=True)
    blob_file(cache, images.big, ".partial").write_bytes(images.big.blob[:1_000_000])
    blob_file(cache, images.big, ".ranges").write_text("{not json")
    result = await pull(proxy, images.app, cache, tmp_path / "x.tar", transfer=CHUNKED)
    assert_archive(result, images.app)
    assert served(proxy, images.big) == images.big.size
    assert not blob_file(cache, images.big, ".ranges").exists()


async def test_sidecar_ranges_are_resumed_around_holes(
    proxy: FaultProxy, images: Images, tmp_path: Path
) -> None:
    cache, blob = tmp_path / "c", images.big.blob
    blob_file(cache, images.big).parent.mkdir(parents=True)
    with open(blob_file(cache, images.big, ".partial"), "wb") as handle:
        handle.write(blob[:CHUNK])
        handle.seek(3 * CHUNK)
        handle.write(blob[3 * CHUNK : 4 * CHUNK])
    sidecar = {"size": len(blob), "ranges": [[0, CHUNK], [3 * CHUNK, 4 * CHUNK]]}
    blob_file(cache, images.big, ".ranges").write_text(json.dumps(sidecar))
    result = await pull(proxy, images.app, cache, tmp_path / "x.tar", transfer=CHUNKED)
    assert_archive(result, images.app)
    assert served(proxy, images.big) == len(blob) - 2 * CHUNK
    ranges = sorted(r.header("Range") or "" for r in proxy.requests_for(blob_re(images.big)))
    assert f"bytes={CHUNK}-{2 * CHUNK - 1}" in ranges
    assert not any(r.startswith(f"bytes={3 * CHUNK}-") for r in ranges)


async def test_sidecar_is_saved_off_the_event_loop_one_save_at_a_time(
    proxy: FaultProxy, images: Images, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A save every 64 KiB written: many saves while 6 chunks of the 3 MB blob stream in.
    saves: list[tuple[bool, int, list[tuple[int, int]]]] = []
    active = [0, 0]  # saves running now, most ever at once
    original = BlobStore.save_ranges

    def recording_save(store: Any, digest: Digest, size: int, ranges: Any) -> None:
        active[0] += 1
        active[1] = max(active)
        try:
            on_loop = threading.current_thread() is threading.main_thread()
            saves.append((on_loop, ranges.total(), ranges.as_list()))
            time.sleep(0.005)  # a slow disk: the connections must keep reading meanwhile
            original(store, digest, size, ranges)
        finally:
            active[0] -= 1

    monkeypatch.setattr(BlobStore, "save_ranges", recording_save)
    proxy.add(throttle(3_000_000), path=blob_re(images.big), times=None)
    saving_often = replace(CHUNKED, ranges_save_every=64 << 10)
    result = await pull(
        proxy, images.app, tmp_path / "c", tmp_path / "x.tar", transfer=saving_often
    )
    assert_archive(result, images.app)
    assert len(saves) >= 5
    assert not any(on_loop for on_loop, _, _ in saves)
    assert active[1] == 1
    # Each save is a snapshot of bytes really written: within the blob, never shrinking.
    totals = [total for _, total, _ in saves]
    assert totals == sorted(totals)
    assert all(0 <= lo < hi <= images.big.size for _, _, r in saves for lo, hi in r)


# -- chunks and the connection limit ---------------------------------------------------


async def test_large_blob_is_fetched_in_ranged_chunks(
    proxy: FaultProxy, images: Images, tmp_path: Path
) -> None:
    result = await pull(proxy, images.app, tmp_path / "c", tmp_path / "x.tar", transfer=CHUNKED)
    assert_archive(result, images.app)
    requests = proxy.requests_for(blob_re(images.big))
    size = images.big.size
    expected = {f"bytes={lo}-{min(lo + CHUNK, size) - 1}" for lo in range(0, size, CHUNK)}
    last = (math.ceil(size / CHUNK) - 1) * CHUNK
    expected = (expected - {f"bytes={last}-{size - 1}"}) | {f"bytes={last}-"}
    assert {r.header("Range") for r in requests} == expected
    assert all(r.status == 206 for r in requests)
    assert served(proxy, images.big) == size
    (base_request,) = proxy.requests_for(blob_re(images.base))
    assert base_request.header("Range") is None  # under the threshold: one plain stream


def _count_open_blobs(monkeypatch: pytest.MonkeyPatch) -> Callable[[], int]:
    """Count blob requests open at once; returns a function giving the most seen."""
    original = RegistryClient.open_blob
    open_now = busiest = 0

    @contextlib.asynccontextmanager
    async def counting(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        nonlocal open_now, busiest
        async with original(*args, **kwargs) as response:
            open_now += 1
            busiest = max(busiest, open_now)
            try:
                yield response
            finally:
                open_now -= 1

    monkeypatch.setattr(RegistryClient, "open_blob", counting)
    return lambda: busiest


async def pull_app_in_chunks(
    proxy: FaultProxy,
    images: Images,
    tmp_path: Path,
    concurrency: int,
    transfer: TransferOptions = CHUNKED,
) -> None:
    """Pull the app image with its big layer in chunks, at most ``concurrency`` requests."""
    result = await pull(
        proxy,
        images.app,
        tmp_path / "c",
        tmp_path / "x.tar",
        transfer=transfer,
        concurrency=concurrency,
    )
    assert_archive(result, images.app)


@pytest.mark.parametrize("concurrency", [1, 2])
async def test_layers_and_chunks_share_the_connection_limit(
    proxy: FaultProxy,
    images: Images,
    tmp_path: Path,
    concurrency: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    proxy.add(throttle(8_000_000), path=r"/blobs/", times=None)
    busiest = _count_open_blobs(monkeypatch)
    with anyio.fail_after(30):  # a layer waiting for its chunks must not starve them
        await pull_app_in_chunks(proxy, images, tmp_path, concurrency)
    assert busiest() == concurrency
    assert gets(proxy, images.big) == math.ceil(images.big.size / CHUNK)


async def test_slow_connections_make_the_limit_grow_to_the_ceiling(
    proxy: FaultProxy, images: Images, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each connection capped at 400 kB/s (a CDN that paces connections): the pull starts
    with INITIAL_CONNECTIONS and opens more, up to the ceiling asked for, never past it."""
    proxy.add(throttle(400_000), path=r"/blobs/", times=None)
    busiest = _count_open_blobs(monkeypatch)
    ceiling = 7  # the base layer and 6 chunks of the big one
    assert ceiling > INITIAL_CONNECTIONS
    with anyio.fail_after(30):
        await pull_app_in_chunks(proxy, images, tmp_path, ceiling)
    assert busiest() == ceiling


async def test_a_fast_link_keeps_the_initial_connections(
    proxy: FaultProxy, images: Images, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Connections fast enough (here: any rate counts as fast and no registry as far, so a
    loaded machine cannot make loopback look slow) are not multiplied, however many
    requests wait."""
    always_fast = replace(
        CHUNKED, slow_connection_rate=0.0, growth_check_seconds=0.01, far_round_trip=None
    )
    proxy.add(throttle(2_000_000), path=r"/blobs/", times=None)
    busiest = _count_open_blobs(monkeypatch)
    await pull_app_in_chunks(proxy, images, tmp_path, 16, always_fast)
    assert 1 < busiest() <= INITIAL_CONNECTIONS


def test_next_connection_limit_grows_only_for_slow_saturated_connections() -> None:
    rate = TransferOptions().slow_connection_rate
    slow = int(rate * 4 * 0.25 / 2)  # half the rate, 4 connections
    fast = int(rate * 4 * 0.25 * 2)
    grow = functools.partial(next_connection_limit, slow_rate=rate)
    assert grow(4, 16, waiting=3, received=slow, seconds=0.25) == 4 * GROWTH_FACTOR
    assert grow(8, 16, waiting=3, received=slow * 2, seconds=0.25) == 16  # doubles again
    assert grow(4, 16, waiting=3, received=fast, seconds=0.25) == 4  # the link is fast
    assert grow(4, 16, waiting=0, received=slow, seconds=0.25) == 4  # nothing waits
    assert grow(4, 6, waiting=3, received=slow, seconds=0.25) == 6  # never past the ceiling
    assert grow(16, 16, waiting=3, received=0, seconds=0.25) == 16
    assert grow(4, 16, waiting=3, received=slow, seconds=0.0) == 4
    # The process kept a core busy: it, not the link, held the connections back.
    busy = functools.partial(grow, 4, 16, waiting=3, received=slow, seconds=0.25)
    assert busy(cpu_seconds=0.25, busy_share=0.75) == 4
    assert busy(cpu_seconds=0.1875, busy_share=0.75) == 4  # exactly the share
    assert busy(cpu_seconds=0.1, busy_share=0.75) == 4 * GROWTH_FACTOR  # CPU to spare
    assert busy(cpu_seconds=0.25, busy_share=None) == 4 * GROWTH_FACTOR  # not looked at


@pytest.mark.parametrize(("slow_rate", "grown"), [(1e12, 8), (0.0, 2)])
async def test_connection_growth_doubles_towards_the_ceiling_only_while_slow(
    slow_rate: float, grown: int
) -> None:
    """Every place held and ten requests waiting: connections slower than ``slow_rate``
    double the limit (2 -> 4 -> 8, the ceiling, where the watch ends); fast ones never do."""
    limiter = ConnectionLimit(2, gather_seconds=0.0)
    growth = ConnectionGrowth(
        replace(CHUNKED, growth_check_seconds=0.01, slow_connection_rate=slow_rate)
    )
    async with anyio.create_task_group() as waiting:
        for _ in range(2 + 10):
            waiting.start_soon(limiter.acquire)
        await anyio.wait_all_tasks_blocked()
        assert limiter.waiting == 10
        with anyio.move_on_after(10 if grown > 2 else 0.3):
            await growth.watch(limiter, 8)
        waiting.cancel_scope.cancel()
    assert limiter.total_tokens == grown


async def test_a_process_busy_on_its_cpu_keeps_its_connections() -> None:
    """Slow connections and requests waiting, but the process used a whole core at every
    look (its CPU clock runs as fast as the wall clock): the limit stays where it was."""
    limiter = ConnectionLimit(2, gather_seconds=0.0)
    options = replace(CHUNKED, growth_check_seconds=0.01, slow_connection_rate=1e12)
    assert options.busy_cpu_share is not None and options.busy_cpu_share <= 1.0
    growth = ConnectionGrowth(options, cpu_clock=time.monotonic)
    async with anyio.create_task_group() as waiting:
        for _ in range(2 + 10):
            waiting.start_soon(limiter.acquire)
        await anyio.wait_all_tasks_blocked()
        with anyio.move_on_after(0.3):
            await growth.watch(limiter, 8)
        waiting.cancel_scope.cancel()
    assert limiter.total_tokens == 2
    assert not growth.link_slow


# -- faults ----------------------------------------------------------------------------


@pytest.mark.parametrize("code", [408, 429, 500, 502, 503, 504])
async def test_transient_statuses_are_retried(
    proxy: FaultProxy, images: Images, tmp_path: Path, code: int
) -> None:
    proxy.add(status(code, retry_after=0), path=blob_re(images.big), times=2)
    result = await pull(proxy, images.app, tmp_path / "c", tmp_path / "x.tar")
    assert_archive(result, images.app)
    assert [r.status for r in proxy.requests_for(blob_re(images.big))] == [code, code, 200]


@pytest.mark.parametrize("retry_after", ["1", "date"])
async def test_retry_after_is_honoured(
    proxy: FaultProxy, images: Images, tmp_path: Path, retry_after: str
) -> None:
    from datetime import UTC, datetime, timedelta

    when = datetime.now(UTC) + timedelta(seconds=2) if retry_after == "date" else 1
    proxy.add(status(429, retry_after=when), path=blob_re(images.big))
    started = time.monotonic()
    result = await pull(proxy, images.app, tmp_path / "c", tmp_path / "x.tar")
    assert time.monotonic() - started >= 0.9
    assert_archive(result, images.app)


async def test_retries_end_with_a_typed_error(
    proxy: FaultProxy, images: Images, tmp_path: Path
) -> None:
    cache = tmp_path / "c"
    await warm_base(proxy, images, cache, tmp_path)
    proxy.add(status(503, retry_after=0), path=blob_re(images.big), times=None)
    with pytest.raises(RegistryError) as info:
        await pull(proxy, images.app, cache, tmp_path / "x.tar")
    assert info.value.status == 503
    assert gets(proxy, images.big) == FAST.attempts
    assert_nothing_left_at(tmp_path / "x.tar")
    assert blob_file(cache, images.base).exists()


@pytest.mark.parametrize(
    ("code", "error"),
    [(400, RegistryError), (403, AuthenticationError), (404, BlobUnknownError)],
)
async def test_permanent_statuses_are_not_retried(
    proxy: FaultProxy,
    images: Images,
    tmp_path: Path,
    code: int,
    error: type[DockerDragError],
) -> None:
    cache = tmp_path / "c"
    await warm_base(proxy, images, cache, tmp_path)
    proxy.add(status(code), path=blob_re(images.big), times=None)
    with pytest.raises(error):
        await pull(proxy, images.app, cache, tmp_path / "x.tar")
    assert gets(proxy, images.big) == 1
    assert_nothing_left_at(tmp_path / "x.tar")
    assert blob_file(cache, images.base).exists()


@pytest.mark.parametrize("mode", MODES)
async def test_a_body_in_chunked_encoding_is_read_to_its_end(
    proxy: FaultProxy, images: Images, tmp_path: Path, mode: str
) -> None:
    """No ``Content-Length``: the body comes in HTTP chunks, whose ends are no end of the
    body (each byte served once, no reconnect)."""
    proxy.add(strip_content_length(), path=blob_re(images.big), times=None)
    result = await pull(proxy, images.app, tmp_path / "c", tmp_path / "x.tar", transfer=MODES[mode])
    assert_archive(result, images.app)
    assert not any(r.aborted for r in proxy.requests_for(blob_re(images.big)))
    assert served(proxy, images.big) == images.big.size


async def test_stalled_body_reconnects(proxy: FaultProxy, images: Images, tmp_path: Path) -> None:
    proxy.add(stall(3.0, after_bytes=1_200_000), path=blob_re(images.big))
    result = await pull(proxy, images.app, tmp_path / "c", tmp_path / "x.tar", read_timeout=0.3)
    assert_archive(result, images.app)
    second = proxy.requests_for(blob_re(images.big))[1]
    assert second.header("Range") is not None
    assert int(second.header("Range")[6:-1]) >= 1 << 20


async def test_ignored_range_on_resume_starts_over(
    proxy: FaultProxy, images: Images, tmp_path: Path
) -> None:
    proxy.add(drop_after(1_000_000), path=blob_re(images.big))
    proxy.add(ignore_range(), path=blob_re(images.big))
    result = await pull(proxy, images.app, tmp_path / "c", tmp_path / "x.tar")
    assert_archive(result, images.app)
    assert [r.status for r in proxy.requests_for(blob_re(images.big))][1:] == [200]
    assert served(proxy, images.big) == 1_000_000 + images.big.size


async def test_registry_ignoring_range_falls_back_to_one_stream(
    proxy: FaultProxy, images: Images, tmp_path: Path
) -> None:
    proxy.add(ignore_range(), path=blob_re(images.big), times=None)
    result = await pull(proxy, images.app, tmp_path / "c", tmp_path / "x.tar", transfer=CHUNKED)
    assert_archive(result, images.app)
    requests = proxy.requests_for(blob_re(images.big))
    assert [r.header("Range") for r in requests] == [f"bytes=0-{CHUNK - 1}", None]


@pytest.mark.parametrize("mode", MODES)
async def test_wrong_content_range_is_never_trusted(
    proxy: FaultProxy, images: Images, tmp_path: Path, mode: str
) -> None:
    if mode != "chunked":
        proxy.add(drop_after(1_000_000), path=blob_re(images.big))
    proxy.add(wrong_content_range(), path=blob_re(images.big))
    result = await pull(proxy, images.app, tmp_path / "c", tmp_path / "x.tar", transfer=MODES[mode])
    assert_archive(result, images.app)
    requests = proxy.requests_for(blob_re(images.big))
    assert requests[-1].header("Range") is None
    assert requests[-1].status == 200


@pytest.mark.parametrize("total_ok", [True, False])
async def test_416_is_not_read_and_starts_over(
    proxy: FaultProxy, images: Images, tmp_path: Path, total_ok: bool
) -> None:
    cache, size = tmp_path / "c", images.big.size
    blob_file(cache, images.big).parent.mkdir(parents=True)
    blob_file(cache, images.big, ".partial").write_bytes(images.big.blob[:1_000_000])
    total = size if total_ok else size - 5
    body = b"x" * 33
    proxy.add(
        status(416, body=body, headers={"Content-Range": f"bytes */{total}"}),
        path=blob_re(images.big),
    )
    if not total_ok:
        with pytest.raises(SizeMismatchError):
            await pull(proxy, images.app, cache, tmp_path / "x.tar")
        assert_nothing_left_at(tmp_path / "x.tar")
        assert blob_file(cache, images.big, ".partial").stat().st_size == 1_000_000
        return
    result = await pull(proxy, images.app, cache, tmp_path / "x.tar")
    assert_archive(result, images.app)
    assert [r.header("Range") for r in proxy.requests_for(blob_re(images.big))] == [
        "bytes=1000000-",
        None,
    ]


@pytest.mark.parametrize("mode", MODES)
async def test_flipped_byte_is_fetched_again_once(
    proxy: FaultProxy, images: Images, tmp_path: Path, mode: str
) -> None:
    proxy.add(flip_byte(1234), path=blob_re(images.big))
    result = await pull(proxy, images.app, tmp_path / "c", tmp_path / "x.tar", transfer=MODES[mode])
    assert_archive(result, images.app)
    assert served(proxy, images.big) == 2 * images.big.size


@pytest.mark.parametrize("mode", MODES)
async def test_flipped_byte_twice_is_a_digest_mismatch(
    proxy: FaultProxy, images: Images, tmp_path: Path, mode: str
) -> None:
    cache = tmp_path / "c"
    await warm_base(proxy, images, cache, tmp_path)
    proxy.add(flip_byte(1234), path=blob_re(images.big), times=None)
    with pytest.raises(DigestMismatchError):
        await pull(proxy, images.app, cache, tmp_path / "x.tar", transfer=MODES[mode])
    assert_nothing_left_at(tmp_path / "x.tar")
    assert not blob_file(cache, images.big).exists()
    assert blob_file(cache, images.big, ".partial").stat().st_size == 0
    assert blob_file(cache, images.base).exists()


@pytest.mark.parametrize("delta", [1, -1])
async def test_lying_content_length_is_a_size_mismatch(
    proxy: FaultProxy, images: Images, tmp_path: Path, delta: int
) -> None:
    cache = tmp_path / "c"
    await warm_base(proxy, images, cache, tmp_path)
    proxy.add(drop_after(1_000_000), path=blob_re(images.big))
    proxy.add(lie_content_length(delta), path=blob_re(images.big))
    with pytest.raises(SizeMismatchError):
        await pull(proxy, images.app, cache, tmp_path / "x.tar")
    assert_nothing_left_at(tmp_path / "x.tar")
    # aiohttp drops what it had buffered when the RST arrives (up to about 3 blocks); the rest
    # of the first 1 MB stays on disk, and the lying answer added nothing to it.
    kept = blob_file(cache, images.big, ".partial").stat().st_size
    assert 1_000_000 - 768 * 1024 <= kept <= 1_000_000
    assert blob_file(cache, images.base).exists()


@pytest.mark.parametrize("times", [1, None])
async def test_body_of_another_blob_is_rejected(
    proxy: FaultProxy, images: Images, tmp_path: Path, times: int | None
) -> None:
    first, second = images.twin.layers
    assert first.size == second.size
    other_path = f"/v2/{images.twin.repo}/blobs/{second.digest}"
    proxy.add(swap_body(other_path), path=blob_re(first), times=times)
    output = tmp_path / "x.tar"
    if times is None:
        with pytest.raises(DigestMismatchError):
            await pull(proxy, images.twin, tmp_path / "c", output)
        assert_nothing_left_at(output)
        assert not blob_file(tmp_path / "c", first).exists()
        return
    result = await pull(proxy, images.twin, tmp_path / "c", output)
    assert_archive(result, images.twin)


async def test_swapped_body_of_another_size_fails_early(
    proxy: FaultProxy, images: Images, tmp_path: Path
) -> None:
    proxy.add(swap_body(f"/v2/{REPO}/blobs/{images.base.digest}"), path=blob_re(images.big))
    with pytest.raises(SizeMismatchError):
        await pull(proxy, images.app, tmp_path / "c", tmp_path / "x.tar")
    assert_nothing_left_at(tmp_path / "x.tar")
    assert served(proxy, images.big) < images.big.size
