"""Progress that tells the truth, through the API, on the real registry.

A layer fetched in ranged chunks reports ``done`` summed over its chunks, never going
down; the rate a renderer shows is bytes received over time, also on a resumed
download (whose bytes on disk are no speed); a resumed download says so; plain mode
prints a line per layer in flight at a steady interval. Pulls go through the
:class:`FaultProxy` so that the link can be throttled or cut.
"""

from __future__ import annotations

import io
import itertools
import random
import re
import time
from pathlib import Path

import pytest

from dockerdrag import NetworkError, Puller, RetryPolicy
from dockerdrag.download import TransferOptions
from dockerdrag.events import LayerPhase, LayerProgress, ProgressEvent
from dockerdrag.human_units import format_amount, format_bytes
from dockerdrag.progress_plain import PlainProgress
from dockerdrag.progress_tally import RateMeter, Tally
from tests.support.fault_proxy import FaultProxy, drop_after, throttle
from tests.support.images import BuiltLayer, PushedImage, layer, push_image
from tests.support.registry_server import RegistryServer

pytestmark = pytest.mark.anyio

CHUNK = 512 << 10
CHUNKED = TransferOptions(
    chunk_threshold=1 << 20, chunk_size=CHUNK, small_blob=0, whole_blobs=False
)


def random_layer(seed: int, size: int) -> BuiltLayer:
    """An uncompressed layer holding ``size`` random bytes."""
    return layer({"data.bin": random.Random(seed).randbytes(size)}, compression="none")


_pushed: dict[tuple[str, str], PushedImage] = {}


def image(server: RegistryServer, name: str, size: int) -> PushedImage:
    """A one-layer image of ``size`` random bytes (pushed once per registry)."""
    key = (server.url, name)
    if key not in _pushed:
        _pushed[key] = push_image(server, f"progress/{name}", "v1", [random_layer(size, size)])
    return _pushed[key]


def puller(proxy: FaultProxy, cache: Path, **options: object) -> Puller:
    return Puller(
        insecure=[proxy.host],
        cache_dir=cache,
        use_docker_config=False,
        **options,  # type: ignore[arg-type]
    )


def through(proxy: FaultProxy, pushed: PushedImage) -> str:
    return f"{proxy.host}/{pushed.repo}:{pushed.tag}"


def layer_events(events: list[ProgressEvent]) -> list[LayerProgress]:
    return [e for e in events if isinstance(e, LayerProgress)]


# --------------------------------------------------------------------------- done


async def test_chunked_download_reports_done_summed_over_chunks_never_down(
    registry: RegistryServer, proxy: FaultProxy, tmp_path: Path
) -> None:
    pushed = image(registry, "chunked", 8 << 20)
    (built,) = pushed.layers
    proxy.add(throttle(2_000_000), path="/blobs/", times=None)  # chunks interleave
    events: list[ProgressEvent] = []
    async with puller(proxy, tmp_path / "cache", transfer=CHUNKED, concurrency=8) as client:
        await client.pull(through(proxy, pushed), output=tmp_path / "a.tar", progress=events.append)
    proxy.wait_idle()
    ranged = [r for r in proxy.requests_for(rf"/blobs/{built.digest}$") if r.header("Range")]
    assert len(ranged) >= 16, "the layer was not fetched in chunks"
    mine = [e for e in layer_events(events) if str(e.digest) == built.digest]
    downloading = [e for e in mine if e.phase is LayerPhase.DOWNLOADING]
    assert len(downloading) > 32
    dones = [e.done for e in mine]
    backwards = [(a, b) for a, b in itertools.pairwise(dones) if b < a]
    assert not backwards, backwards[:5]
    assert mine[-1].phase is LayerPhase.COMPLETE
    assert mine[-1].done == downloading[-1].done == built.size
    assert all(e.resumed == 0 for e in mine)


# --------------------------------------------------------------------------- rate


class RateProbe:
    """A tally fed by the pull, read while the bytes flow: (wall time, rate, bytes received)."""

    def __init__(self) -> None:
        self.tally = Tally()
        self.began: float | None = None  # when the first body was opened
        self.readings: list[tuple[float, float, int]] = []

    def __call__(self, event: ProgressEvent) -> None:
        self.tally.update(event)
        now = time.monotonic()
        if isinstance(event, LayerProgress) and event.phase is LayerPhase.DOWNLOADING:
            if self.began is None:
                self.began = now
            self.readings.append((now, self.tally.rate(), self.tally.received_bytes))

    def check_rate(self, settled_after: float) -> int:
        """Every rate read ``settled_after`` s after the download began is within 20 % of
        the bytes received over the time since; returns how many readings were checked."""
        assert self.began is not None
        checked = 0
        for moment, rate, received in self.readings:
            seconds = moment - self.began
            if seconds < settled_after:
                continue
            actual = received / seconds
            assert abs(rate - actual) <= 0.2 * actual, (seconds, rate, actual)
            checked += 1
        return checked


async def test_rate_is_bytes_received_over_time_on_a_throttled_chunked_link(
    registry: RegistryServer, proxy: FaultProxy, tmp_path: Path
) -> None:
    pushed = image(registry, "rate", 3 << 20)
    proxy.add(throttle(250_000), path="/blobs/", times=None)  # ~1 MB/s over 4 connections
    probe = RateProbe()
    async with puller(proxy, tmp_path / "cache", transfer=CHUNKED, concurrency=4) as client:
        await client.pull(through(proxy, pushed), output=tmp_path / "r.tar", progress=probe)
    assert probe.tally.received_bytes == pushed.layers[0].size
    assert probe.check_rate(settled_after=1.0) > 10


async def cut_short(proxy: FaultProxy, pushed: PushedImage, cache: Path, kept: int) -> None:
    """A pull that loses its connection after ``kept`` bytes of its layer and gives up."""
    (built,) = pushed.layers
    proxy.add(drop_after(kept, rst=False), path=rf"/blobs/{built.digest}$", times=1)
    no_retry = RetryPolicy(attempts=1, max_reconnects=0)
    with pytest.raises(NetworkError):
        async with puller(proxy, cache, retry=no_retry) as client:
            await client.pull(through(proxy, pushed), output=cache.parent / "cut.tar")
    proxy.wait_idle()
    proxy.reset()


async def test_resumed_download_says_so_and_its_bytes_on_disk_are_no_speed(
    registry: RegistryServer, proxy: FaultProxy, tmp_path: Path
) -> None:
    pushed = image(registry, "resume", 1_500_000)
    (built,) = pushed.layers
    cache = tmp_path / "cache"
    await cut_short(proxy, pushed, cache, 900_000)
    proxy.add(throttle(300_000), path="/blobs/", times=None)
    probe = RateProbe()
    events: list[ProgressEvent] = []

    def both(event: ProgressEvent) -> None:
        events.append(event)
        probe(event)

    async with puller(proxy, cache) as client:
        await client.pull(through(proxy, pushed), output=tmp_path / "r.tar", progress=both)
    proxy.wait_idle()
    assert proxy.bytes_served(rf"/blobs/{built.digest}$") == built.size - 900_000
    mine = [e for e in layer_events(events) if str(e.digest) == built.digest]
    phases = [e.phase for e in mine]
    assert phases.count(LayerPhase.RESUMING) == 1
    resuming = mine[phases.index(LayerPhase.RESUMING)]
    assert (resuming.done, resuming.resumed) == (900_000, 900_000)
    assert phases.index(LayerPhase.RESUMING) < phases.index(LayerPhase.DOWNLOADING)
    after = mine[phases.index(LayerPhase.RESUMING) :]
    assert all(e.resumed == 900_000 and e.done >= 900_000 for e in after)
    assert (mine[-1].phase, mine[-1].done) == (LayerPhase.COMPLETE, built.size)
    tally = probe.tally
    assert (tally.received_bytes, tally.resumed_bytes) == (built.size - 900_000, 900_000)
    assert probe.check_rate(settled_after=1.0) > 5
    assert tally.summary().startswith(f"Downloaded {format_bytes(built.size - 900_000)} in ")
    assert tally.summary().endswith(f" s ({format_bytes(900_000)} resumed)")


# --------------------------------------------------------------------------- plain lines


async def test_plain_mode_prints_layers_in_flight_at_each_interval(
    registry: RegistryServer, proxy: FaultProxy, tmp_path: Path
) -> None:
    pushed = image(registry, "plain", 1_000_000)
    (built,) = pushed.layers
    short = built.digest[7:19]
    proxy.add(throttle(250_000), path="/blobs/", times=None)  # about 4 s
    stream = io.StringIO()
    with PlainProgress(stream, interval=0.5) as plain:
        async with puller(proxy, tmp_path / "cache") as client:
            result = await client.pull(
                through(proxy, pushed), output=tmp_path / "p.tar", progress=plain
            )
        plain.finished([result])
    lines = stream.getvalue().splitlines()
    in_flight = re.compile(
        rf"^{short}: Downloading (\d+\.\d) of {re.escape(format_bytes(built.size))} "
        r"\((\d+)%, \d+(\.\d)? [kM]?B/s\)$"
    )
    amounts = [float(m[1]) for line in lines if (m := in_flight.match(line))]
    assert len(amounts) >= 3, lines
    assert amounts == sorted(amounts) and amounts[0] < amounts[-1], amounts
    assert lines.index(f"{short}: Pull complete ({format_bytes(built.size)})") > max(
        i for i, line in enumerate(lines) if in_flight.match(line)
    )
    assert lines[-2].startswith(f"Downloaded {format_bytes(built.size)} in ")


async def test_plain_mode_names_a_resumed_layer(
    registry: RegistryServer, proxy: FaultProxy, tmp_path: Path
) -> None:
    pushed = image(registry, "plain-resume", 2_000_000)
    (built,) = pushed.layers
    cache = tmp_path / "cache"
    await cut_short(proxy, pushed, cache, 700_000)
    stream = io.StringIO()
    with PlainProgress(stream) as plain:
        async with puller(proxy, cache) as client:
            result = await client.pull(
                through(proxy, pushed), output=tmp_path / "p.tar", progress=plain
            )
        plain.finished([result])
    lines = stream.getvalue().splitlines()
    on_disk = format_amount(700_000, built.size)
    assert f"{built.digest[7:19]}: Resuming ({on_disk} on disk)" in lines, lines
    summary = f"Downloaded {format_bytes(built.size - 700_000)} in "
    assert lines[-2].startswith(summary) and lines[-2].endswith(
        f" ({format_bytes(700_000)} resumed)"
    ), lines


# --------------------------------------------------------------------------- units


def test_rate_meter_counts_a_recent_window() -> None:
    now = [0.0]
    meter = RateMeter(lambda: now[0], window=5.0)
    assert meter.rate() == 0.0
    meter.start()
    for _ in range(20):  # 1 MB/s for 10 s
        now[0] += 0.5
        meter.add(500_000)
    assert meter.rate() == pytest.approx(1_000_000, rel=0.05)
    for _ in range(20):  # then 100 kB/s for 10 s: the window forgets the fast part
        now[0] += 0.5
        meter.add(50_000)
    assert meter.rate() == pytest.approx(100_000, rel=0.05)
    now[0] += 10  # a stall: the rate falls without any event
    assert meter.rate() < 50_000


def test_human_units() -> None:
    assert [format_bytes(n) for n in (0, 999, 1000, 11_449_999, 167_300_000, 2 * 10**9)] == [
        "0 B",
        "999 B",
        "1.0 kB",
        "11.4 MB",
        "167.3 MB",
        "2.0 GB",
    ]
    assert format_amount(11_400_000, 52_400_000) == "11.4 of 52.4 MB"
    assert format_amount(900, 2_000_000) == "0.0 of 2.0 MB"
    assert format_amount(10, 999) == "10 of 999 B"
