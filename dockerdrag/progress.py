"""Progress for the command line: the renderer for the mode asked for.

The renderers live in modules of their own: :mod:`progress_live` (the live
display on a terminal), :mod:`progress_plain` (plain lines for logs and pipes, and
``--quiet``), :mod:`progress_json` (JSON lines for programs, and the JSON shapes
of results, errors and inspections); :mod:`progress_tally` holds what they share.
Each renderer is a progress callback and a context manager; :meth:`finished`
reports the results.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, Self

from .events import ProgressEvent
from .progress_json import (
    JsonProgress,
    descriptor_json,
    dump_json,
    error_json,
    inspection_json,
)
from .progress_plain import PlainProgress, SilentProgress
from .pull_results import PullResult


class Renderer(Protocol):
    """What the command line needs from a progress renderer."""

    def __call__(self, event: ProgressEvent) -> None: ...

    def __enter__(self) -> Self: ...

    def __exit__(self, *exc_info: object) -> None: ...

    def finished(self, results: Sequence[PullResult]) -> None: ...


def choose_renderer(mode: str, *, stream_is_terminal: bool) -> Renderer:
    """The renderer for ``mode`` (``auto``, ``tty``, ``plain``, ``json``, ``quiet``).

    ``auto`` is the live display when stderr is a terminal, plain lines otherwise.
    """
    if mode == "json":
        return JsonProgress()
    if mode == "quiet":
        return SilentProgress()
    if mode == "tty" or (mode == "auto" and stream_is_terminal):
        from rich.console import Console

        from .progress_live import TerminalProgress

        forced = Console(stderr=True, force_terminal=True) if mode == "tty" else None
        return TerminalProgress(forced)
    return PlainProgress()


__all__ = [
    "Renderer",
    "choose_renderer",
    "descriptor_json",
    "dump_json",
    "error_json",
    "inspection_json",
]
