"""The wire under :mod:`transport`: one aiohttp session, one exchange at a time.

:class:`HttpSession` sends a request once (no redirects followed, no retries) with the TLS
setting and proxy its URL gets (:mod:`tls_proxy`), and maps every aiohttp/OS failure of
the exchange (:func:`~dockerdrag.http_failures.connection_error`). The session:

* No total timeout: a blob body may take as long as it needs; connecting fails after
  ``connect_timeout`` and a stalled read after ``read_timeout``.
* No ``~/.netrc`` credentials and no cookies (cookies ignore ports, so they could reach
  another registry on the same host); each request names its own proxy.
* Bodies as sent (no decompression: a blob's digest is of its bytes); a response's
  connection is paused once more than twice :data:`READ_BUFFER_BYTES` of it lie unread;
  no limit on connections (the callers bound them).
* A TLS connection queues little ciphertext (:func:`~dockerdrag.tls_buffers.limit_tls_queue`).

It also notes how soon each host answers (:attr:`HttpSession.round_trips`) and opens
connections ahead of the requests to come (:meth:`HttpSession.open_connections`).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterable, AsyncIterator, Mapping
from urllib.parse import urlsplit

import aiohttp
import anyio

from .connections_ahead import ConnectionsAhead
from .errors import DockerDragError
from .http_failures import connection_error
from .redirects import redact_url
from .retry import parse_retry_after
from .tls_buffers import limit_tls_queue
from .tls_proxy import Proxies, TLSSettings
from .tokens import MAX_TOKEN_BODY, TokenReply, TokenRequest

log = logging.getLogger("dockerdrag")

READ_BUFFER_BYTES = 1 << 16  # aiohttp's read_bufsize: a response pauses past twice this
USER_AGENT = "dockerdrag/0.1"


class HttpSession:
    """An aiohttp session (between :meth:`open` and :meth:`close`) with each URL's TLS and proxy.

    It is also the :class:`~dockerdrag.tokens.TokenClient` that token requests go through.
    """

    def __init__(self, tls: TLSSettings) -> None:
        self.tls = tls
        self.proxies = Proxies()
        self._session: aiohttp.ClientSession | None = None
        self.round_trips: dict[str, float] = {}
        """By ``host[:port]``: the shortest time a request to it took to be answered so
        far, connection set-up included: at least one round trip of the link."""
        self._ahead = ConnectionsAhead()
        self._opened_ahead: set[str] = set()

    def open(self, *, connect_timeout: float, read_timeout: float) -> None:
        """Start the session (loads ``ca_cert`` now, so a bad one fails before any request)."""
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(
                total=None,
                connect=connect_timeout,
                sock_connect=connect_timeout,
                sock_read=read_timeout,
            ),
            trust_env=False,  # no ~/.netrc credentials; each request names its proxy
            cookie_jar=aiohttp.DummyCookieJar(),  # cookies ignore ports: never carry them
            auto_decompress=False,
            # aiohttp pauses a response's connection once more than twice this lies
            # unread (its default: 256 KiB, so 512 KiB a connection).
            read_bufsize=READ_BUFFER_BYTES,
            headers={"User-Agent": USER_AGENT},
            # Every request passes its own ``tls.for_host(host)``.
            connector=aiohttp.TCPConnector(limit=0, ssl=self.tls.fallback()),
        )

    async def close(self) -> None:
        """Close the session (shielded from cancellation: its connections are let go, and
        those still opening ahead stopped)."""
        if self._session is not None:
            with anyio.CancelScope(shield=True):
                await self._ahead.cancel()
                await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        """The underlying session (open only between :meth:`open` and :meth:`close`)."""
        if self._session is None:
            raise RuntimeError("Transport is not open; use 'async with Transport(...)'")
        return self._session

    @contextlib.asynccontextmanager
    async def exchange(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        what: str,
        data: bytes | AsyncIterable[bytes] | None = None,
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """Send ``method url`` once (a redirect is yielded like any answer); failures of
        the connection become :mod:`errors`, those of the caller's own work stay as they are."""
        proxy, proxy_headers = self.proxies.options(url)
        log.debug("%s %s", method, redact_url(url))
        handed_out = False
        netloc = urlsplit(url).netloc
        started = time.monotonic()
        try:
            async with self.session.request(
                method,
                url,
                headers=headers,
                data=data,
                allow_redirects=False,
                ssl=self.tls.for_host(urlsplit(url).netloc),
                proxy=proxy,
                proxy_headers=proxy_headers,
            ) as raw:
                handed_out = True
                self.note_round_trip(netloc, time.monotonic() - started)
                if raw.connection is not None:
                    limit_tls_queue(raw.connection.transport)
                yield raw
        except DockerDragError:
            raise
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            if handed_out:  # raised by the caller's own work (e.g. a full disk): not ours
                raise
            raise connection_error(exc, url, what, proxy) from exc

    def note_round_trip(self, host: str, seconds: float) -> None:
        """A request to ``host`` took ``seconds`` to be answered (:attr:`round_trips`)."""
        self.round_trips[host] = min(seconds, self.round_trips.get(host, seconds))

    def open_connections(self, scheme: str, host: str, count: int) -> None:
        """Open ``count`` connections to ``scheme://host`` in the background, for the
        requests to come (see :mod:`~dockerdrag.connections_ahead`); only once per host,
        so a session holds at most ``count`` connections it opened unasked, and none to
        a host reached through a proxy."""
        url = f"{scheme}://{host}/"
        if host in self._opened_ahead or self.proxies.for_url(url) is not None:
            return
        self._opened_ahead.add(host)
        log.debug("opening %d connection(s) to %s ahead of its requests", count, host)
        self._ahead.open(self.session, url, self.tls.for_host(host), count)

    async def send_token_request(self, request: TokenRequest) -> TokenReply:
        """``request`` sent to its realm once (the :class:`~dockerdrag.tokens.TokenClient` side)."""
        url, form = request.realm, request.form
        proxy, proxy_headers = self.proxies.options(url)
        log.debug("%s %s", request.method, redact_url(url))
        try:
            async with self.session.request(
                request.method,
                url,
                params=list(request.query) or None,
                data=dict(form) if form is not None else None,
                headers=dict(request.headers),
                allow_redirects=False,
                ssl=self.tls.for_host(urlsplit(url).netloc),
                proxy=proxy,
                proxy_headers=proxy_headers,
            ) as raw:
                body = await read_capped(raw, MAX_TOKEN_BODY + 1)
                retry_after = parse_retry_after(raw.headers.get("Retry-After"))
                return TokenReply(raw.status, body, retry_after)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise connection_error(exc, url, "a token", proxy) from exc


async def read_capped(raw: aiohttp.ClientResponse, limit: int) -> bytes:
    """At most ``limit`` bytes of a body."""
    chunks: list[bytes] = []
    total = 0
    while total < limit:
        chunk = await raw.content.read(limit - total)
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
    return b"".join(chunks)
