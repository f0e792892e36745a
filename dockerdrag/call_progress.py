"""Who hears a puller's progress: the client-wide callback, and each running call's own.

Blob events (a layer's progress, a request retried) come from the fetcher and the
transport that all calls of a :class:`~dockerdrag.pull.Puller` share: they go to the
client-wide callback and to every running call, each of which passes on only the
layer events of its own layers. A call's own events (``PullStarted``,
``ArchiveWriting``, ``TagMoved``) go to the client-wide callback and to that call alone.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from .digest import Digest
from .events import LayerProgress, ProgressCallback, ProgressEvent, PullStarted


class _CallProgress:
    """One call's progress callback: its own events, and layer events of its own layers."""

    def __init__(self, callback: ProgressCallback | None) -> None:
        self.callback = callback
        self.digests: set[Digest] = set()

    def __call__(self, event: ProgressEvent) -> None:
        if self.callback is None:
            return
        if isinstance(event, PullStarted):
            self.digests.update(digest for digest, _ in event.layers)
        elif isinstance(event, LayerProgress) and event.digest not in self.digests:
            return
        self.callback(event)


class ProgressRouter:
    """The client-wide progress callback (``progress``) and the calls running now."""

    def __init__(self, progress: ProgressCallback | None) -> None:
        self.progress = progress
        self._calls: list[_CallProgress] = []

    def emit(self, event: ProgressEvent) -> None:
        """Deliver a blob event to the client-wide callback and every running call."""
        if self.progress is not None:
            self.progress(event)
        for call in list(self._calls):
            call(event)

    @contextlib.contextmanager
    def call(self, callback: ProgressCallback | None) -> Iterator[ProgressCallback]:
        """Hear blob events for one call (``callback``) while the block runs.

        Yields the function that delivers the call's own events: to the client-wide
        callback and to ``callback``.
        """
        listener = _CallProgress(callback)

        def emit_own(event: ProgressEvent) -> None:
            if self.progress is not None:
                self.progress(event)
            listener(event)

        self._calls.append(listener)
        try:
            yield emit_own
        finally:
            self._calls.remove(listener)


__all__ = ["ProgressRouter"]
