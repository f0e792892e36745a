"""Typed progress events, delivered to a callback or an async iterator as a pull proceeds.

A pull emits, in order: one :class:`PullStarted` per image (its layers and their
sizes), then :class:`LayerProgress` events per distinct layer (``waiting`` ->
[``resuming``] -> ``downloading`` ... -> ``verifying`` -> ``complete``, or
``exists`` when the blob is already in the cache), then one :class:`ArchiveWriting`.
Downloading events arrive for every piece of a body read; renderers throttle them.
A :class:`RequestRetry` may come at any time: a request failed and is sent again.
A pull pinned by a lock file emits a :class:`TagMoved` for each line whose tag
names other content now, before anything is fetched.

What a progress bar needs, per layer: ``total`` (its size) and ``done`` (bytes
received so far, never going down: see :class:`LayerProgress`); for the whole pull,
the sum over the layers of :class:`PullStarted` that did not end ``exists``. Bytes
fetched by this run are ``done - resumed``; a rate is the growth of that sum over
a recent window of time (the resumed bytes were not fetched now and are no rate).

:class:`EventStream` turns the callback into an async iterator (what
``Puller.pull_events`` hands out); it never holds more than one pending
``downloading`` event per layer, so a slow consumer costs no memory.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Generic, TypeVar

import anyio

from .digest import Digest

__all__ = [
    "ArchiveWriting",
    "EventStream",
    "LayerPhase",
    "LayerProgress",
    "ManifestPushed",
    "ProgressCallback",
    "ProgressEvent",
    "PullStarted",
    "PushEvent",
    "PushProgressCallback",
    "PushStarted",
    "RequestRetry",
    "TagMoved",
]


class LayerPhase(StrEnum):
    """Where one blob is in its life, as ``docker pull`` (and ``docker push``) shows it.

    A push reports ``waiting`` -> ``uploading`` ... -> ``complete``, or ``exists`` (the
    registry has the blob), or ``mounted`` (taken from another repository there).
    """

    WAITING = "waiting"
    RESUMING = "resuming"
    """Once, before the first ``downloading``: ``resumed`` bytes of an earlier run are kept."""
    DOWNLOADING = "downloading"
    VERIFYING = "verifying"
    COMPLETE = "complete"
    EXISTS = "exists"
    UPLOADING = "uploading"  # a push: sending the blob to the registry
    MOUNTED = "mounted"  # a push: the registry took it from another of its repositories


@dataclass(frozen=True)
class LayerProgress:
    """One blob's progress: ``done`` of ``total`` bytes.

    ``done`` counts the bytes of the blob received so far, summed over all the
    ranged chunks a big blob is fetched in; it never goes down, except back to 0
    when the blob is fetched again from the start (it failed verification, or the
    registry stopped honouring ranges), and then ``resumed`` is 0 too.
    ``resumed`` is the part of ``done`` an earlier run left on disk: a ``resuming``
    event announces it, and ``done - resumed`` is what this run fetched.
    At ``complete`` and ``exists`` the whole blob is verified in the cache.
    """

    digest: Digest
    phase: LayerPhase
    done: int
    total: int
    resumed: int = 0


@dataclass(frozen=True)
class PullStarted:
    """The image was resolved and its blobs are about to be fetched."""

    reference: str
    manifest_digest: Digest
    layers: tuple[tuple[Digest, int], ...]


@dataclass(frozen=True)
class ArchiveWriting:
    """All blobs are verified; the archive is being written."""

    output: str


@dataclass(frozen=True)
class RequestRetry:
    """A request failed for a reason that may pass; it is sent again after ``delay`` s.

    ``host`` and ``port`` are where the request went, ``what`` what it asked for,
    ``cause`` the failure in plain words; this is retry ``retry`` of at most ``retries``.
    ``status`` is the HTTP status that asked for the retry (429, 503, ...), or ``None``
    when no answer came (the connection failed or broke).
    """

    host: str
    port: int
    what: str
    cause: str
    retry: int
    retries: int
    delay: float
    status: int | None = None


@dataclass(frozen=True)
class PushStarted:
    """An image of an archive is about to be pushed to ``reference``."""

    reference: str
    source: str  # the image's name in the archive (or its digest)
    layers: tuple[tuple[Digest, int], ...]  # every blob it needs: config and layers


@dataclass(frozen=True)
class ManifestPushed:
    """The registry stored the image's manifest (or index) under ``reference``.

    ``rewritten`` is True when the manifest was written by the push (a legacy docker
    archive holds none) rather than pushed as the archive's own bytes.
    """

    reference: str
    digest: Digest
    rewritten: bool


@dataclass(frozen=True)
class TagMoved:
    """A line pinned by a lock file names a tag that moved since; the locked digest is pulled.

    ``reference`` is the line's reference as written, ``locked`` the digest the lock
    file pins (what the pull fetches), ``current`` the digest the tag names now.
    """

    reference: str
    locked: Digest
    current: Digest


ProgressEvent = LayerProgress | PullStarted | ArchiveWriting | RequestRetry | TagMoved
PushEvent = LayerProgress | PushStarted | ManifestPushed | RequestRetry
PushProgressCallback = Callable[[PushEvent], None]
ProgressCallback = Callable[[ProgressEvent], None]

T = TypeVar("T")


class EventStream(Generic[T]):
    """An async iterator fed by a synchronous callback (:meth:`push`) in the same event loop.

    The producer calls :meth:`push` for each event and :meth:`finish` once, with the
    error that ended it or ``None``. The consumer iterates; after the queued events
    the iteration ends, or raises that error. Consecutive ``downloading`` events of
    one layer that were not consumed yet are merged into the newest one.
    """

    def __init__(self) -> None:
        self._queue: deque[list[T]] = deque()
        self._pending: dict[Digest, list[T]] = {}
        self._ready = anyio.Event()
        self._finished = False
        self._error: BaseException | None = None

    def push(self, event: T) -> None:
        """Queue ``event`` (never blocks; usable as a progress callback)."""
        if self._finished:
            return
        if isinstance(event, LayerProgress):
            box = self._pending.pop(event.digest, None)
            if box is not None and event.phase is LayerPhase.DOWNLOADING:
                box[0] = event
                self._pending[event.digest] = box
                return
        box = [event]
        if isinstance(event, LayerProgress) and event.phase is LayerPhase.DOWNLOADING:
            self._pending[event.digest] = box
        self._queue.append(box)
        self._ready.set()

    def finish(self, error: BaseException | None = None) -> None:
        """No more events; the iteration raises ``error`` after the queued events."""
        if not self._finished:
            self._finished = True
            self._error = error
            self._ready.set()

    def __aiter__(self) -> EventStream[T]:
        return self

    async def __anext__(self) -> T:
        while not self._queue:
            if self._finished:
                error, self._error = self._error, None
                if error is not None:
                    raise error
                raise StopAsyncIteration
            self._ready = anyio.Event()
            await self._ready.wait()
        box = self._queue.popleft()
        event = box[0]
        if isinstance(event, LayerProgress) and self._pending.get(event.digest) is box:
            del self._pending[event.digest]
        return event
