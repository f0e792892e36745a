"""The retry loop around one registry request (how long it waits, :mod:`retry` says).

A request is sent again after a connection failure (:class:`~dockerdrag.retry.Unreachable`
or a :class:`~dockerdrag.errors.NetworkError`) and after a 408/429/500/502/503/504 answer
(honouring ``Retry-After``); never after a TLS error, a host name that does not resolve, or
a token request that its own loop gave up on. A refused connection is retried after short
waits. Each retry is logged (``INFO``) and told to a listener as a
:class:`~dockerdrag.events.RequestRetry`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from urllib.parse import SplitResult

import aiohttp
import anyio

from .errors import NetworkError, TLSError
from .events import RequestRetry
from .human_units import address
from .retry import RETRY_STATUSES, RetriesExhausted, RetryPolicy, Unreachable, parse_retry_after

log = logging.getLogger("dockerdrag")

RetryListener = Callable[[RequestRetry], None]


@contextlib.asynccontextmanager
async def retried(
    send: Callable[[], contextlib.AbstractAsyncContextManager[aiohttp.ClientResponse]],
    *,
    policy: RetryPolicy,
    attempts: int,
    what: str,
    target: SplitResult,
    listener: RetryListener | None,
) -> AsyncIterator[aiohttp.ClientResponse]:
    """Yield the answer of ``send()``, sent up to ``attempts`` times while it fails transiently.

    The answer yielded may be any status (the last attempt's 503 too): judging it is the
    caller's. ``target`` is where a failure that names no host was going.
    """
    retries = policy.attempts - 1
    attempt = 0
    while True:
        async with contextlib.AsyncExitStack() as stack:
            try:
                raw = await stack.enter_async_context(send())
            except (TLSError, RetriesExhausted):
                raise
            except Unreachable as exc:
                if not exc.worth_retrying or attempt + 1 >= attempts:
                    if attempt == 0:
                        raise
                    raise NetworkError(f"{exc} (tried {attempt + 1} times)") from exc
                delay = policy.delay(attempt, None)
                if exc.refused:
                    delay = min(delay, policy.refused_max_delay)
                cause = exc.cause
                retry = RequestRetry(exc.host, exc.port, what, cause, attempt + 1, retries, delay)
            except NetworkError as exc:
                if attempt + 1 >= attempts:
                    raise
                delay = policy.delay(attempt, None)
                host, port = target.hostname or target.netloc, target.port or 443
                retry = RequestRetry(host, port, what, str(exc), attempt + 1, retries, delay)
            else:
                if raw.status not in RETRY_STATUSES or attempt + 1 >= attempts:
                    yield raw
                    return
                delay = policy.delay(attempt, parse_retry_after(raw.headers.get("Retry-After")))
                host, port = raw.url.host or target.netloc, raw.url.port or 443
                cause = f"HTTP {raw.status}"
                retry = RequestRetry(
                    host, port, what, cause, attempt + 1, retries, delay, raw.status
                )
            _announce(retry, listener)
        attempt += 1
        await anyio.sleep(delay)


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
