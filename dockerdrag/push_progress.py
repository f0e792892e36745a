"""Renderers of push progress for the command line: plain lines, JSON lines, silence.

* :class:`PlainPushProgress`: on stderr, a line per image (``Pushing SOURCE -> TARGET``),
  per finished blob (``Pushed``, ``Layer already exists``, ``Mounted``) and per manifest
  (saying when the manifest was written by the push rather than taken from the archive), and
  per request about to be retried;
* :class:`JsonPushProgress`: one JSON object per line on stdout (``start``, ``layer``,
  ``manifest``, ``retry``, then ``done``); ``uploading`` updates at most
  :data:`~dockerdrag.progress_json.JSON_UPDATES_PER_SECOND` times a second per blob.

Each renderer is a push progress callback; :meth:`finished` reports the result. Names
from the archive are escaped before a terminal sees them.
"""

from __future__ import annotations

import sys
import time
from typing import IO, TYPE_CHECKING, Any, Protocol

from .digest import Digest
from .events import (
    LayerPhase,
    LayerProgress,
    ManifestPushed,
    PushEvent,
    PushStarted,
    RequestRetry,
)
from .progress_json import JSON_UPDATES_PER_SECOND, dump_json, event_json
from .progress_tally import retry_line
from .safe_text import escape

if TYPE_CHECKING:
    from .push import PushResult

PUSH_LABELS = {
    LayerPhase.COMPLETE: "Pushed",
    LayerPhase.EXISTS: "Layer already exists",
    LayerPhase.MOUNTED: "Mounted from another repository",
}
"""What a finished blob reads as, in ``docker push``'s words."""

REWRITTEN_NOTE = (
    "manifest written by dockerdrag: the archive's layers were uncompressed (docker format), "
    "so they were gzipped again and the digest differs from the source registry's"
)


class PushRenderer(Protocol):
    """What ``dockerdrag push`` needs from a progress renderer."""

    def __call__(self, event: PushEvent) -> None: ...

    def finished(self, result: PushResult) -> None: ...


class SilentPushProgress:
    """``--quiet``: nothing but the pushed references (printed by the command)."""

    def __call__(self, event: PushEvent) -> None:
        return None

    def finished(self, result: PushResult) -> None:
        return None


class PlainPushProgress:
    """One line per image, finished blob and manifest, on stderr."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream = stream or sys.stderr
        self.started = time.monotonic()
        self._reported: set[tuple[str, Digest]] = set()
        self._target = ""

    def _print(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def __call__(self, event: PushEvent) -> None:
        if isinstance(event, PushStarted):
            self._target = event.reference
            self._print(f"Pushing {escape(event.source)} -> {escape(event.reference)}")
        elif isinstance(event, ManifestPushed):
            note = f" ({REWRITTEN_NOTE})" if event.rewritten else ""
            self._print(f"{escape(event.reference)}: digest {event.digest}{note}")
        elif isinstance(event, RequestRetry):
            self._print(escape(retry_line(event)))
        elif event.phase in PUSH_LABELS and (self._target, event.digest) not in self._reported:
            self._reported.add((self._target, event.digest))
            size = f" ({event.total} bytes)" if event.phase is LayerPhase.COMPLETE else ""
            self._print(f"{event.digest.short}: {PUSH_LABELS[event.phase]}{size}")

    def finished(self, result: PushResult) -> None:
        elapsed = time.monotonic() - self.started
        self._print(
            f"Pushed {len(result.images)} image(s) in {elapsed:.1f}s: {result.uploaded} blobs "
            f"uploaded ({result.uploaded_bytes} bytes), {result.existing} already existed, "
            f"{result.mounted} mounted"
        )


def push_event_json(event: PushEvent) -> dict[str, Any]:
    """A push event as a JSON object (``event`` names its kind)."""
    if isinstance(event, PushStarted):
        return {
            "event": "start",
            "reference": event.reference,
            "source": event.source,
            "layers": [{"digest": str(d), "size": size} for d, size in event.layers],
        }
    if isinstance(event, ManifestPushed):
        return {
            "event": "manifest",
            "reference": event.reference,
            "digest": str(event.digest),
            "rewritten": event.rewritten,
        }
    return event_json(event)  # a layer's progress or a retry, written as the pull writes them


def push_result_json(result: PushResult, elapsed: float) -> dict[str, Any]:
    """The ``done`` object of ``dockerdrag push --json``."""
    return {
        "event": "done",
        "archive": str(result.archive),
        "images": [
            {
                "reference": image.reference,
                "source": image.source,
                "digest": str(image.digest),
                "rewritten": image.rewritten,
            }
            for image in result.images
        ],
        "uploaded": result.uploaded,
        "existing": result.existing,
        "mounted": result.mounted,
        "uploaded_bytes": result.uploaded_bytes,
        "elapsed": round(elapsed, 3),
    }


class JsonPushProgress:
    """One JSON object per line on stdout; ``uploading`` updates throttled per blob."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream = stream or sys.stdout
        self.started = time.monotonic()
        self._last: dict[Digest, float] = {}

    def __call__(self, event: PushEvent) -> None:
        if isinstance(event, LayerProgress) and event.phase is LayerPhase.UPLOADING:
            now = time.monotonic()
            last = self._last.get(event.digest)
            if last is not None and now - last < 1 / JSON_UPDATES_PER_SECOND:
                return
            self._last[event.digest] = now
        dump_json(push_event_json(event), self.stream)

    def finished(self, result: PushResult) -> None:
        dump_json(push_result_json(result, time.monotonic() - self.started), self.stream)


__all__ = [
    "PUSH_LABELS",
    "JsonPushProgress",
    "PlainPushProgress",
    "PushRenderer",
    "SilentPushProgress",
    "push_event_json",
    "push_result_json",
]
