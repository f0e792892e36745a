"""The one retry loop, around one request to a registry or to a token server.

A request is sent again after a connection failure (:class:`~dockerdrag.retry.Unreachable`
or a :class:`~dockerdrag.errors.NetworkError`) and after a 408/429/500/502/503/504 answer
(honouring ``Retry-After``); never after a TLS error, a host name that does not resolve, or
a token request that its own loop gave up on (:class:`~dockerdrag.retry.RetriesExhausted`).
A refused connection is retried after short waits. Each retry is logged (``INFO``) and told
to a listener as a :class:`~dockerdrag.events.RequestRetry`. How long it waits,
:mod:`retry` says. The loop knows nothing of HTTP libraries: the caller says what an answer's
status, ``Retry-After`` and sender are (:class:`Answered`).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import NamedTuple, TypeVar
from urllib.parse import SplitResult

import anyio

from .errors import NetworkError, TLSError
from .events import RequestRetry
from .human_units import address
from .retry import RETRY_STATUSES, RetriesExhausted, RetryPolicy, Unreachable

log = logging.getLogger("dockerdrag")

RetryListener = Callable[[RequestRetry], None]
AnswerT = TypeVar("AnswerT")


class Answered(NamedTuple):
    """What the loop needs of an answer: its status, its ``Retry-After`` in seconds (None:
    none or unreadable) and where it came from."""

    status: int
    retry_after: float | None
    host: str
    port: int


@contextlib.asynccontextmanager
async def retried(
    send: Callable[[], contextlib.AbstractAsyncContextManager[AnswerT]],
    answered: Callable[[AnswerT], Answered],
    *,
    policy: RetryPolicy,
    attempts: int,
    what: str,
    target: SplitResult,
    listener: RetryListener | None,
) -> AsyncIterator[AnswerT]:
    """Yield the answer of ``send()``, sent up to ``attempts`` times while it fails transiently.

    The answer yielded may be any status (the last attempt's 503 too): judging it is the
    caller's. ``target`` is where a failure that names no host was going. A failure given
    up on after more than one try is a NetworkError that says how often it was tried.
    """
    retries = policy.attempts - 1
    attempt = 0
    while True:
        async with contextlib.AsyncExitStack() as stack:
            try:
                answer = await stack.enter_async_context(send())
            except (TLSError, RetriesExhausted):
                raise
            except NetworkError as exc:
                hopeless = isinstance(exc, Unreachable) and not exc.worth_retrying
                if hopeless or attempt + 1 >= attempts:
                    if attempt == 0:
                        raise
                    raise NetworkError(f"{exc} (tried {attempt + 1} times)") from exc
                delay = policy.delay(attempt, None)
                if isinstance(exc, Unreachable):
                    if exc.refused:
                        delay = min(delay, policy.refused_max_delay)
                    host, port, cause = exc.host, exc.port, exc.cause
                else:
                    (host, port), cause = destination(target), str(exc)
                retry = RequestRetry(host, port, what, cause, attempt + 1, retries, delay)
            else:
                facts = answered(answer)
                if facts.status not in RETRY_STATUSES or attempt + 1 >= attempts:
                    yield answer
                    return
                delay = policy.delay(attempt, facts.retry_after)
                cause = f"HTTP {facts.status}"
                retry = RequestRetry(
                    facts.host, facts.port, what, cause, attempt + 1, retries, delay, facts.status
                )
            _announce(retry, listener)
        attempt += 1
        await anyio.sleep(delay)


def destination(target: SplitResult) -> tuple[str, int]:
    """The host and port a request to ``target`` goes to (by its scheme where it names none;
    443 where it names no scheme either)."""
    return target.hostname or target.netloc, target.port or (80 if target.scheme == "http" else 443)


def _announce(retry: RequestRetry, listener: RetryListener | None) -> None:
    """Log a coming retry (``INFO``, shown by ``-v``) and tell ``listener``."""
    log.info(
        "%s on %s: %s; retry %d of %d in %.1f s",
        retry.what,
        address(retry.host, retry.port),
        retry.cause,
        retry.retry,
        retry.retries,
        retry.delay,
    )
    if listener is not None:
        listener(retry)
