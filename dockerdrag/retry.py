"""When and how long to retry a request that failed transiently (registry and token server).

One policy for every request dockerdrag sends: the transport's requests to a
registry, the reconnects of a blob body, and :mod:`auth`'s token requests.
"""

from __future__ import annotations

import datetime
import email.utils
import random
import time
from dataclasses import dataclass

from .errors import NetworkError
from .human_units import address

RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
"""HTTP statuses that mean "try again": timeout, too many requests, server trouble."""


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry a request that failed transiently.

    A request is tried ``attempts`` times; before retry ``n`` (0-based) it sleeps
    a random time up to ``min(max_delay, base_delay * 2**n)`` (full jitter), or
    the server's ``Retry-After`` capped at ``max_retry_after``.

    A blob body that breaks mid-way is reconnected at the bytes already on disk.
    A reconnect after progress (``reconnect_progress_bytes`` received or
    ``reconnect_progress_seconds`` spent since the previous one) is immediate;
    one without progress counts as a failed attempt (backoff, ``attempts`` in a
    row end the download). At most ``max_reconnects`` reconnects per blob and run.

    A host name that does not resolve is not tried again; a refused connection
    waits at most ``refused_max_delay`` before each retry (a registry starting up
    is soon there, one that is not there should not keep the user waiting).
    """

    attempts: int = 5
    base_delay: float = 1.0
    max_delay: float = 30.0
    refused_max_delay: float = 1.0
    max_retry_after: float = 60.0
    reconnect_progress_bytes: int = 1 << 20
    reconnect_progress_seconds: float = 60.0
    max_reconnects: int = 20

    def delay(self, attempt: int, retry_after: float | None) -> float:
        """Seconds to wait before retry number ``attempt`` (0-based)."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_retry_after)
        return random.uniform(0, min(self.max_delay, self.base_delay * 2**attempt))


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return seconds if seconds >= 0 and seconds == seconds else None  # rejects NaN
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)  # HTTP dates are GMT
    return max(0.0, when.timestamp() - time.time())


class Unreachable(NetworkError):
    """A request that got no answer from ``host``:``port``; ``cause`` says why, in plain words.

    ``worth_retrying`` is False for a host name that does not resolve; ``refused``
    marks a refused connection (retried after short waits only).
    """

    def __init__(
        self,
        host: str,
        port: int,
        what: str,
        cause: str,
        *,
        via: str = "",
        worth_retrying: bool = True,
        refused: bool = False,
    ) -> None:
        super().__init__(
            f"cannot connect to {address(host, port)}{via} while fetching {what}: {cause}"
        )
        self.host = host
        self.port = port
        self.cause = cause
        self.worth_retrying = worth_retrying
        self.refused = refused


class RetriesExhausted(NetworkError):
    """A network failure its own retry loop (a token request's) has already retried as
    the policy allows: a request that waited on it is not sent again."""
