"""The low-speed limit of a body: too few bytes over a window and the read is given up.

A registry (or anything between) that sends headers and then a byte every few
seconds is never silent long enough for the read timeout, and would keep a pull
alive for ever. Like curl's ``--speed-limit``/``--speed-time``, a body must bring
at least ``bytes_per_second`` on average over each window of ``seconds``; when a
window ends short, the body fails with a :class:`NetworkError`, which the
download treats as a broken body (reconnected within the retry budget, then the
error is the pull's).

:class:`SpeedWatch` costs a little arithmetic per read: one cancel scope spans the
whole body, and its deadline is moved once per window (the end of the current
window while the window is short of its bytes, none once it has them).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from types import TracebackType

import anyio

from .errors import NetworkError


@dataclass(frozen=True)
class LowSpeedLimit:
    """At least ``bytes_per_second`` on average over every ``seconds`` of a body."""

    bytes_per_second: int = 1024
    seconds: float = 30.0

    def __post_init__(self) -> None:
        if self.bytes_per_second < 1 or not self.seconds > 0:
            raise ValueError("bytes_per_second must be at least 1 and seconds positive")

    def describe(self) -> str:
        """``1024 bytes/s over 30 s``."""
        return f"{self.bytes_per_second} bytes/s over {self.seconds:g} s"


class SpeedWatch:
    """Holds one body to a :class:`LowSpeedLimit` (None: no limit).

    Use it as a context manager around the reads and :meth:`note` what each brings;
    a window that ends short raises :class:`NetworkError` naming ``what``, whether
    it ends during a read (which is cancelled) or between two.
    """

    def __init__(self, limit: LowSpeedLimit | None, what: str) -> None:
        self._limit = limit
        self._what = what
        self._scope = anyio.CancelScope()
        self._window_end = math.inf
        self._window_bytes = 0
        self._wanted = limit.bytes_per_second * limit.seconds if limit else 0.0

    def __enter__(self) -> SpeedWatch:
        self._scope.__enter__()
        if self._limit is not None:
            self._start_window(time.monotonic())
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool:
        swallowed = self._scope.__exit__(exc_type, exc, traceback)
        if self._scope.cancelled_caught:
            raise self._too_slow()
        return bool(swallowed)

    def note(self, received: int) -> None:
        """Count ``received`` bytes of the body (call after every read)."""
        if self._limit is None:
            return
        self._window_bytes += received
        now = time.monotonic()
        if now >= self._window_end:
            if self._window_bytes < self._wanted:
                raise self._too_slow()
            self._start_window(now)
        elif self._window_bytes >= self._wanted and self._scope.deadline != math.inf:
            self._scope.deadline = math.inf  # this window has its bytes

    def _start_window(self, now: float) -> None:
        assert self._limit is not None
        self._window_end = now + self._limit.seconds
        self._window_bytes = 0
        self._scope.deadline = self._window_end

    def _too_slow(self) -> NetworkError:
        assert self._limit is not None
        return NetworkError(
            f"{self._what} arrived slower than the low-speed limit "
            f"({self._limit.describe()}): {self._window_bytes} bytes in the last window"
        )
