"""The chunks of one blob being received, and the split that gives a straggler's rest away.

When no chunk of a blob is left to start and no other request of the pull waits for a
connection (:func:`~dockerdrag.connection_limit.spare_rank`), a connection that falls
idle takes the second half of the bytes still to come of the chunk that would take the
longest to finish at the rate its body has come so far (:meth:`OpenChunks.split`): that
chunk's cursor stops at the middle, the idle connection asks for the rest. So the last
chunks of a pull do not each crawl along on one connection while the others stand idle.
A chunk that would finish soon is left alone: the straggler's connection is closed at
the middle, and the bytes already in flight on it are lost, so over a fast link a split
costs more than it saves. So is, when a rate limit is given, one that comes faster than
that: its rest may take long (a whole blob asked for with one request), but the client,
not the link, holds it back. Only what was written counts in the blob's ranges, so a split
changes who fetches which bytes, not what is recorded for a resume.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from .blob_body import Cursor


@dataclass
class _Receiving:
    """A chunk whose body is being read: its cursor, and where and when the body began."""

    cursor: Cursor
    started_at: float
    started_pos: int


class OpenChunks:
    """The cursors of one blob's chunks whose bodies are being read right now.

    A chunk is split only while at least ``2 * min_piece`` bytes of it are still to
    come, so each half is worth its request (``TransferOptions.split_min_bytes``), and
    only if at its rate so far the rest would take at least ``min_seconds``
    (``TransferOptions.split_min_seconds``) and, with ``max_rate``, that rate is below
    ``max_rate`` bytes per second (a faster connection is held back by the client, not
    the link: a second one would not bring its bytes sooner). Its rate is judged once its
    body has been read for a quarter of ``min_seconds``. ``clock`` gives the time in
    seconds.
    """

    def __init__(
        self,
        min_piece: int,
        min_seconds: float,
        clock: Callable[[], float] = time.monotonic,
        *,
        max_rate: float | None = None,
    ) -> None:
        self._min_piece = max(1, min_piece)
        self._min_seconds = min_seconds
        self._max_rate = max_rate
        self._judge_after = min_seconds / 4
        self._clock = clock
        self._receiving: list[_Receiving] = []

    @contextlib.contextmanager
    def receiving(self, cursor: Cursor) -> Iterator[None]:
        """While the body of ``cursor``'s chunk is read, it may be split."""
        entry = _Receiving(cursor, self._clock(), cursor.pos)
        self._receiving.append(entry)
        try:
            yield
        finally:
            self._receiving.remove(entry)

    def split(self) -> Cursor | None:
        """Cut the chunk that would take the longest to finish in two; the cursor of the
        second half.

        The chunk's cursor now ends at the middle (its body is read up to there); the
        returned cursor covers the rest. None when no chunk is worth splitting now.
        """
        now = self._clock()
        victim: Cursor | None = None
        longest = 0.0
        for entry in self._receiving:
            cursor = entry.cursor
            elapsed = now - entry.started_at
            if not self._big_enough(cursor) or elapsed < self._judge_after:
                continue
            received = cursor.pos - entry.started_pos
            if self._max_rate is not None and received >= self._max_rate * elapsed:
                continue
            seconds_left = (
                math.inf if received <= 0 else (cursor.end - cursor.pos) * elapsed / received
            )
            if seconds_left >= self._min_seconds and (victim is None or seconds_left > longest):
                victim, longest = cursor, seconds_left
        if victim is None:
            return None
        middle = victim.pos + (victim.end - victim.pos) // 2
        rest = Cursor(middle, victim.end)
        victim.end = middle
        return rest

    def seconds_until_judged(self) -> float | None:
        """How long until a chunk big enough to split has come for long enough to judge its
        rate; None when every such chunk has been judged already (or there is none)."""
        now = self._clock()
        waits = [
            entry.started_at + self._judge_after - now
            for entry in self._receiving
            if self._big_enough(entry.cursor) and now - entry.started_at < self._judge_after
        ]
        return max(0.0, min(waits)) if waits else None

    def _big_enough(self, cursor: Cursor) -> bool:
        return cursor.end - cursor.pos >= 2 * self._min_piece
