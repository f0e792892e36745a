"""HTTP for registries: one aiohttp session, TLS, auth injection, redirects, retries.

:class:`Transport` sends every request dockerdrag makes to a registry (and :mod:`tokens`'
token requests). Its modules, one job each: :mod:`http_session` (the session's set-up),
:mod:`redirects` (following them, and where credentials may go), :mod:`http_failures`
(every aiohttp/OSError exception and error status mapped to :mod:`errors`); only these use
aiohttp. The retry loop, which token requests go through too, is :mod:`request_retries`.
Which ``Authorization`` a request carries, and what a 401 means, :mod:`auth` decides.

Rules it enforces:

* TLS is verified unless the registry was named insecure; plain HTTP only for
  insecure registries; no https -> http downgrade on redirects.
* ``Authorization`` goes only to the registry host it was made for: it is
  dropped on any redirect that changes scheme, host or port, and a 401 from such
  a redirect target is an error, never a challenge to answer. No ``~/.netrc``
  credentials and no cookies are sent (the session does not trust the
  environment); proxies come from ``HTTP(S)_PROXY``/``NO_PROXY`` per request, or
  where none is set from the OS's proxy settings (:class:`~dockerdrag.tls_proxy.Proxies`).
* CAs: the system store, ``--ca-cert`` and Docker's ``certs.d/<host:port>/``, as
  :mod:`tls_proxy` builds them.
* Retries with exponential backoff (full jitter) on connection errors and
  408/429/500/502/503/504, honouring ``Retry-After``; never on other statuses,
  nor on a host name that does not resolve; a refused connection is retried
  after short waits. Each retry is logged (``INFO``) and reported to
  :attr:`Transport.on_retry` as a :class:`~dockerdrag.events.RequestRetry`.
* No total timeout: a blob body may take as long as it needs, but a stalled
  read fails after ``read_timeout``.
"""

from __future__ import annotations

import contextlib
import logging
import ssl
from collections.abc import AsyncIterable, AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import anyio

from .auth import RegistryAuth
from .conventions import docker_certs_d_dirs
from .credentials import Credentials
from .errors import NetworkError, NotFoundError, RegistryError
from .events import RequestRetry
from .http_failures import status_error
from .http_session import HttpSession
from .redirects import check_foreign_url, follow_redirects, refuse_foreign_challenge
from .request_retries import Answered, retried
from .retry import RetryPolicy, parse_retry_after
from .scheme_probe import PlainFirst, handed, speaks_tls
from .tls_proxy import TLSSettings, describe_exception

log = logging.getLogger("dockerdrag")

RequestBody = Callable[[], bytes | AsyncIterable[bytes]]
"""Makes a request body, afresh for each time the request is sent (retries, challenges)."""


@dataclass(frozen=True)
class TransportConfig:
    """Connection settings shared by every request of a client."""

    insecure_registries: frozenset[str] = frozenset()
    ca_cert: Path | None = None
    credentials: Mapping[str, Credentials] = field(default_factory=dict)
    use_docker_config: bool = True
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    connect_timeout: float = 30.0
    read_timeout: float = 60.0
    certs_d_dirs: tuple[Path, ...] = field(default_factory=lambda: docker_certs_d_dirs())


class Response:
    """A successful (or explicitly allowed) response whose body is read in chunks."""

    def __init__(self, raw: aiohttp.ClientResponse, what: str) -> None:
        self._raw = raw
        self.what = what
        self.status = raw.status
        self.headers: Mapping[str, str] = raw.headers
        self.url = str(raw.url)

    async def read_chunk(self, size: int = 1 << 20) -> bytes:
        """Up to ``size`` bytes; ``b""`` at the end of the body."""
        try:
            return await self._raw.content.read(size)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise NetworkError(
                f"connection broke while reading {self.what}: {describe_exception(exc)}"
            ) from exc

    async def read_piece(self) -> bytes:
        """The next bytes of the body as one read of the connection brought them (no
        copy is made of them); ``b""`` at the end of the body."""
        try:
            while True:
                piece, chunk_ended = await self._raw.content.readchunk()
                if piece or not chunk_ended:  # (b"", True): a chunk of chunked encoding ended
                    return piece
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise NetworkError(
                f"connection broke while reading {self.what}: {describe_exception(exc)}"
            ) from exc

    async def read_all(self, limit: int) -> bytes:
        """The whole body; RegistryError if it exceeds ``limit`` bytes."""
        chunks: list[bytes] = []
        total = 0
        while True:
            chunk = await self.read_chunk(min(1 << 20, limit + 1 - total))
            if not chunk:
                return b"".join(chunks)
            total += len(chunk)
            if total > limit:
                raise RegistryError(f"{self.what} is larger than the {limit}-byte limit")
            chunks.append(chunk)


class Transport:
    """Registry requests over an :class:`~dockerdrag.http_session.HttpSession`, with each
    registry's auth; use as an async context manager.

    ``on_retry``, if set, hears of every request about to be retried.
    """

    def __init__(self, config: TransportConfig | None = None) -> None:
        self.config = config or TransportConfig()
        self.on_retry: Callable[[RequestRetry], None] | None = None
        self.http = HttpSession(
            TLSSettings(
                self.config.insecure_registries, self.config.ca_cert, self.config.certs_d_dirs
            )
        )
        self._auth: dict[str, RegistryAuth] = {}
        self._schemes: dict[str, str] = {}
        self._scheme_locks: dict[str, anyio.Lock] = {}

    async def __aenter__(self) -> Transport:
        self.http.open(
            connect_timeout=self.config.connect_timeout, read_timeout=self.config.read_timeout
        )
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.http.close()

    # ------------------------------------------------------------------ TLS and schemes

    def is_insecure(self, host: str) -> bool:
        """True if the user named ``host`` (host:port or host) as an insecure registry."""
        return self.http.tls.is_insecure(host)

    def ssl_for(self, host: str) -> ssl.SSLContext | bool:
        """The TLS settings for ``host``: verified (with certs.d CAs), or off if insecure."""
        return self.http.tls.for_host(host)

    def proxy_for(self, url: str) -> str | None:
        """The proxy for ``url`` (environment, else the OS's settings), or None."""
        return self.http.proxies.for_url(url)

    async def scheme_for(self, host: str) -> str:
        """``https``, or for insecure registries whichever of https/http the server speaks
        (like dockerd: https, unverified, if it speaks TLS), asked once per host.

        A registry not named insecure is only ever reached over https: there is no
        fallback to plain HTTP.
        """
        scheme, _ = await self._scheme_answering(host, None)
        return scheme

    async def _scheme_answering(
        self, host: str, first: PlainFirst | None
    ) -> tuple[str, aiohttp.ClientResponse | None]:
        """:meth:`scheme_for`, and when this call found that the registry speaks plain
        HTTP, the unread answer to ``first``, sent beside the TLS attempt, if it came
        (:func:`~dockerdrag.scheme_probe.speaks_tls`)."""
        if not self.is_insecure(host):
            return "https", None
        if host not in self._schemes:
            async with self._scheme_locks.setdefault(host, anyio.Lock()):
                if host not in self._schemes:
                    tls, answer = await speaks_tls(self.http, host, first)
                    if not tls:
                        log.debug("insecure registry %s does not speak TLS; using http", host)
                    self._schemes[host] = "https" if tls else "http"
                    return self._schemes[host], answer
        return self._schemes[host], None

    def round_trip(self, host: str) -> float | None:
        """The shortest time a request to registry ``host`` took to be answered so far
        (None before any was): at least one round trip of the link to it."""
        return self.http.round_trips.get(host)

    async def open_connections(self, host: str, count: int) -> None:
        """Open ``count`` connections to registry ``host`` in the background for the
        requests to come, once per host: nothing is sent on them
        (:meth:`~dockerdrag.http_session.HttpSession.open_connections`)."""
        self.http.open_connections(await self.scheme_for(host), host, count)

    # ------------------------------------------------------------------ auth

    def auth_for(self, host: str) -> RegistryAuth:
        """The auth state of ``host`` (explicit credentials; the Docker config is read
        on the first challenge)."""
        if host not in self._auth:
            self._auth[host] = RegistryAuth(
                registry_host=host,
                credentials=self.config.credentials.get(host),
                plain_http_allowed=self.is_insecure,
                use_docker_config=self.config.use_docker_config,
                retry=self.config.retry,
                on_retry=self._tell_retry,
            )
        return self._auth[host]

    def _tell_retry(self, retry: RequestRetry) -> None:
        """Tell :attr:`on_retry` (as it is now) of a token request about to be retried."""
        if self.on_retry is not None:
            self.on_retry(retry)

    # ------------------------------------------------------------------ requests

    @contextlib.asynccontextmanager
    async def request(
        self,
        host: str,
        path: str,
        *,
        what: str,
        scope: str,
        headers: Mapping[str, str] | None = None,
        method: str = "GET",
        not_found: type[NotFoundError] = NotFoundError,
        allow_statuses: frozenset[int] = frozenset(),
        foreign_url: str | None = None,
        body: RequestBody | None = None,
        attempts: int | None = None,
    ) -> AsyncIterator[Response]:
        """Send a request to registry ``host`` and yield the successful response.

        Handles auth challenges, redirects and retries; maps every failure to a
        DockerDragError. ``allow_statuses`` are non-2xx statuses handed to the caller.
        With ``foreign_url`` the request goes to that absolute URL instead (a foreign
        layer's), and never carries credentials. ``body`` makes the request body for
        each send; ``attempts`` overrides the retry policy's (1: never resent, for a
        request whose effect the caller must check before sending it again).
        """

        def send() -> contextlib.AbstractAsyncContextManager[aiohttp.ClientResponse]:
            if foreign_url is not None:
                return self._anonymous(foreign_url, dict(headers or {}), what, method)
            return self._authorised(host, path, what, scope, headers or {}, method, body)

        target = urlsplit(foreign_url or f"//{host}")

        def answered(raw: aiohttp.ClientResponse) -> Answered:
            retry_after = parse_retry_after(raw.headers.get("Retry-After"))
            return Answered(
                raw.status, retry_after, raw.url.host or target.netloc, raw.url.port or 443
            )

        retrying = retried(
            send,
            answered,
            policy=self.config.retry,
            attempts=attempts or self.config.retry.attempts,
            what=what,
            target=target,
            listener=self.on_retry,
        )
        async with retrying as raw:
            if not (200 <= raw.status < 300 or raw.status in allow_statuses):
                raise await status_error(raw, host, what, not_found)
            yield Response(raw, what)

    @contextlib.asynccontextmanager
    async def _authorised(
        self,
        host: str,
        path: str,
        what: str,
        scope: str,
        headers: Mapping[str, str],
        method: str,
        body: RequestBody | None,
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """Send the request with whatever Authorization ``host`` needs, answering its
        challenges (see :class:`~dockerdrag.auth.RequestAuthorization`); yield the first
        non-401 response.

        Only the registry's own 401s are answered: a host it redirected to that asks
        for authentication gets none (the credentials are not for it).

        The first request to an insecure registry, a GET without a body, goes out over
        plain HTTP beside the TLS attempt that finds its scheme: when the registry
        speaks plain HTTP, its answer is this request's first (if it went without
        ``Authorization``, as the first request to a registry does).
        """
        first = PlainFirst(path, headers) if method == "GET" and body is None else None
        scheme, early = await self._scheme_answering(host, first)
        answered = [early] if early is not None else []
        try:
            url = f"{scheme}://{host}{path}"
            authorization = self.auth_for(host).for_request(scope, what, scheme)
            while True:
                request_headers = dict(headers)
                sent = await authorization.header(self.http)
                if sent:
                    request_headers["Authorization"] = sent
                    for answer in answered:  # it was asked for without: ask again
                        answer.close()
                    answered.clear()
                async with self._send(method, url, request_headers, what, body, answered) as raw:
                    if raw.status != 401:
                        authorization.accepted()
                        yield raw
                        return
                    refuse_foreign_challenge(raw, url, what)
                    challenge_header = raw.headers.get("WWW-Authenticate", "")
                await authorization.refused(challenge_header, sent)
        finally:
            for answer in answered:  # never taken (the request failed before it was sent)
                answer.close()

    def _anonymous(
        self, url: str, headers: dict[str, str], what: str, method: str
    ) -> contextlib.AbstractAsyncContextManager[aiohttp.ClientResponse]:
        """A request to a URL that is not a registry endpoint: no credentials, https only
        (unless its host was named insecure)."""
        check_foreign_url(url, what, self.is_insecure)
        headers.pop("Authorization", None)
        return self._send(method, url, headers, what)

    def _send(
        self,
        method: str,
        url: str,
        headers: dict[str, str],
        what: str,
        body: RequestBody | None = None,
        answered: list[aiohttp.ClientResponse] | None = None,
    ) -> contextlib.AbstractAsyncContextManager[aiohttp.ClientResponse]:
        """Send ``method url`` and follow its redirects, with a fresh body for each hop;
        the answer in ``answered`` (taken out of it), if any, is the first hop's, sent
        already (:func:`~dockerdrag.scheme_probe.speaks_tls`)."""

        def send_hop(
            hop_url: str, hop_headers: dict[str, str]
        ) -> contextlib.AbstractAsyncContextManager[aiohttp.ClientResponse]:
            if answered:
                return handed(answered.pop())
            data = body() if body is not None else None
            return self.http.exchange(method, hop_url, hop_headers, what, data)

        return follow_redirects(send_hop, url, headers, what)
