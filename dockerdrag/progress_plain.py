"""Plain progress lines for logs and pipes (stderr), and no progress at all (``--quiet``).

:class:`PlainProgress` prints a line per image, per layer that resumes or finishes,
per retried request, and, while it is used as a context manager, every
``interval`` seconds (:data:`PLAIN_INTERVAL_SECONDS`) a line per layer still
downloading, so a CI log shows a long download moving. Sizes are in human units.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Sequence
from typing import IO, Self

from .digest import Digest
from .events import (
    ArchiveWriting,
    LayerPhase,
    LayerProgress,
    ProgressEvent,
    PullStarted,
    TagMoved,
)
from .human_units import format_bytes
from .progress_tally import (
    LABELS,
    Clock,
    RendererBase,
    Tally,
    in_flight_line,
    pulling_line,
    resume_line,
    retry_line,
)
from .pull_results import PullResult
from .safe_text import escape

PLAIN_INTERVAL_SECONDS = 10.0
"""How often plain mode prints a line per layer still downloading."""


class SilentProgress(RendererBase):
    """No progress at all (``--quiet``)."""

    def __call__(self, event: ProgressEvent) -> None:
        """Ignore the event."""

    def finished(self, results: Sequence[PullResult]) -> None:
        """Print nothing."""


class PlainProgress(RendererBase):
    """Lines on ``stream`` (stderr) for logs and pipes; see the module docstring.

    The periodic lines come from a thread started by ``__enter__`` and stopped by
    ``__exit__``; a lock keeps its lines and the events' lines whole and in order.
    """

    def __init__(
        self,
        stream: IO[str] | None = None,
        clock: Clock = time.monotonic,
        interval: float = PLAIN_INTERVAL_SECONDS,
    ) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.interval = interval
        self.tally = Tally(clock)
        self._announced: set[tuple[Digest, LayerPhase]] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None

    def __enter__(self) -> Self:
        self._stop.clear()
        self._ticker = threading.Thread(
            target=self._tick, name="dockerdrag-plain-progress", daemon=True
        )
        self._ticker.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join()
            self._ticker = None

    def _tick(self) -> None:
        while not self._stop.wait(self.interval):
            with self._lock:
                for digest, layer in list(self.tally.layers.items()):
                    if layer.phase is LayerPhase.DOWNLOADING:
                        self._print(in_flight_line(digest, layer))

    def _print(self, text: str) -> None:
        print(escape(text), file=self.stream, flush=True)  # text may carry registry strings

    def __call__(self, event: ProgressEvent) -> None:
        """Print the event if it is one a log should show."""
        with self._lock:
            self.tally.update(event)
            if isinstance(event, PullStarted):
                self._print(pulling_line(event))
            elif isinstance(event, ArchiveWriting):
                self._print(f"Writing {event.output}")
            elif isinstance(event, TagMoved):
                pass  # the dockerdrag logger's warning says it, shown even with --quiet
            elif isinstance(event, LayerProgress):
                if self._first(event, LayerPhase.RESUMING):
                    self._print(resume_line(event))
                elif self._first(event, LayerPhase.COMPLETE, LayerPhase.EXISTS):
                    label = LABELS[event.phase]
                    self._print(f"{event.digest.short}: {label} ({format_bytes(event.total)})")
            else:
                self._print(retry_line(event))

    def _first(self, event: LayerProgress, *phases: LayerPhase) -> bool:
        """Whether ``event`` is in one of ``phases`` and its layer's was not printed yet."""
        if event.phase not in phases:
            return False
        key = (event.digest, event.phase)
        if key in self._announced:
            return False
        self._announced.add(key)
        return True

    def finished(self, results: Sequence[PullResult]) -> None:
        """Print the totals and each image ID."""
        with self._lock:
            self._print(self.tally.summary())
            for result in results:
                self._print(f"{result.reference}: image ID {result.image_id}")


__all__ = ["PLAIN_INTERVAL_SECONDS", "PlainProgress", "SilentProgress"]
