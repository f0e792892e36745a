"""Renderers of pull progress for the command line: terminal, plain lines, JSON lines.

* :class:`TerminalProgress`: a Docker-style live display drawn with ``rich`` on
  stderr, one line per layer (``Waiting``, ``Downloading`` with a bar, bytes and
  rate, ``Verifying``, ``Pull complete``, ``Already exists``) and a total line with
  bytes, rate and ETA, redrawn in place.
* :class:`PlainProgress`: one line per finished layer on stderr, for logs and pipes.
* :class:`JsonProgress`: one JSON object per line on stdout, for programs
  (``start``, ``layer``, ``writing``, ``done``, ``error``); ``downloading``
  updates are sent at most :data:`JSON_UPDATES_PER_SECOND` times a second per layer.

Each renderer is a progress callback and a context manager; :meth:`finished`
reports the results. The JSON shapes are built by the ``*_json`` functions here.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import IO, TYPE_CHECKING, Any, Protocol, Self

from .digest import Digest
from .errors import PlatformNotFoundError
from .events import ArchiveWriting, LayerPhase, LayerProgress, ProgressEvent, PullStarted
from .manifest import Descriptor
from .pull import ImageInspection, PullResult

if TYPE_CHECKING:
    # rich costs ~30 ms and a few MB to import: only the live display loads it.
    from rich.console import Console
    from rich.progress import ProgressColumn, Task, TaskID

JSON_UPDATES_PER_SECOND = 5
LABELS = {
    LayerPhase.WAITING: "Waiting",
    LayerPhase.DOWNLOADING: "Downloading",
    LayerPhase.VERIFYING: "Verifying",
    LayerPhase.COMPLETE: "Pull complete",
    LayerPhase.EXISTS: "Already exists",
}
"""What each layer phase reads as, in Docker's words."""

Clock = Callable[[], float]


class Renderer(Protocol):
    """What the command line needs from a progress renderer."""

    def __call__(self, event: ProgressEvent) -> None: ...

    def __enter__(self) -> Self: ...

    def __exit__(self, *exc_info: object) -> None: ...

    def finished(self, results: Sequence[PullResult]) -> None: ...


# --------------------------------------------------------------------------- tally


@dataclass
class Tally:
    """Bytes and layers of a pull so far; cached layers are not counted as downloaded."""

    clock: Clock = time.monotonic
    sizes: dict[Digest, int] = field(default_factory=dict)
    done: dict[Digest, int] = field(default_factory=dict)
    phases: dict[Digest, LayerPhase] = field(default_factory=dict)
    started: float = 0.0

    def __post_init__(self) -> None:
        self.started = self.clock()

    def update(self, event: ProgressEvent) -> None:
        """Account for one event."""
        if isinstance(event, PullStarted):
            for digest, size in event.layers:
                if digest not in self.sizes:
                    self.sizes[digest] = size
                    self.done[digest] = 0
                    self.phases[digest] = LayerPhase.WAITING
        elif isinstance(event, LayerProgress):
            self.sizes.setdefault(event.digest, event.total)
            self.phases[event.digest] = event.phase
            self.done[event.digest] = 0 if event.phase is LayerPhase.EXISTS else event.done

    @property
    def total_bytes(self) -> int:
        """Bytes to download: every layer not already in the cache."""
        return sum(
            size for d, size in self.sizes.items() if self.phases.get(d) is not LayerPhase.EXISTS
        )

    @property
    def downloaded_bytes(self) -> int:
        """Bytes downloaded (and verified, once complete) so far."""
        return sum(self.done.values())

    @property
    def elapsed(self) -> float:
        """Seconds since the tally started."""
        return max(0.0, self.clock() - self.started)

    def count(self, phase: LayerPhase) -> int:
        """How many layers are in ``phase``."""
        return sum(1 for p in self.phases.values() if p is phase)

    def summary(self) -> str:
        """``Downloaded 3 layers (1234567 bytes) in 0.4s, 1 already existed``."""
        fetched = self.count(LayerPhase.COMPLETE)
        text = (
            f"Downloaded {fetched} layer{'s' if fetched != 1 else ''} "
            f"({self.downloaded_bytes} bytes) in {self.elapsed:.1f}s"
        )
        cached = self.count(LayerPhase.EXISTS)
        return text + (f", {cached} already existed" if cached else "")


# --------------------------------------------------------------------------- JSON shapes


def result_json(result: PullResult) -> dict[str, Any]:
    """A pull result as a JSON object."""
    return {
        "output": str(result.output),
        "reference": result.reference,
        "manifest_digest": str(result.manifest_digest),
        "index_digest": str(result.index_digest) if result.index_digest else None,
        "image_id": result.image_id,
        "platform": str(result.platform),
        "repo_tags": list(result.repo_tags),
        "format": result.format,
        "layers": [
            {
                "digest": str(layer.digest),
                "diff_id": str(layer.diff_id),
                "size": layer.size,
                "media_type": layer.media_type,
            }
            for layer in result.layers
        ],
        "size": sum(layer.size for layer in result.layers),
    }


def event_json(event: ProgressEvent) -> dict[str, Any]:
    """A progress event as a JSON object (``event`` names its kind)."""
    if isinstance(event, PullStarted):
        return {
            "event": "start",
            "reference": event.reference,
            "manifest_digest": str(event.manifest_digest),
            "layers": [{"digest": str(d), "size": size} for d, size in event.layers],
        }
    if isinstance(event, LayerProgress):
        return {
            "event": "layer",
            "digest": str(event.digest),
            "status": str(event.phase),
            "done": event.done,
            "total": event.total,
        }
    return {"event": "writing", "output": event.output}


def descriptor_json(entry: Descriptor) -> dict[str, Any]:
    """An index entry as a JSON object."""
    return {
        "platform": str(entry.platform) if entry.platform else None,
        "digest": str(entry.digest),
        "media_type": entry.media_type,
        "size": entry.size,
    }


def error_json(error: BaseException, exit_code: int) -> dict[str, Any]:
    """An error as a JSON object: its type, message and the exit code."""
    if isinstance(error, KeyboardInterrupt):
        kind, message = "Interrupted", "interrupted; downloaded blobs are kept in the cache"
    else:
        kind, message = type(error).__name__, str(error)
    obj: dict[str, Any] = {
        "event": "error",
        "type": kind,
        "message": message,
        "exit_code": exit_code,
    }
    if isinstance(error, PlatformNotFoundError):
        offered = [e for e in error.available if isinstance(e, Descriptor)]
        obj["available"] = [descriptor_json(e) for e in offered]
    return obj


def inspection_json(found: ImageInspection) -> dict[str, Any]:
    """What ``dockerdrag inspect --json`` prints."""
    obj: dict[str, Any] = {
        "reference": found.reference,
        "digest": str(found.digest),
        "media_type": found.media_type,
        "platforms": [descriptor_json(entry) for entry in found.platforms],
        "manifest": None,
        "config": None,
        "layers": [],
        "size": found.size,
    }
    if found.manifest is not None:
        obj["manifest"] = {
            "digest": str(found.manifest.digest),
            "media_type": found.manifest.media_type,
            "size": found.manifest.size,
        }
    if found.config is not None:
        config = found.config
        obj["config"] = {
            "digest": str(config.digest),
            "platform": str(config.platform),
            "created": config.created,
            "entrypoint": list(config.entrypoint) if config.entrypoint is not None else None,
            "cmd": list(config.cmd) if config.cmd is not None else None,
            "env": list(config.env),
            "labels": dict(config.labels),
            "working_dir": config.working_dir,
            "user": config.user,
        }
    obj["layers"] = [
        {
            "digest": str(layer.digest),
            "diff_id": str(layer.diff_id),
            "size": layer.size,
            "media_type": layer.media_type,
        }
        for layer in found.layers
    ]
    return obj


def dump_json(obj: dict[str, Any], stream: IO[str]) -> None:
    """Write one JSON object as one line and flush it."""
    stream.write(json.dumps(obj, separators=(",", ":")) + "\n")
    stream.flush()


# --------------------------------------------------------------------------- renderers


class _Base:
    """Shared context-manager plumbing."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        return None


class SilentProgress(_Base):
    """No progress at all (``--quiet``)."""

    def __call__(self, event: ProgressEvent) -> None:
        """Ignore the event."""

    def finished(self, results: Sequence[PullResult]) -> None:
        """Print nothing."""


class PlainProgress(_Base):
    """One line per image and per finished layer on ``stream`` (stderr), for logs and pipes."""

    def __init__(self, stream: IO[str] | None = None, clock: Clock = time.monotonic) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.tally = Tally(clock)
        self._announced: set[tuple[Digest, LayerPhase]] = set()

    def _print(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def __call__(self, event: ProgressEvent) -> None:
        """Print the event if it is one a log should show."""
        self.tally.update(event)
        if isinstance(event, PullStarted):
            self._print(f"Pulling {event.reference} ({event.manifest_digest})")
        elif isinstance(event, ArchiveWriting):
            self._print(f"Writing {event.output}")
        elif self._first_finish(event):
            label = LABELS[event.phase]
            self._print(f"{event.digest.short}: {label} ({event.total} bytes)")

    def _first_finish(self, event: LayerProgress) -> bool:
        """Whether ``event`` finishes its layer and was not printed yet."""
        if event.phase not in (LayerPhase.COMPLETE, LayerPhase.EXISTS):
            return False
        key = (event.digest, event.phase)
        if key in self._announced:
            return False
        self._announced.add(key)
        return True

    def finished(self, results: Sequence[PullResult]) -> None:
        """Print the totals and each image ID."""
        self._print(self.tally.summary())
        for result in results:
            self._print(f"{result.reference}: image ID {result.image_id}")


class JsonProgress(_Base):
    """One JSON object per line on ``stream`` (stdout); downloading updates rate-limited."""

    def __init__(
        self,
        stream: IO[str] | None = None,
        clock: Clock = time.monotonic,
        per_second: float = JSON_UPDATES_PER_SECOND,
    ) -> None:
        self.stream = stream if stream is not None else sys.stdout
        self.clock = clock
        self.interval = 1.0 / per_second
        self.tally = Tally(clock)
        self._last: dict[Digest, tuple[LayerPhase, float]] = {}

    def __call__(self, event: ProgressEvent) -> None:
        """Write the event, unless it is a too-early downloading update."""
        self.tally.update(event)
        if isinstance(event, LayerProgress) and not self._due(event):
            return
        dump_json(event_json(event), self.stream)

    def _due(self, event: LayerProgress) -> bool:
        now = self.clock()
        previous = self._last.get(event.digest)
        if (
            previous is not None
            and previous[0] is event.phase is LayerPhase.DOWNLOADING
            and now - previous[1] < self.interval
        ):
            return False
        self._last[event.digest] = (event.phase, now)
        return True

    def finished(self, results: Sequence[PullResult]) -> None:
        """Write the ``done`` event with every result."""
        dump_json(
            {
                "event": "done",
                "output": str(results[0].output) if results else None,
                "downloaded_bytes": self.tally.downloaded_bytes,
                "elapsed": round(self.tally.elapsed, 3),
                "results": [result_json(r) for r in results],
            },
            self.stream,
        )


def _transferring(task: Task) -> bool:
    """Layer rows show bar, bytes and rate while downloading; the total row always."""
    return bool(task.fields.get("active") or task.fields.get("is_total"))


def _total_running(task: Task) -> bool:
    """The ETA shows on the total row until the downloads are over."""
    return bool(task.fields.get("active") and task.fields.get("is_total"))


@cache
def _shown_column() -> Callable[[ProgressColumn, Callable[[Task], bool]], ProgressColumn]:
    """The column class that shows ``inner`` only on the rows where ``when`` holds
    (made on first use, so that rich is imported only for the live display)."""
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

    return _Shown


class TerminalProgress(_Base):
    """The Docker-style live display (rich) on stderr; only for a terminal."""

    def __init__(self, console: Console | None = None, clock: Clock = time.monotonic) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        shown = _shown_column()
        self.console = console if console is not None else Console(stderr=True)
        self.tally = Tally(clock)
        self.progress = Progress(
            TextColumn("{task.description}"),
            TextColumn("{task.fields[label]}"),
            shown(BarColumn(bar_width=30), _transferring),
            shown(DownloadColumn(), _transferring),
            shown(TransferSpeedColumn(), _transferring),
            shown(TimeRemainingColumn(), _total_running),
            console=self.console,
            refresh_per_second=8,
            speed_estimate_period=10.0,
        )
        self._rows: dict[Digest, TaskID] = {}
        self._total: TaskID | None = None

    def __enter__(self) -> Self:
        self.progress.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.progress.stop()

    def __call__(self, event: ProgressEvent) -> None:
        """Update the rows the event concerns; the display redraws itself."""
        self.tally.update(event)
        if isinstance(event, PullStarted):
            self.console.print(
                f"Pulling {event.reference} ({event.manifest_digest})", highlight=False
            )
            for digest, size in event.layers:
                self._add_row(digest, size)
        elif isinstance(event, LayerProgress):
            self._update_row(event)
        else:
            self._update_total("Writing archive", active=False)
            return
        self._update_total(self._total_label(), active=True)

    def _add_row(self, digest: Digest, size: int) -> None:
        if digest in self._rows:
            return
        if self._total is not None:
            self.progress.remove_task(self._total)
        self._rows[digest] = self.progress.add_task(
            f"{digest.short}:", total=size, label=LABELS[LayerPhase.WAITING], active=False
        )
        self._total = self.progress.add_task(
            "Total:", total=0, label="", active=True, is_total=True
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
        return f"{finished}/{len(self.tally.sizes)} layers"

    def _update_total(self, label: str, *, active: bool) -> None:
        if self._total is None:
            return
        self.progress.update(
            self._total,
            total=self.tally.total_bytes,
            completed=self.tally.downloaded_bytes,
            label=label,
            active=active,
        )

    def finished(self, results: Sequence[PullResult]) -> None:
        """Close the display, then print the totals and each image ID."""
        self._update_total("Done", active=False)
        self.progress.stop()
        self.console.print(self.tally.summary(), highlight=False)
        for result in results:
            self.console.print(f"{result.reference}: image ID {result.image_id}", highlight=False)


def choose_renderer(mode: str, *, stream_is_terminal: bool) -> Renderer:
    """The renderer for ``mode`` (``auto``, ``tty``, ``plain``, ``json``, ``quiet``).

    ``auto`` is the live display when stderr is a terminal, plain lines otherwise.
    """
    if mode == "json":
        return JsonProgress()
    if mode == "quiet":
        return SilentProgress()
    if mode == "tty":
        from rich.console import Console

        return TerminalProgress(Console(stderr=True, force_terminal=True))
    if mode == "auto" and stream_is_terminal:
        return TerminalProgress()
    return PlainProgress()


__all__ = [
    "JSON_UPDATES_PER_SECOND",
    "LABELS",
    "JsonProgress",
    "PlainProgress",
    "Renderer",
    "SilentProgress",
    "Tally",
    "TerminalProgress",
    "choose_renderer",
    "dump_json",
    "error_json",
    "event_json",
    "inspection_json",
    "result_json",
]
