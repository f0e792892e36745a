"""A pull run in a task while its events are handed out as an async iterator.

:meth:`~dockerdrag.pull.Puller.pull_events` is built on :func:`pull_event_stream`.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable
from typing import Protocol

import anyio

from .errors import leaf_error
from .events import EventStream, ProgressCallback
from .pull_results import PullEvent, PullFinished, PullResult


class PullRun(Protocol):
    """A pull, given the callback that receives its events."""

    def __call__(self, *, progress: ProgressCallback) -> Awaitable[PullResult]: ...


@contextlib.asynccontextmanager
async def pull_event_stream(pull: PullRun) -> AsyncIterator[EventStream[PullEvent]]:
    """Run ``pull`` in a task; the block iterates its events.

    The iteration ends with :class:`PullFinished` (holding the result) or raises the
    pull's error. Leaving the block early cancels the pull.
    """
    stream: EventStream[PullEvent] = EventStream()

    async def run() -> None:
        try:
            result = await pull(progress=stream.push)
        except Exception as exc:
            stream.finish(leaf_error(exc))
            return
        stream.push(PullFinished((result,)))
        stream.finish()

    try:
        async with anyio.create_task_group() as group:
            group.start_soon(run)
            try:
                yield stream
            finally:
                group.cancel_scope.cancel()
    except BaseExceptionGroup as group_error:
        # Only the block inside ``async with`` can raise here: hand its error back as is.
        if len(group_error.exceptions) == 1:
            raise group_error.exceptions[0] from None
        raise


__all__ = ["PullRun", "pull_event_stream"]
