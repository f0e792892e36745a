"""One stream of a blob download: its cursor, its block buffer, its reconnect budget."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import anyio

from .errors import NetworkError
from .retry import RetryPolicy

log = logging.getLogger("dockerdrag")


class BodyBroken(Exception):
    """A body ended or broke before its last byte; ``error`` says how."""

    def __init__(self, error: NetworkError) -> None:
        super().__init__(str(error))
        self.error = error


@dataclass(eq=False)
class Cursor:
    """The next offset one stream writes to, and the offset where it stops (exclusive).

    ``end`` may move down while the body is read: :mod:`chunk_split` gives the second
    half of a straggling chunk to another connection.
    """

    pos: int
    end: int


class Pieces:
    """One stream's bytes received and not yet written, kept as the pieces they came in.

    Each piece is the bytes object the HTTP layer made of what one read of the
    connection brought: kept as it is, not copied into a buffer of our own (the event
    loop, which parses every byte of every body, bounds a pull over a fast link).
    """

    __slots__ = ("_pieces", "_size")

    def __init__(self) -> None:
        self._pieces: list[bytes | memoryview] = []
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def add(self, piece: bytes | memoryview) -> None:
        self._pieces.append(piece)
        self._size += len(piece)

    def view(self) -> tuple[bytes | memoryview, ...]:
        """The pieces, in order."""
        return tuple(self._pieces)

    def clear(self) -> None:
        self._pieces = []
        self._size = 0


class Reconnects:
    """The reconnect budget of one stream (a whole blob or one chunk) in one run."""

    def __init__(self, policy: RetryPolicy, offset: int) -> None:
        self.policy = policy
        self.count = 0
        self.fruitless = 0
        self._mark = (offset, time.monotonic())

    async def wait_to_reconnect(self, offset: int, broken: BodyBroken, blob: str) -> None:
        """Log ``broken`` (of ``blob``, a short digest) and wait before reconnecting at
        ``offset``; raise its error when the budget is spent."""
        delay = self.delay_after(offset, broken.error)
        log.info("blob %s: %s; reconnecting at byte %d", blob, broken, offset)
        await anyio.sleep(delay)

    def delay_after(self, offset: int, error: NetworkError) -> float:
        """Seconds to wait before reconnecting at ``offset``; raise ``error`` when spent."""
        policy = self.policy
        mark_offset, mark_time = self._mark
        now = time.monotonic()
        progressed = (
            offset - mark_offset >= policy.reconnect_progress_bytes
            or now - mark_time >= policy.reconnect_progress_seconds
        )
        self._mark = (offset, now)
        self.count += 1
        self.fruitless = 0 if progressed else self.fruitless + 1
        if self.count > policy.max_reconnects or self.fruitless >= policy.attempts:
            raise error
        return 0.0 if progressed else policy.delay(self.fruitless - 1, None)
