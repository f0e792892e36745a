"""HTTP for registries: one aiohttp session, TLS, auth injection, redirects, retries.

This is the only module (besides :mod:`auth`'s token fetch) that touches
aiohttp; every aiohttp/OSError exception is mapped to :mod:`errors` here.

Rules it enforces:

* TLS is verified unless the registry was named insecure; plain HTTP only for
  insecure registries; no https -> http downgrade on redirects.
* ``Authorization`` goes only to the registry host it was made for: it is
  dropped on any redirect that changes scheme, host or port.
* Retries with exponential backoff (full jitter) on connection errors and
  408/429/500/502/503/504, honouring ``Retry-After``; never on other statuses.
* No total timeout: a blob body may take as long as it needs, but a stalled
  read fails after ``read_timeout``.
"""

from __future__ import annotations

import contextlib
import email.utils
import json
import logging
import random
import ssl
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import aiohttp
import anyio

from .auth import Credentials, RegistryAuth, load_docker_credentials, parse_www_authenticate
from .errors import (
    AuthenticationError,
    DockerDragError,
    NetworkError,
    NotFoundError,
    RegistryError,
    TLSError,
)

log = logging.getLogger("dockerdrag")

RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
MAX_REDIRECTS = 10
MAX_ERROR_BODY = 1 << 20
USER_AGENT = "dockerdrag/0.1"
CERTS_D_DIRS = (Path("/etc/docker/certs.d"),)


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry a request that failed transiently."""

    attempts: int = 5
    base_delay: float = 1.0
    max_delay: float = 30.0
    max_retry_after: float = 60.0

    def delay(self, attempt: int, retry_after: float | None) -> float:
        """Seconds to wait before retry number ``attempt`` (0-based)."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_retry_after)
        return random.uniform(0, min(self.max_delay, self.base_delay * 2**attempt))


@dataclass(frozen=True)
class TransportConfig:
    """Connection settings shared by every request of a client."""

    insecure_registries: frozenset[str] = frozenset()
    ca_cert: Path | None = None
    credentials: Mapping[str, Credentials] = field(default_factory=dict)
    use_docker_config: bool = True
    retry: RetryPolicy = RetryPolicy()
    connect_timeout: float = 30.0
    read_timeout: float = 60.0
    certs_d_dirs: tuple[Path, ...] = CERTS_D_DIRS


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


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
                f"connection broke while reading {self.what}: {_describe(exc)}"
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


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) < 300 else text[:300] + "…"


class Transport:
    """An aiohttp session plus per-registry auth; use as an async context manager."""

    def __init__(self, config: TransportConfig | None = None) -> None:
        self.config = config or TransportConfig()
        self._session: aiohttp.ClientSession | None = None
        self._auth: dict[str, RegistryAuth] = {}
        self._schemes: dict[str, str] = {}
        self._ssl: dict[str, ssl.SSLContext | bool] = {}
        self._scheme_locks: dict[str, anyio.Lock] = {}

    async def __aenter__(self) -> Transport:
        timeout = aiohttp.ClientTimeout(
            total=None,
            connect=self.config.connect_timeout,
            sock_connect=self.config.connect_timeout,
            sock_read=self.config.read_timeout,
        )
        self._session = aiohttp.ClientSession(
            timeout=timeout,
            trust_env=True,
            auto_decompress=False,
            headers={"User-Agent": USER_AGENT},
            connector=aiohttp.TCPConnector(limit=0, ssl=self._default_ssl()),
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
        insecure = self.config.insecure_registries
        return host in insecure or host.rsplit(":", 1)[0] in insecure

    def _default_ssl(self) -> ssl.SSLContext:
        context = ssl.create_default_context()
        if self.config.ca_cert is not None:
            try:
                context.load_verify_locations(cafile=str(self.config.ca_cert))
            except (OSError, ssl.SSLError) as exc:
                raise TLSError(f"cannot load CA certificate {self.config.ca_cert}: {exc}") from exc
        return context

    def ssl_for(self, host: str) -> ssl.SSLContext | bool:
        """The TLS settings for ``host``: verified (with certs.d CAs), or off if insecure."""
        if host in self._ssl:
            return self._ssl[host]
        if self.is_insecure(host):
            setting: ssl.SSLContext | bool = False
        else:
            context = self._default_ssl()
            for base in self.config.certs_d_dirs:
                host_dir = base / host
                if host_dir.is_dir():
                    for ca_file in sorted(host_dir.glob("*.crt")):
                        context.load_verify_locations(cafile=str(ca_file))
                    for cert in sorted(host_dir.glob("*.cert")):
                        key = cert.with_suffix(".key")
                        if key.exists():
                            context.load_cert_chain(str(cert), str(key))
            setting = context
        self._ssl[host] = setting
        return setting

    async def scheme_for(self, host: str) -> str:
        """``https``, or for insecure registries whichever of https/http the server speaks."""
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
        try:
            async with self.session.get(
                f"https://{host}/v2/", ssl=False, allow_redirects=False
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
        """The auth state of ``host`` (credentials looked up once)."""
        if host not in self._auth:
            credentials = self.config.credentials.get(host)
            if credentials is None and self.config.use_docker_config:
                credentials = load_docker_credentials(host)
            self._auth[host] = RegistryAuth(
                registry_host=host,
                credentials=credentials,
                credentials_allowed=True,
                realm_trusted=frozenset(self.config.insecure_registries),
            )
        return self._auth[host]

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
    ) -> AsyncIterator[Response]:
        """Send a request to registry ``host`` and yield the successful response.

        Handles auth challenges, redirects and retries; maps every failure to a
        DockerDragError. ``allow_statuses`` are non-2xx statuses handed to the caller.
        """
        retry = self.config.retry
        attempt = 0
        while True:
            async with contextlib.AsyncExitStack() as stack:
                try:
                    raw = await stack.enter_async_context(
                        self._authorised(
                            host, path, what=what, scope=scope, headers=headers or {}, method=method
                        )
                    )
                except TLSError:
                    raise
                except NetworkError as exc:
                    if attempt + 1 >= retry.attempts:
                        raise
                    delay = retry.delay(attempt, None)
                    log.debug("%s: %s, retrying in %.1fs", what, exc, delay)
                else:
                    if raw.status in RETRY_STATUSES and attempt + 1 < retry.attempts:
                        retry_after = parse_retry_after(raw.headers.get("Retry-After"))
                        delay = retry.delay(attempt, retry_after)
                        log.debug("%s: HTTP %s, retrying in %.1fs", what, raw.status, delay)
                    elif 200 <= raw.status < 300 or raw.status in allow_statuses:
                        yield Response(raw, what)
                        return
                    else:
                        await self._raise_for_status(raw, host, what, not_found)
            attempt += 1
            await anyio.sleep(delay)

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
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        auth = self.auth_for(host)
        scheme = await self.scheme_for(host)
        url = f"{scheme}://{host}{path}"
        auth.credentials_allowed = scheme == "https" or self.is_insecure(host)
        retried_for: set[str] = set()
        while True:
            request_headers = dict(headers)
            authorization = await auth.header_for(scope, self.session)
            if authorization:
                request_headers["Authorization"] = authorization
            async with self._follow_redirects(method, url, request_headers, what) as raw:
                if raw.status != 401:
                    yield raw
                    return
                reason = self._handle_unauthorised(raw, auth, scope, retried_for, host, what)
                scope = reason or scope

    def _handle_unauthorised(
        self,
        raw: aiohttp.ClientResponse,
        auth: RegistryAuth,
        scope: str,
        retried_for: set[str],
        host: str,
        what: str,
    ) -> str | None:
        """Update auth after a 401; return a new scope to ask for, or raise."""
        challenges = parse_www_authenticate(raw.headers.get("WWW-Authenticate", ""))
        challenge = next((c for c in challenges if c.scheme == "bearer"), None) or next(
            (c for c in challenges if c.scheme == "basic"), None
        )
        if challenge is None:
            raise AuthenticationError(
                f"{host} requires authentication but sent no usable challenge"
            )
        error = challenge.params.get("error", "")
        if auth.challenge is None or auth.challenge.scheme != challenge.scheme:
            reason = "challenge"
        elif error == "invalid_token":
            reason = "invalid_token"
        elif error == "insufficient_scope":
            reason = "insufficient_scope"
        else:
            reason = "denied"
        if reason in retried_for or reason == "denied":
            who = "the given credentials" if auth.credentials else "anonymous access"
            raise AuthenticationError(
                f"authentication to {host} failed for {what}: the registry refused {who}"
                + (f" ({error})" if error else "")
            )
        retried_for.add(reason)
        stored = (
            challenge
            if challenge.scheme == "basic"
            else type(challenge)(
                challenge.scheme,
                {k: v for k, v in challenge.params.items() if k in ("realm", "service")},
            )
        )
        auth.challenge = stored
        if challenge.scheme == "basic" and (
            auth.credentials is None or not auth.credentials.username
        ):
            raise AuthenticationError(f"{host} requires a username and password for {what}")
        auth.invalidate(scope)
        if reason == "insufficient_scope" and challenge.params.get("scope"):
            return challenge.params["scope"]
        return None

    @contextlib.asynccontextmanager
    async def _follow_redirects(
        self, method: str, url: str, headers: dict[str, str], what: str
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        origin = urlsplit(url)
        current = url
        for _ in range(MAX_REDIRECTS + 1):
            target = urlsplit(current)
            send = dict(headers)
            if (target.scheme, target.netloc) != (origin.scheme, origin.netloc):
                send.pop("Authorization", None)
            host = target.netloc
            log.debug("%s %s", method, redact_url(current))
            try:
                async with self.session.request(
                    method, current, headers=send, allow_redirects=False, ssl=self.ssl_for(host)
                ) as raw:
                    if raw.status in (301, 302, 303, 307, 308) and "Location" in raw.headers:
                        location = urljoin(current, raw.headers["Location"])
                        if origin.scheme == "https" and urlsplit(location).scheme != "https":
                            raise RegistryError(
                                f"refusing a redirect from https to {urlsplit(location).scheme} "
                                f"while fetching {what}"
                            )
                        current = location
                        continue
                    yield raw
                    return
            except DockerDragError:
                raise
            except aiohttp.ClientConnectorCertificateError as exc:
                raise TLSError(
                    f"TLS certificate of {host} could not be verified "
                    f"({_describe(exc.certificate_error)}); "
                    "pass --ca-cert FILE, or --insecure "
                    f"{host} if you trust this registry without verification"
                ) from exc
            except aiohttp.ClientSSLError as exc:
                raise TLSError(
                    f"TLS handshake with {host} failed ({_describe(exc)}); if it is a plain-HTTP "
                    f"registry, name it with --insecure {host}"
                ) from exc
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                raise NetworkError(
                    f"cannot reach {host} while fetching {what}: {_describe(exc)}"
                ) from exc
        raise RegistryError(f"too many redirects while fetching {what}")

    async def _raise_for_status(
        self, raw: aiohttp.ClientResponse, host: str, what: str, not_found: type[NotFoundError]
    ) -> None:
        detail = ""
        try:
            body = await raw.content.read(MAX_ERROR_BODY)
            errors = json.loads(body).get("errors") if body else None
            if isinstance(errors, list) and errors and isinstance(errors[0], dict):
                detail = str(errors[0].get("message") or errors[0].get("code") or "")
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
