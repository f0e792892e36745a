"""Which scheme an insecure registry speaks, found beside its first request.

Like dockerd, a registry named insecure is reached over https (unverified) when it speaks
TLS, and over plain HTTP only when it does not. :func:`speaks_tls` asks with a TLS
attempt (``GET https://host/v2/``, unverified) and sends a plain-HTTP request beside it,
without credentials, so that a registry that speaks plain HTTP costs no set-up more than
one that speaks TLS:

* the request the caller is about to send (:class:`PlainFirst`: a GET without a body),
  whose answer is handed back unread when the registry speaks plain HTTP: that request
  has been sent already, on the connection it came back on; its path (the repository and
  the tag asked for) so goes out in plain text to a registry named insecure, as ``GET
  /v2/`` did before;
* else ``GET /v2/``, read to its end so its connection stays open for the requests that
  follow.

The plain request is dropped as soon as the registry turns out to speak TLS, else given
at most :data:`PLAIN_CONNECTION_GRACE` seconds more (a registry that answers neither is
left to the requests that follow and their timeouts).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator, Mapping
from typing import NamedTuple

import aiohttp
import anyio

from .http_session import HttpSession, read_capped

log = logging.getLogger("dockerdrag")

MAX_PROBE_BODY = 64 << 10  # the most of a /v2/ answer read to keep its connection
PLAIN_CONNECTION_GRACE = 5.0
"""Seconds the plain-HTTP request beside the TLS attempt may take once the registry
turned out not to speak TLS."""


class PlainFirst(NamedTuple):
    """The first request to a registry (a GET without a body or credentials): ``path``
    and ``headers`` as it is about to be sent."""

    path: str
    headers: Mapping[str, str]


async def speaks_tls(
    http: HttpSession, host: str, first: PlainFirst | None = None
) -> tuple[bool, aiohttp.ClientResponse | None]:
    """Whether ``host`` answers TLS (unverified: asked only of an insecure registry), and
    when it does not, the unread plain-HTTP answer to ``first`` if that came (the caller
    releases it: :func:`handed`). See the module for the plain request sent beside."""
    answers: list[aiohttp.ClientResponse] = []
    async with anyio.create_task_group() as group:
        group.start_soon(_ask_plainly, http, host, first, answers)
        tls = await _answers_tls(http, host)
        if tls:
            group.cancel_scope.cancel()
        else:
            group.cancel_scope.deadline = anyio.current_time() + PLAIN_CONNECTION_GRACE
    if tls:
        for answer in answers:
            answer.close()  # its connection is of no use: the requests go over https
        return True, None
    return False, answers[0] if answers else None


@contextlib.asynccontextmanager
async def handed(raw: aiohttp.ClientResponse) -> AsyncIterator[aiohttp.ClientResponse]:
    """An answer :func:`speaks_tls` handed back, released on exit as an exchange's is."""
    try:
        yield raw
    finally:
        raw.release()
        await raw.wait_for_close()


async def _answers_tls(http: HttpSession, host: str) -> bool:
    url = f"https://{host}/v2/"
    proxy, proxy_headers = http.proxies.options(url)
    try:
        async with http.session.get(
            url, ssl=False, allow_redirects=False, proxy=proxy, proxy_headers=proxy_headers
        ) as response:
            await response.read()
        return True
    except (aiohttp.ClientSSLError, aiohttp.ServerDisconnectedError, aiohttp.ClientOSError):
        return False
    except (aiohttp.ClientError, TimeoutError):
        return True


async def _ask_plainly(
    http: HttpSession,
    host: str,
    first: PlainFirst | None,
    answers: list[aiohttp.ClientResponse],
) -> None:
    """Send ``first`` (else ``GET /v2/``) over plain HTTP; put its answer, unread, in
    ``answers`` (``/v2/``'s is read to its end, so its connection goes back to the pool);
    any failure is ignored (the request is sent again once the scheme is known)."""
    path, headers = first if first is not None else ("/v2/", {})
    url = f"http://{host}{path}"
    proxy, proxy_headers = http.proxies.options(url)
    log.debug("GET %s (beside the TLS attempt)", url)
    started = time.monotonic()
    try:
        response = await http.session.get(
            url,
            headers=headers,
            ssl=http.tls.for_host(host),
            allow_redirects=False,
            proxy=proxy,
            proxy_headers=proxy_headers,
        )
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        log.debug("no plain HTTP answer from %s: %s", host, exc)
        return
    http.note_round_trip(host, time.monotonic() - started)
    if first is not None:
        answers.append(response)
        return
    try:
        async with handed(response):
            await read_capped(response, MAX_PROBE_BODY)
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        log.debug("no plain HTTP connection kept open to %s: %s", host, exc)


__all__ = ["PLAIN_CONNECTION_GRACE", "PlainFirst", "handed", "speaks_tls"]
