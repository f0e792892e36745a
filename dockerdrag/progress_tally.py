"""What the progress renderers share: the tally of a pull's bytes, its rate, and the lines
every renderer words the same way (Docker's labels, resuming, retries, the summary).

A :class:`Tally` follows the events of one pull. Per layer it keeps the last
``done`` and ``resumed`` (see :class:`~dockerdrag.events.LayerProgress`) and counts
the bytes this run received; the rate is the growth of that count over the last
:data:`RATE_WINDOW_SECONDS` (:class:`RateMeter`), so bytes found on disk from an
earlier run or in the cache never count as speed.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Self

from .digest import Digest
from .events import LayerPhase, LayerProgress, ProgressEvent, PullStarted, RequestRetry
from .human_units import (
    address,
    format_amount,
    format_bytes,
    format_rate,
    format_seconds,
    plural,
)

Clock = Callable[[], float]

RATE_WINDOW_SECONDS = 5.0
"""The rate is the bytes received over this many recent seconds, over that time."""
_SAMPLE_SECONDS = 0.2  # a rate meter keeps a sample at most this often

LABELS = {
    LayerPhase.WAITING: "Waiting",
    LayerPhase.RESUMING: "Resuming",
    LayerPhase.DOWNLOADING: "Downloading",
    LayerPhase.VERIFYING: "Verifying",
    LayerPhase.COMPLETE: "Pull complete",
    LayerPhase.EXISTS: "Already exists",
}
"""What each layer phase reads as, in Docker's words."""


class RateMeter:
    """Bytes per second of a growing count, over the last ``window`` seconds.

    Thread-safe: the live display reads the rate from its refresh thread.
    """

    def __init__(self, clock: Clock, window: float = RATE_WINDOW_SECONDS) -> None:
        self.clock = clock
        self.window = window
        self.count = 0
        self._samples: deque[tuple[float, int]] = deque()  # (time, count then), oldest first
        self._lock = threading.Lock()

    def start(self) -> None:
        """Start measuring now (if not started yet): bytes from now on are counted."""
        with self._lock:
            if not self._samples:
                self._samples.append((self.clock(), self.count))

    def add(self, amount: int) -> None:
        """``amount`` more bytes arrived just now."""
        self.start()
        with self._lock:
            self.count += amount
            now = self.clock()
            if now - self._samples[-1][0] >= _SAMPLE_SECONDS:
                self._samples.append((now, self.count))
            self._forget_before(now - self.window)

    def rate(self) -> float:
        """Bytes per second since the oldest sample kept (0 before any byte)."""
        with self._lock:
            now = self.clock()
            self._forget_before(now - self.window)
            if not self._samples:
                return 0.0
            since, count_then = self._samples[0]
            seconds = now - since
            return (self.count - count_then) / seconds if seconds > 0 else 0.0

    def _forget_before(self, moment: float) -> None:
        """Drop samples older than the newest one at or before ``moment``."""
        while len(self._samples) > 1 and self._samples[1][0] <= moment:
            self._samples.popleft()


@dataclass
class LayerTally:
    """One layer's state as its events tell it."""

    size: int
    meter: RateMeter
    phase: LayerPhase = LayerPhase.WAITING
    done: int = 0
    resumed: int = 0

    @property
    def cached(self) -> bool:
        """Found verified in the cache: nothing to download."""
        return self.phase is LayerPhase.EXISTS


@dataclass
class Tally:
    """Bytes and layers of a pull so far: on disk, fetched by this run, resumed, cached."""

    clock: Clock = time.monotonic
    layers: dict[Digest, LayerTally] = field(default_factory=dict)
    started: float = 0.0
    meter: RateMeter = field(init=False)

    def __post_init__(self) -> None:
        self.started = self.clock()
        self.meter = RateMeter(self.clock)

    def _layer(self, digest: Digest, size: int) -> LayerTally:
        if digest not in self.layers:
            self.layers[digest] = LayerTally(size, RateMeter(self.clock))
        return self.layers[digest]

    def update(self, event: ProgressEvent) -> None:
        """Account for one event."""
        if isinstance(event, PullStarted):
            for digest, size in event.layers:
                self._layer(digest, size)
        elif isinstance(event, LayerProgress):
            layer = self._layer(event.digest, event.total)
            if event.phase is LayerPhase.EXISTS:
                layer.phase, layer.done, layer.resumed = event.phase, event.total, 0
                return
            fetched_before = layer.done - layer.resumed
            layer.phase, layer.done, layer.resumed = event.phase, event.done, event.resumed
            if event.phase is LayerPhase.DOWNLOADING:
                layer.meter.start()
                self.meter.start()
            # A fetch from zero after a failed check lowers ``done``: no bytes arrived.
            arrived = (event.done - event.resumed) - fetched_before
            if arrived > 0:
                layer.meter.add(arrived)
                self.meter.add(arrived)

    @property
    def total_bytes(self) -> int:
        """Bytes of every layer not found in the cache (what the total bar fills up to)."""
        return sum(layer.size for layer in self.layers.values() if not layer.cached)

    @property
    def done_bytes(self) -> int:
        """Bytes of those layers on disk so far (resumed ones included)."""
        return sum(layer.done for layer in self.layers.values() if not layer.cached)

    @property
    def received_bytes(self) -> int:
        """Bytes this run received."""
        return self.meter.count

    @property
    def resumed_bytes(self) -> int:
        """Bytes earlier runs left on disk that this run kept."""
        return sum(layer.resumed for layer in self.layers.values())

    @property
    def elapsed(self) -> float:
        """Seconds since the tally started."""
        return max(0.0, self.clock() - self.started)

    def rate(self) -> float:
        """Bytes per second received over the last :data:`RATE_WINDOW_SECONDS`."""
        return self.meter.rate()

    def eta(self) -> float | None:
        """Seconds until the layers are on disk at the current rate (None: no rate yet)."""
        rate = self.rate()
        remaining = self.total_bytes - self.done_bytes
        return remaining / rate if rate > 0 else None

    def count(self, phase: LayerPhase) -> int:
        """How many layers are in ``phase``."""
        return sum(1 for layer in self.layers.values() if layer.phase is phase)

    def summary(self) -> str:
        """``Downloaded 167.3 MB in 29.8 s (42.5 MB resumed, 1 layer cached)``."""
        text = f"Downloaded {format_bytes(self.received_bytes)} in {format_seconds(self.elapsed)}"
        notes = []
        if self.resumed_bytes:
            notes.append(f"{format_bytes(self.resumed_bytes)} resumed")
        cached = self.count(LayerPhase.EXISTS)
        if cached:
            notes.append(f"{plural(cached, 'layer')} cached")
        return text + (f" ({', '.join(notes)})" if notes else "")


def pulling_line(event: PullStarted) -> str:
    """``Pulling REF (DIGEST)``; the digest once when the reference already names it."""
    if event.reference.endswith(f"@{event.manifest_digest}"):
        return f"Pulling {event.reference}"
    return f"Pulling {event.reference} ({event.manifest_digest})"


def resume_line(event: LayerProgress) -> str:
    """``b741749f2ef1: Resuming (11.4 of 52.4 MB on disk)``."""
    return f"{event.digest.short}: Resuming ({format_amount(event.resumed, event.total)} on disk)"


def in_flight_line(digest: Digest, layer: LayerTally) -> str:
    """``b741749f2ef1: Downloading 11.4 of 52.4 MB (21%, 4.2 MB/s)``."""
    percent = 100 * layer.done // layer.size if layer.size else 100
    return (
        f"{digest.short}: {LABELS[layer.phase]} {format_amount(layer.done, layer.size)} "
        f"({percent}%, {format_rate(layer.meter.rate())})"
    )


def retry_line(event: RequestRetry) -> str:
    """``Connecting to registry.example:443 (retry 2 of 4, in 0.7 s): connection refused``,
    or after an answer that asked for a retry ``registry.example:443 answered HTTP 503 (retry
    1 of 4, in 2.0 s)``."""
    where = address(event.host, event.port)
    when = f"(retry {event.retry} of {event.retries}, in {format_seconds(event.delay)})"
    if event.status is not None:
        return f"{where} answered HTTP {event.status} for {event.what} {when}"
    return f"Connecting to {where} {when}: {event.cause}"


class RendererBase:
    """Shared context-manager plumbing of the renderers."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        return None


__all__ = [
    "LABELS",
    "RATE_WINDOW_SECONDS",
    "LayerTally",
    "RateMeter",
    "RendererBase",
    "Tally",
    "in_flight_line",
    "pulling_line",
    "resume_line",
    "retry_line",
]
