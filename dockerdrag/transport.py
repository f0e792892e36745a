"""HTTP for registries: one aiohttp session, TLS, auth injection, redirects, retries.

This is the only module that touches aiohttp (it also sends :mod:`tokens`' token
requests); every aiohttp/OSError exception is mapped to :mod:`errors` here. Which
``Authorization`` a request carries, and what a 401 means, :mod:`auth` decides.

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
import json
import logging
import socket
import ssl
from collections.abc import AsyncIterable, AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import SplitResult, urljoin, urlsplit

import aiohttp
import anyio
import yarl

from .auth import RegistryAuth
from .conventions import docker_certs_d_dirs
from .credentials import Credentials
from .errors import (
    AuthenticationError,
    DockerDragError,
    NetworkError,
    NotFoundError,
    RegistryError,
    Remedy,
    Setting,
    TLSError,
)
from .events import RequestRetry
from .human_units import address
from .retry import (
    RETRY_STATUSES,
    RetriesExhausted,
    RetryPolicy,
    Unreachable,
    parse_retry_after,
)
from .safe_text import escape
from .tls_proxy import Proxies, TLSSettings, describe_exception, proxy_host
from .tokens import MAX_TOKEN_BODY, TokenReply

log = logging.getLogger("dockerdrag")

MAX_REDIRECTS = 10
MAX_ERROR_BODY = 1 << 20
READ_BUFFER_BYTES = 1 << 16  # aiohttp read_bufsize; blob bodies are never read in larger steps
USER_AGENT = "dockerdrag/0.1"

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


def redact_url(url: str) -> str:
    """A URL without its query string (signed CDN URLs carry secrets there)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}" + ("?…" if parts.query else "")


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
    """An aiohttp session plus per-registry auth; use as an async context manager.

    ``on_retry``, if set, hears of every request about to be retried.
    """

    def __init__(self, config: TransportConfig | None = None) -> None:
        self.config = config or TransportConfig()
        self.on_retry: Callable[[RequestRetry], None] | None = None
        self._session: aiohttp.ClientSession | None = None
        self._auth: dict[str, RegistryAuth] = {}
        self._schemes: dict[str, str] = {}
        self._scheme_locks: dict[str, anyio.Lock] = {}
        self._tls = TLSSettings(
            self.config.insecure_registries, self.config.ca_cert, self.config.certs_d_dirs
        )
        self._proxies = Proxies()

    async def __aenter__(self) -> Transport:
        timeout = aiohttp.ClientTimeout(
            total=None,
            connect=self.config.connect_timeout,
            sock_connect=self.config.connect_timeout,
            sock_read=self.config.read_timeout,
        )
        self._session = aiohttp.ClientSession(
            timeout=timeout,
            trust_env=False,  # no ~/.netrc credentials; proxies come from proxy_for()
            cookie_jar=aiohttp.DummyCookieJar(),  # cookies ignore ports: never carry them
            auto_decompress=False,
            # aiohttp buffers up to twice this per response (its default: 256 KiB, so
            # 512 KiB a connection); blob bodies are read in 64 KiB steps anyway.
            read_bufsize=READ_BUFFER_BYTES,
            headers={"User-Agent": USER_AGENT},
            # Every request passes its own ``ssl_for(host)``; the connector's default is
            # aiohttp's verifying context (built at its import), unless --ca-cert is to be
            # checked now: then it is the context every host without certs.d shares.
            connector=aiohttp.TCPConnector(
                limit=0,
                ssl=self._tls.default_context() if self.config.ca_cert is not None else True,
            ),
        )
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._session is not None:
            with anyio.CancelScope(shield=True):
                await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        """The underlying session (open only inside ``async with``)."""
        if self._session is None:
            raise RuntimeError("Transport is not open; use 'async with Transport(...)'")
        return self._session

    # ------------------------------------------------------------------ TLS and schemes

    def is_insecure(self, host: str) -> bool:
        """True if the user named ``host`` (host:port or host) as an insecure registry."""
        return self._tls.is_insecure(host)

    def ssl_for(self, host: str) -> ssl.SSLContext | bool:
        """The TLS settings for ``host``: verified (with certs.d CAs), or off if insecure."""
        return self._tls.for_host(host)

    def proxy_for(self, url: str) -> str | None:
        """The proxy for ``url`` (environment, else the OS's settings), or None."""
        return self._proxies.for_url(url)

    async def scheme_for(self, host: str) -> str:
        """``https``, or for insecure registries whichever of https/http the server speaks.

        A registry not named insecure is only ever reached over https: there is no
        fallback to plain HTTP.
        """
        if not self.is_insecure(host):
            return "https"
        if host in self._schemes:
            return self._schemes[host]
        lock = self._scheme_locks.setdefault(host, anyio.Lock())
        async with lock:
            if host not in self._schemes:
                self._schemes[host] = await self._probe_scheme(host)
        return self._schemes[host]

    async def _probe_scheme(self, host: str) -> str:
        """Like dockerd for an insecure registry: https (unverified) if it speaks TLS, else http."""
        url = f"https://{host}/v2/"
        proxy, proxy_headers = self._proxies.options(url)
        try:
            async with self.session.get(
                url, ssl=False, allow_redirects=False, proxy=proxy, proxy_headers=proxy_headers
            ) as response:
                await response.read()
            return "https"
        except (aiohttp.ClientSSLError, aiohttp.ServerDisconnectedError, aiohttp.ClientOSError):
            log.debug("insecure registry %s does not speak TLS; using plain http", host)
            return "http"
        except (aiohttp.ClientError, TimeoutError):
            return "https"

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
            )
        return self._auth[host]

    async def token_request(
        self,
        method: str,
        url: str,
        *,
        query: Sequence[tuple[str, str]],
        headers: Mapping[str, str],
        form: Mapping[str, str] | None,
    ) -> TokenReply:
        """One request to a token realm (the :class:`~dockerdrag.auth.TokenClient` side)."""
        host = urlsplit(url).netloc
        proxy, proxy_headers = self._proxies.options(url)
        log.debug("%s %s", method, redact_url(url))
        try:
            async with self.session.request(
                method,
                url,
                params=list(query) or None,
                data=dict(form) if form is not None else None,
                headers=dict(headers),
                allow_redirects=False,
                ssl=self.ssl_for(host),
                proxy=proxy,
                proxy_headers=proxy_headers,
            ) as raw:
                body = await _read_capped(raw, MAX_TOKEN_BODY + 1)
                retry_after = parse_retry_after(raw.headers.get("Retry-After"))
                return TokenReply(raw.status, body, retry_after)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise _connection_error(exc, url, "a token", proxy) from exc

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
        retry = self.config.retry
        attempt = 0
        max_attempts = attempts or retry.attempts
        while True:
            async with contextlib.AsyncExitStack() as stack:
                try:
                    if foreign_url is not None:
                        sending = self._anonymous(foreign_url, dict(headers or {}), what, method)
                    else:
                        sending = self._authorised(
                            host,
                            path,
                            what=what,
                            scope=scope,
                            headers=headers or {},
                            method=method,
                            body=body,
                        )
                    raw = await stack.enter_async_context(sending)
                except (TLSError, RetriesExhausted):
                    raise
                except Unreachable as exc:
                    if not exc.worth_retrying or attempt + 1 >= max_attempts:
                        if attempt == 0:
                            raise
                        raise NetworkError(f"{exc} (tried {attempt + 1} times)") from exc
                    delay = retry.delay(attempt, None)
                    if exc.refused:
                        delay = min(delay, retry.refused_max_delay)
                    self._announce_retry(exc.host, exc.port, what, exc.cause, attempt, delay)
                except NetworkError as exc:
                    if attempt + 1 >= max_attempts:
                        raise
                    delay = retry.delay(attempt, None)
                    target = urlsplit(foreign_url or f"//{host}")
                    self._announce_retry(
                        target.hostname or host, target.port or 443, what, str(exc), attempt, delay
                    )
                else:
                    if raw.status in RETRY_STATUSES and attempt + 1 < max_attempts:
                        retry_after = parse_retry_after(raw.headers.get("Retry-After"))
                        delay = retry.delay(attempt, retry_after)
                        where, port = raw.url.host or host, raw.url.port or 443
                        cause = f"HTTP {raw.status}"
                        self._announce_retry(
                            where, port, what, cause, attempt, delay, status=raw.status
                        )
                    elif 200 <= raw.status < 300 or raw.status in allow_statuses:
                        yield Response(raw, what)
                        return
                    else:
                        await self._raise_for_status(raw, host, what, not_found)
            attempt += 1
            await anyio.sleep(delay)

    def _announce_retry(
        self,
        host: str,
        port: int,
        what: str,
        cause: str,
        attempt: int,
        delay: float,
        *,
        status: int | None = None,
    ) -> None:
        """Log a coming retry (``INFO``, shown by ``-v``) and tell :attr:`on_retry`."""
        retries = self.config.retry.attempts - 1
        log.info(
            "%s on %s: %s; retry %d of %d in %.1f s",
            what,
            address(host, port),
            cause,
            attempt + 1,
            retries,
            delay,
        )
        if self.on_retry is not None:
            retry = RequestRetry(host, port, what, cause, attempt + 1, retries, delay, status)
            self.on_retry(retry)

    @contextlib.asynccontextmanager
    async def _authorised(
        self,
        host: str,
        path: str,
        *,
        what: str,
        scope: str,
        headers: Mapping[str, str],
        method: str,
        body: RequestBody | None = None,
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """Send the request with whatever Authorization ``host`` needs, answering its
        challenges (see :class:`~dockerdrag.auth.RequestAuthorization`); yield the first
        non-401 response.

        Only the registry's own 401s are answered: a host it redirected to that asks
        for authentication gets none (the credentials are not for it).
        """
        scheme = await self.scheme_for(host)
        url = f"{scheme}://{host}{path}"
        authorization = self.auth_for(host).for_request(scope, what, scheme)
        while True:
            request_headers = dict(headers)
            sent = await authorization.header(self)
            if sent:
                request_headers["Authorization"] = sent
            sending = self._follow_redirects(method, url, request_headers, what, body)
            async with sending as raw:
                if raw.status != 401:
                    authorization.accepted()
                    yield raw
                    return
                _refuse_foreign_challenge(raw, url, what)
                challenge_header = raw.headers.get("WWW-Authenticate", "")
            await authorization.refused(challenge_header, sent)

    def _anonymous(
        self, url: str, headers: dict[str, str], what: str, method: str
    ) -> contextlib.AbstractAsyncContextManager[aiohttp.ClientResponse]:
        """A request to a URL that is not a registry endpoint: no credentials, https only
        (unless its host was named insecure)."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise RegistryError(
                f"refusing to fetch {what} from {redact_url(url)}: not an http(s) URL"
            )
        if parts.scheme == "http" and not self.is_insecure(parts.netloc):
            remedy = Remedy(Setting.INSECURE, parts.netloc)
            raise RegistryError(
                f"refusing to fetch {what} over plain http from {parts.netloc}; name it with "
                f"{remedy} if you trust it"
            ).suggesting(remedy)
        headers.pop("Authorization", None)
        return self._follow_redirects(method, url, headers, what)

    @contextlib.asynccontextmanager
    async def _follow_redirects(
        self,
        method: str,
        url: str,
        headers: dict[str, str],
        what: str,
        body: RequestBody | None = None,
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """Send ``method url``, following up to MAX_REDIRECTS redirects.

        ``Authorization`` goes only to the origin it was made for (same scheme, host
        and port); a redirect from https to anything but https is refused.
        """
        origin = urlsplit(url)
        current = url
        for _ in range(MAX_REDIRECTS + 1):
            target = urlsplit(current)
            send = dict(headers)
            if (target.scheme, target.netloc) != (origin.scheme, origin.netloc):
                send.pop("Authorization", None)
            host = target.netloc
            proxy, proxy_headers = self._proxies.options(current)
            log.debug("%s %s", method, redact_url(current))
            handed_out = False
            try:
                async with self.session.request(
                    method,
                    current,
                    headers=send,
                    data=body() if body is not None else None,
                    allow_redirects=False,
                    ssl=self.ssl_for(host),
                    proxy=proxy,
                    proxy_headers=proxy_headers,
                ) as raw:
                    if raw.status in (301, 302, 303, 307, 308) and "Location" in raw.headers:
                        current = _redirect_target(current, raw.headers["Location"], origin, what)
                        continue
                    handed_out = True
                    yield raw
                    return
            except DockerDragError:
                raise
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                if handed_out:  # raised by the caller's own work (e.g. a full disk): not ours
                    raise
                raise _connection_error(exc, current, what, proxy) from exc
        raise RegistryError(f"more than {MAX_REDIRECTS} redirects while fetching {what}")

    async def _raise_for_status(
        self, raw: aiohttp.ClientResponse, host: str, what: str, not_found: type[NotFoundError]
    ) -> None:
        detail = ""
        try:
            body = await raw.content.read(MAX_ERROR_BODY)
            errors = json.loads(body).get("errors") if body else None
            if isinstance(errors, list) and errors and isinstance(errors[0], dict):
                detail = escape(str(errors[0].get("message") or errors[0].get("code") or ""))
        except (ValueError, AttributeError, aiohttp.ClientError, TimeoutError):
            pass
        suffix = f": {detail}" if detail else ""
        if raw.status == 404:
            raise not_found(f"{what} not found on {host}{suffix}")
        if raw.status in (401, 403):
            raise AuthenticationError(
                f"access to {what} on {host} denied (HTTP {raw.status}){suffix}"
            )
        raise RegistryError(f"{host} answered HTTP {raw.status} for {what}{suffix}", raw.status)


def _refuse_foreign_challenge(raw: aiohttp.ClientResponse, url: str, what: str) -> None:
    """Raise if the 401 ``raw`` came from another origin than ``url`` (after a redirect)."""
    asked, answered = yarl.URL(url), raw.url
    if (asked.scheme, asked.host, asked.port) == (answered.scheme, answered.host, answered.port):
        return
    raise AuthenticationError(
        f"{asked.authority} redirected the request for {what} to {answered.authority}, "
        "which asks for authentication (HTTP 401); credentials are only sent to the "
        "registry named and the token server it names"
    )


def _redirect_target(current: str, location: str, origin: SplitResult, what: str) -> str:
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


def _connection_error(
    exc: BaseException, url: str, what: str, proxy: str | None
) -> DockerDragError:
    """Map an aiohttp/OS exception of a request to ``url`` to our hierarchy."""
    parts = urlsplit(url)
    host = parts.netloc
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        reason = getattr(exc.certificate_error, "verify_message", None) or describe_exception(
            exc.certificate_error
        )
        ca_cert, insecure = Remedy(Setting.CA_CERT), Remedy(Setting.INSECURE, host)
        return TLSError(
            f"the TLS certificate of {host} could not be verified ({reason}); trust its CA "
            f"with {ca_cert} or /etc/docker/certs.d/{host}/ca.crt, or pass "
            f"{insecure} to skip verification for this registry"
        ).suggesting(ca_cert, insecure)
    if isinstance(exc, aiohttp.ClientSSLError):
        insecure = Remedy(Setting.INSECURE, host)
        return TLSError(
            f"the TLS handshake with {host} failed ({_plain_cause(exc)}); if it is a plain-HTTP "
            f"registry, name it with {insecure}"
        ).suggesting(insecure)
    if isinstance(exc, aiohttp.ClientProxyConnectionError):
        return NetworkError(
            f"cannot reach the proxy {proxy_host(proxy)} for {host}: {_plain_cause(exc)}"
        )
    via = f" via the proxy {proxy_host(proxy)}" if proxy else ""
    name = parts.hostname or host
    port = parts.port or (80 if parts.scheme == "http" else 443)
    if isinstance(exc, aiohttp.ClientConnectorDNSError) or (
        isinstance(exc, aiohttp.ClientConnectorError) and isinstance(exc.os_error, socket.gaierror)
    ):
        detail = exc.os_error.strerror or "unknown name"
        cause = f"the host name does not resolve ({detail}); check the name and the network"
        return Unreachable(name, port, what, cause, via=via, worth_retrying=False)
    refused = isinstance(exc, aiohttp.ClientConnectorError) and isinstance(
        exc.os_error, ConnectionRefusedError
    )
    return Unreachable(name, port, what, _plain_cause(exc), via=via, refused=refused)


def _plain_cause(exc: BaseException) -> str:
    """Why a connection failed, in words (aiohttp's texts carry object reprs and URLs)."""
    if isinstance(exc, aiohttp.ClientConnectorError):
        exc = exc.os_error
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (nothing listens on that port)"
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return "the connection timed out"
    if isinstance(exc, aiohttp.SocketTimeoutError):
        return "the server stopped answering (read timeout)"
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "the server closed the connection"
    if isinstance(exc, aiohttp.ClientResponseError):
        return f"HTTP {exc.status} {exc.message}"  # its text carries the URL: not shown
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror[0].lower() + exc.strerror[1:]
    return describe_exception(exc)


async def _read_capped(raw: aiohttp.ClientResponse, limit: int) -> bytes:
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
