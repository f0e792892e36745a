"""The Docker-style live display on a terminal (stderr), drawn with ``rich``.

One row per layer (``Waiting``, ``Resuming``, ``Downloading`` with a bar, bytes and
rate, ``Verifying``, ``Pull complete``, ``Already exists``) and a total row with
bytes, rate and time left, redrawn in place. Rates come from the :class:`Tally`'s
meters (bytes received in a recent window), read at every redraw, so a stalled
link shows its rate falling. A resumed layer and a retried request also get a
line above the display, which stays when the display closes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from functools import cache
from typing import TYPE_CHECKING, Any, Self

from .digest import Digest
from .events import (
    ArchiveWriting,
    LayerPhase,
    LayerProgress,
    ProgressEvent,
    PullStarted,
    TagMoved,
)
from .human_units import format_rate
from .progress_tally import (
    LABELS,
    Clock,
    RateMeter,
    RendererBase,
    Tally,
    pulling_line,
    resume_line,
    retry_line,
)
from .pull_results import PullResult
from .safe_text import escape

if TYPE_CHECKING:
    # rich takes long to import (benchmarks/README.md): only the live display loads it.
    from rich.console import Console
    from rich.progress import ProgressColumn, Task, TaskID


def _transferring(task: Task) -> bool:
    """Layer rows show bar, bytes and rate while downloading; the total row always."""
    return bool(task.fields.get("active") or task.fields.get("is_total"))


@cache
def _columns() -> tuple[
    Callable[[ProgressColumn, Callable[[Task], bool]], ProgressColumn],
    Callable[[], ProgressColumn],
    Callable[[], ProgressColumn],
]:
    """The column classes of the display: one shown only where a test holds, the rate,
    and the time left (made on first use, so that rich is imported only for the display)."""
    from rich.progress import ProgressColumn
    from rich.text import Text

    class _Shown(ProgressColumn):
        """Show ``inner`` on the rows where ``when`` holds; nothing elsewhere."""

        def __init__(self, inner: ProgressColumn, when: Callable[[Task], bool]) -> None:
            super().__init__()
            self.inner = inner
            self.when = when

        def render(self, task: Task) -> Any:
            """The inner column's rendering, or nothing."""
            return self.inner.render(task) if self.when(task) else Text("")

    class _Rate(ProgressColumn):
        """The row's meter rate while it transfers; the total row's average once done."""

        def render(self, task: Task) -> Any:
            """``4.2 MB/s``, or nothing."""
            average = task.fields.get("average")
            if average is not None:
                return Text(format_rate(average), style="progress.data.speed")
            meter: RateMeter | None = task.fields.get("meter")
            if meter is None or not _transferring(task):
                return Text("")
            return Text(format_rate(meter.rate()), style="progress.data.speed")

    class _TimeLeft(ProgressColumn):
        """On the total row while downloading: bytes left over the current rate."""

        def render(self, task: Task) -> Any:
            """``0:00:06``, ``-:--:--`` without a rate yet, or nothing."""
            meter: RateMeter | None = task.fields.get("meter")
            if not (task.fields.get("is_total") and task.fields.get("active")) or meter is None:
                return Text("")
            rate = meter.rate()
            if rate <= 0 or task.total is None:
                return Text("-:--:--", style="progress.remaining")
            left = int(max(0.0, task.total - task.completed) / rate)
            return Text(
                f"{left // 3600:d}:{left % 3600 // 60:02d}:{left % 60:02d}",
                style="progress.remaining",
            )

    return _Shown, _Rate, _TimeLeft


class TerminalProgress(RendererBase):
    """The Docker-style live display (rich) on stderr; only for a terminal."""

    def __init__(self, console: Console | None = None, clock: Clock = time.monotonic) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn

        shown, rate, time_left = _columns()
        self.console = console if console is not None else Console(stderr=True)
        self.tally = Tally(clock)
        self.progress = Progress(
            TextColumn("{task.description}"),
            TextColumn("{task.fields[label]}"),
            shown(BarColumn(bar_width=30), _transferring),
            shown(DownloadColumn(), _transferring),
            rate(),
            time_left(),
            console=self.console,
            refresh_per_second=8,
        )
        self._rows: dict[Digest, TaskID] = {}
        self._total: TaskID | None = None

    def __enter__(self) -> Self:
        self.progress.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.progress.stop()

    def _print(self, text: str) -> None:
        # text may carry registry strings: escaped, and never read as rich markup
        self.console.print(escape(text), highlight=False, markup=False)

    def __call__(self, event: ProgressEvent) -> None:
        """Update the rows the event concerns; the display redraws itself."""
        self.tally.update(event)
        if isinstance(event, PullStarted):
            self._print(pulling_line(event))
            for digest, size in event.layers:
                self._add_row(digest, size)
        elif isinstance(event, LayerProgress):
            if event.phase is LayerPhase.RESUMING:
                self._print(resume_line(event))
            self._update_row(event)
        elif isinstance(event, ArchiveWriting):
            self._update_total("Writing archive", active=False)
            return
        elif isinstance(event, TagMoved):
            return  # the dockerdrag logger's warning says it, shown even with --quiet
        else:
            self._print(retry_line(event))
            return
        self._update_total(self._total_label(), active=True)

    def _add_row(self, digest: Digest, size: int) -> None:
        if digest in self._rows:
            return
        if self._total is not None:
            self.progress.remove_task(self._total)
        self._rows[digest] = self.progress.add_task(
            f"{digest.short}:",
            total=size,
            label=LABELS[LayerPhase.WAITING],
            active=False,
            meter=self.tally.layers[digest].meter,
        )
        self._total = self.progress.add_task(
            "Total:", total=0, label="", active=True, is_total=True, meter=self.tally.meter
        )

    def _update_row(self, event: LayerProgress) -> None:
        if event.digest not in self._rows:
            self._add_row(event.digest, event.total)
        self.progress.update(
            self._rows[event.digest],
            completed=event.done,
            label=LABELS[event.phase],
            active=event.phase is LayerPhase.DOWNLOADING,
        )

    def _total_label(self) -> str:
        finished = self.tally.count(LayerPhase.COMPLETE) + self.tally.count(LayerPhase.EXISTS)
        return f"{finished}/{len(self.tally.layers)} layers"

    def _update_total(self, label: str, *, active: bool, **fields: Any) -> None:
        if self._total is None:
            return
        self.progress.update(
            self._total,
            total=self.tally.total_bytes,
            completed=self.tally.done_bytes,
            label=label,
            active=active,
            **fields,
        )

    def finished(self, results: Sequence[PullResult]) -> None:
        """Close the display (the total row with the average rate), then print the totals
        and each image ID."""
        elapsed = self.tally.elapsed
        average = self.tally.received_bytes / elapsed if elapsed > 0 else 0.0
        self._update_total("Done", active=False, average=average)
        self.progress.stop()
        self._print(self.tally.summary())
        for result in results:
            self._print(f"{result.reference}: image ID {result.image_id}")


__all__ = ["TerminalProgress"]
