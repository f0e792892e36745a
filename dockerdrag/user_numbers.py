"""The numbers a user gives, read and checked in one place.

The command-line options (``--concurrency``, ``--low-speed-limit``, ...) and the
``DOCKERDRAG_*`` variables behind them accept the same text: each reader returns the
number or raises :class:`ValueError` saying what is wrong with it, and its caller words
that as an argparse error or as a usage error naming the variable.
"""

from __future__ import annotations

import math


def _whole_number(text: str, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"not a whole number: {text!r}") from None
    if value < minimum:
        raise ValueError(f"must be at least {minimum}")
    return value


def positive_whole_number(text: str) -> int:
    """``text`` as a whole number of at least 1."""
    return _whole_number(text, 1)


def non_negative_whole_number(text: str) -> int:
    """``text`` as a whole number of at least 0."""
    return _whole_number(text, 0)


def positive_seconds(text: str) -> float:
    """``text`` as a finite number of seconds above 0."""
    try:
        seconds = float(text)
    except ValueError:
        raise ValueError(f"not a number: {text!r}") from None
    if not 0 < seconds < math.inf:
        raise ValueError("must be above 0")
    return seconds


__all__ = ["non_negative_whole_number", "positive_seconds", "positive_whole_number"]
