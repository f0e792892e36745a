"""JSON lines for programs (``--json``): the shapes of results, events, errors and inspections,
and :class:`JsonProgress`, the renderer that writes one JSON object per line on stdout.

Events: ``start`` (an image's layers), ``layer`` (a layer's ``status``, ``done``,
``total`` and ``resumed`` bytes, as :class:`~dockerdrag.events.LayerProgress`),
``retry`` (a request sent again: ``host``, ``port``, ``what``, ``cause``, ``retry`` of
``retries``, ``delay``), ``writing``, then ``done`` (``downloaded_bytes`` fetched by
this run, ``resumed_bytes`` kept from earlier runs, ``cached_layers``, ``elapsed``
seconds, the results) or ``error``. ``downloading`` updates are sent at most
:data:`JSON_UPDATES_PER_SECOND` times a second per layer.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from typing import IO, Any

from .digest import Digest
from .errors import PlatformNotFoundError
from .events import (
    LayerPhase,
    LayerProgress,
    ProgressEvent,
    PullStarted,
    RequestRetry,
    TagMoved,
)
from .manifest import Descriptor
from .progress_tally import Clock, RendererBase, Tally
from .pull_results import ImageInspection, LayerResult, PullResult

JSON_UPDATES_PER_SECOND = 5


def layer_json(layer: LayerResult) -> dict[str, Any]:
    """A layer of a result or an inspection as a JSON object."""
    return {
        "digest": str(layer.digest),
        "diff_id": str(layer.diff_id),
        "size": layer.size,
        "media_type": layer.media_type,
    }


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
        "layers": [layer_json(layer) for layer in result.layers],
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
            "resumed": event.resumed,
        }
    if isinstance(event, TagMoved):
        return {
            "event": "tag_moved",
            "reference": event.reference,
            "locked": str(event.locked),
            "current": str(event.current),
        }
    if isinstance(event, RequestRetry):
        return {
            "event": "retry",
            "host": event.host,
            "port": event.port,
            "what": event.what,
            "cause": event.cause,
            "retry": event.retry,
            "retries": event.retries,
            "delay": round(event.delay, 3),
            "status": event.status,
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


def error_json(error: BaseException, exit_code: int, message: str | None = None) -> dict[str, Any]:
    """An error as a JSON object: its type, message (``message``, else ``str(error)``) and
    the exit code."""
    if isinstance(error, KeyboardInterrupt):
        kind, message = "Interrupted", "interrupted; downloaded blobs are kept in the cache"
    else:
        kind, message = type(error).__name__, message if message is not None else str(error)
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
    obj["layers"] = [layer_json(layer) for layer in found.layers]
    return obj


def dump_json(obj: dict[str, Any], stream: IO[str]) -> None:
    """Write one JSON object as one line and flush it."""
    stream.write(json.dumps(obj, separators=(",", ":")) + "\n")
    stream.flush()


class JsonProgress(RendererBase):
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
                "downloaded_bytes": self.tally.received_bytes,
                "resumed_bytes": self.tally.resumed_bytes,
                "cached_layers": self.tally.count(LayerPhase.EXISTS),
                "elapsed": round(self.tally.elapsed, 3),
                "results": [result_json(r) for r in results],
            },
            self.stream,
        )


__all__ = [
    "JSON_UPDATES_PER_SECOND",
    "JsonProgress",
    "descriptor_json",
    "dump_json",
    "error_json",
    "event_json",
    "inspection_json",
    "layer_json",
    "result_json",
]
