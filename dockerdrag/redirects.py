"""Redirects of a request: followed, where they may lead, and whose credentials go along.

* At most :data:`MAX_REDIRECTS` are followed; only to http(s) URLs, and never from https
  to anything but https.
* ``Authorization`` goes only to the origin it was made for (same scheme, host and port):
  a hop to another origin goes without it, and a 401 from another origin is an error
  (:func:`refuse_foreign_challenge`), never a challenge to answer.
* A URL outside the registry's API (a foreign layer's) is fetched only over http(s), and
  over plain http only from a host named insecure (:func:`check_foreign_url`).
* URLs in messages and logs go without their query (signed CDN URLs carry secrets there).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from urllib.parse import SplitResult, urljoin, urlsplit

import aiohttp
import yarl

from .errors import AuthenticationError, RegistryError, Remedy, Setting

MAX_REDIRECTS = 10
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})

HopSender = Callable[
    [str, dict[str, str]], contextlib.AbstractAsyncContextManager[aiohttp.ClientResponse]
]
"""Sends the request once, without following redirects, to a URL with these headers."""


def redact_url(url: str) -> str:
    """A URL without its query string (signed CDN URLs carry secrets there)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}" + ("?…" if parts.query else "")


def check_foreign_url(url: str, what: str, is_insecure: Callable[[str], bool]) -> None:
    """Refuse to fetch ``what`` from ``url``, a URL outside the registry's API, unless it
    is http(s), and https unless ``is_insecure`` says its host was named insecure."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise RegistryError(f"refusing to fetch {what} from {redact_url(url)}: not an http(s) URL")
    if parts.scheme == "http" and not is_insecure(parts.netloc):
        remedy = Remedy(Setting.INSECURE, parts.netloc)
        raise RegistryError(
            f"refusing to fetch {what} over plain http from {parts.netloc}; name it with "
            f"{remedy} if you trust it"
        ).suggesting(remedy)


@contextlib.asynccontextmanager
async def follow_redirects(
    send_hop: HopSender, url: str, headers: dict[str, str], what: str
) -> AsyncIterator[aiohttp.ClientResponse]:
    """Send to ``url`` through ``send_hop`` and yield the first answer that is no redirect.

    Each hop to another origin than ``url``'s goes without ``Authorization``.
    """
    origin = urlsplit(url)
    current = url
    for _ in range(MAX_REDIRECTS + 1):
        target = urlsplit(current)
        hop_headers = dict(headers)
        if (target.scheme, target.netloc) != (origin.scheme, origin.netloc):
            hop_headers.pop("Authorization", None)
        async with send_hop(current, hop_headers) as raw:
            if raw.status in REDIRECT_STATUSES and "Location" in raw.headers:
                current = redirect_target(current, raw.headers["Location"], origin, what)
                continue
            yield raw
            return
    raise RegistryError(f"more than {MAX_REDIRECTS} redirects while fetching {what}")


def redirect_target(current: str, location: str, origin: SplitResult, what: str) -> str:
    """The absolute URL a redirect points to; refuses https -> http and odd schemes."""
    target = urljoin(current, location)
    scheme = urlsplit(target).scheme
    if scheme not in ("http", "https"):
        raise RegistryError(f"refusing a redirect to a {scheme!r} URL while fetching {what}")
    if (origin.scheme == "https" or urlsplit(current).scheme == "https") and scheme != "https":
        raise RegistryError(
            f"refusing a redirect from https to {scheme} ({redact_url(target)}) "
            f"while fetching {what}"
        )
    return target


def refuse_foreign_challenge(raw: aiohttp.ClientResponse, url: str, what: str) -> None:
    """Raise if the 401 ``raw`` came from another origin than ``url`` (after a redirect)."""
    asked, answered = yarl.URL(url), raw.url
    if (asked.scheme, asked.host, asked.port) == (answered.scheme, answered.host, answered.port):
        return
    raise AuthenticationError(
        f"{asked.authority} redirected the request for {what} to {answered.authority}, "
        "which asks for authentication (HTTP 401); credentials are only sent to the "
        "registry named and the token server it names"
    )
