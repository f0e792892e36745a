"""What a failed registry request means, as an error of :mod:`errors` a user can act on.

* :func:`connection_error`: an aiohttp/OS exception of a request (certificate, handshake,
  proxy, a name that does not resolve, a refused or timed-out connection) as a
  :class:`~dockerdrag.errors.TLSError`, a :class:`~dockerdrag.errors.NetworkError` or an
  :class:`~dockerdrag.retry.Unreachable` (which says whether a retry may help).
* :func:`status_error`: an HTTP error status as ``not_found`` (404),
  :class:`~dockerdrag.errors.AuthenticationError` (401/403) or
  :class:`~dockerdrag.errors.RegistryError`, with the registry's own message (escaped).
"""

from __future__ import annotations

import json
import socket
from urllib.parse import urlsplit

import aiohttp

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
from .retry import Unreachable
from .safe_text import escape
from .tls_proxy import describe_exception, proxy_host

MAX_ERROR_BODY = 1 << 20
"""The most of an error response's body read for its message."""


def connection_error(exc: BaseException, url: str, what: str, proxy: str | None) -> DockerDragError:
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


async def status_error(
    raw: aiohttp.ClientResponse, host: str, what: str, not_found: type[NotFoundError]
) -> DockerDragError:
    """The error an HTTP error status of ``host`` means (its body's first error message,
    if it sends one in the registry API's form, is added)."""
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
        return not_found(f"{what} not found on {host}{suffix}")
    if raw.status in (401, 403):
        return AuthenticationError(f"access to {what} on {host} denied (HTTP {raw.status}){suffix}")
    return RegistryError(f"{host} answered HTTP {raw.status} for {what}{suffix}", raw.status)
