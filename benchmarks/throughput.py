"""Throughput over time: the bytes the registry sent, sampled while a contender runs.

Every contender that downloads gets its bytes from the registry, so the registry's side
is measured the same way for all of them (dockerdrag, skopeo, docker's daemon, curl, the
Python floors), over any link and in any registry mode: :class:`RegistrySampler` reads
``wchar`` (bytes handed to ``write``/``send``) of the registry process from
``/proc/PID/io`` every :data:`INTERVAL` seconds in a thread of the harness. Through the
shaping proxy the registry runs ahead of the client by at most the proxy's buffer
(1 MB per connection). TLS records count with their framing (a few per cent more than
the payload); the registry's own log lines are a few hundred bytes per request.

:func:`summarise` turns one run's samples into per-bucket rates (1 s buckets, wider for
long runs, so a row stays short), the peak rate and the time by which 90 % of the bytes
had been sent; :func:`throughput_table` shows them per contender.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

INTERVAL = 0.1  # seconds between samples
MAX_BUCKETS = 40  # per row: longer runs get wider buckets
BUCKET_WIDTHS = (1, 2, 5, 10, 20, 30, 60)
SHARE = 0.9  # the share of the bytes whose arrival time is reported
BLOCKS = "▁▂▃▄▅▆▇█"
MB = 1_000_000

Samples = tuple[tuple[float, int], ...]  # (seconds since the start, bytes sent so far)


def written_bytes(pid: int) -> int:
    """``wchar`` of ``pid``: bytes it passed to write-like system calls, sockets included."""
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("wchar:"):
            return int(line.split()[1])
    raise ValueError(f"/proc/{pid}/io has no wchar")


class RegistrySampler:
    """A thread sampling the bytes ``pid`` has written, from :meth:`start` to :meth:`stop`."""

    def __init__(self, pid: int, interval: float = INTERVAL) -> None:
        self.pid = pid
        self.interval = interval
        self._stopped = threading.Event()
        self._samples: list[tuple[float, int]] = []
        self._thread = threading.Thread(target=self._run, name="registry-sampler", daemon=True)
        self._started = 0.0
        self._base = 0

    def start(self) -> None:
        self._started = time.perf_counter()
        self._base = written_bytes(self.pid)
        self._samples.append((0.0, 0))
        self._thread.start()

    def _sample(self) -> None:
        sent = written_bytes(self.pid) - self._base
        self._samples.append((time.perf_counter() - self._started, sent))

    def _run(self) -> None:
        while not self._stopped.wait(self.interval):
            self._sample()

    def stop(self) -> Samples:
        """Stop sampling; the samples, the last one taken now."""
        self._stopped.set()
        self._thread.join()
        self._sample()
        return tuple(self._samples)


@dataclasses.dataclass(frozen=True)
class Throughput:
    """One run's bytes over time, summarised."""

    total: int  # bytes sent during the run
    duration: float  # seconds covered by the samples
    bucket: int  # seconds per bucket
    rates: tuple[float, ...]  # MB/s in each bucket
    time_to_share: float | None  # seconds until SHARE of the bytes were sent

    @property
    def peak(self) -> float:
        return max(self.rates, default=0.0)

    @property
    def tail(self) -> float | None:
        """Seconds the last (1 - SHARE) of the bytes took, to the end of the run."""
        return None if self.time_to_share is None else self.duration - self.time_to_share


def _bytes_at(samples: Samples, moment: float) -> float:
    """Bytes sent by ``moment``, interpolated linearly between samples."""
    previous = samples[0]
    for sample in samples:
        if sample[0] >= moment:
            span = sample[0] - previous[0]
            if span <= 0:
                return float(sample[1])
            return previous[1] + (sample[1] - previous[1]) * (moment - previous[0]) / span
        previous = sample
    return float(samples[-1][1])


def _time_to(samples: Samples, amount: float) -> float | None:
    """The moment (interpolated) the bytes sent reached ``amount``."""
    previous = samples[0]
    for sample in samples:
        if sample[1] >= amount:
            grown = sample[1] - previous[1]
            if grown <= 0:
                return sample[0]
            return previous[0] + (sample[0] - previous[0]) * (amount - previous[1]) / grown
        previous = sample
    return None


def bucket_width(duration: float) -> int:
    """The narrowest of :data:`BUCKET_WIDTHS` that fits ``duration`` in MAX_BUCKETS buckets."""
    for width in BUCKET_WIDTHS:
        if duration <= width * MAX_BUCKETS:
            return width
    return BUCKET_WIDTHS[-1]


def summarise(samples: Samples) -> Throughput | None:
    """Rates per bucket and the time to SHARE of the bytes (None without samples)."""
    if len(samples) < 2:
        return None
    duration = samples[-1][0]
    total = samples[-1][1]
    width = bucket_width(duration)
    rates = []
    start = 0.0
    while start < duration:
        end = min(start + width, duration)
        sent = _bytes_at(samples, end) - _bytes_at(samples, start)
        rates.append(sent / MB / (end - start) if end > start else 0.0)
        start += width
    reached = _time_to(samples, SHARE * total) if total > 0 else None
    return Throughput(total, duration, width, tuple(rates), reached)


def sparkline(rates: Sequence[float], top: float) -> str:
    """One block character per rate, scaled so that ``top`` is the full block."""
    if top <= 0:
        return " " * len(rates)
    last = len(BLOCKS) - 1
    return "".join(BLOCKS[min(last, round(rate / top * last))] for rate in rates)


def throughput_table(rows: Iterable[tuple[str, Throughput | None]]) -> str:
    """One row per contender: the bytes, the time to 90 %, the tail and the rates."""
    lines = [
        f"| contender | MB sent | to {SHARE:.0%} (s) | last {1 - SHARE:.0%} (s) | peak MB/s "
        "| shape | MB/s per bucket (bucket s) |",
        "|---|---:|---:|---:|---:|---|---|",
    ]
    for name, flow in rows:
        if flow is None:
            lines.append(f"| {name} | - | - | - | - | | |")
            continue
        reached = "-" if flow.time_to_share is None else f"{flow.time_to_share:.2f}"
        tail = "-" if flow.tail is None else f"{flow.tail:.2f}"
        rates = " ".join(f"{rate:.0f}" for rate in flow.rates)
        lines.append(
            f"| {name} | {flow.total / MB:.1f} | {reached} | {tail} | {flow.peak:.0f} "
            f"| `{sparkline(flow.rates, flow.peak)}` | {rates} ({flow.bucket}) |"
        )
    return "\n".join(lines)
