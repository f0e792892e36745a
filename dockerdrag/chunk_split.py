"""The chunks of one blob being received, and the split that gives a straggler's rest away.

When no chunk of a blob is left to start, a connection that falls idle takes the second
half of the bytes still to come of the chunk that has the most of them
(:meth:`OpenChunks.split`): that chunk's cursor stops at the middle, the idle connection
asks for the rest. So the last chunks of a pull do not each crawl along on one
connection while the others stand idle. Only what was written counts in the blob's
ranges, so a split changes who fetches which bytes, not what is recorded for a resume.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from .blob_body import Cursor


class OpenChunks:
    """The cursors of one blob's chunks whose bodies are being read right now.

    A chunk is split only while at least ``2 * min_piece`` bytes of it are still to
    come, so each half is worth its request (``TransferOptions.split_min_bytes``).
    """

    def __init__(self, min_piece: int) -> None:
        self._min_piece = max(1, min_piece)
        self._receiving: list[Cursor] = []

    @contextlib.contextmanager
    def receiving(self, cursor: Cursor) -> Iterator[None]:
        """While the body of ``cursor``'s chunk is read, it may be split."""
        self._receiving.append(cursor)
        try:
            yield
        finally:
            self._receiving.remove(cursor)

    def split(self) -> Cursor | None:
        """Cut the chunk with the most bytes to come in two; the cursor of the second half.

        The chunk's cursor now ends at the middle (its body is read up to there); the
        returned cursor covers the rest. None when no chunk has enough left to split.
        """
        victim = max(self._receiving, key=lambda cursor: cursor.end - cursor.pos, default=None)
        if victim is None or victim.end - victim.pos < 2 * self._min_piece:
            return None
        middle = victim.pos + (victim.end - victim.pos) // 2
        rest = Cursor(middle, victim.end)
        victim.end = middle
        return rest
