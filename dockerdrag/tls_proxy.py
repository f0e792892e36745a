"""TLS contexts and proxies for registry connections (the set-up :mod:`http_session` uses).

* :class:`TLSSettings`: whether a registry is insecure (no TLS verification, plain HTTP
  allowed), and each verified host's context: the system store (OpenSSL's with
  ``SSL_CERT_FILE``/``SSL_CERT_DIR`` on Linux, the OS's on macOS and Windows:
  :func:`~dockerdrag.conventions.trusting_context`), ``--ca-cert``, and Docker's
  ``certs.d/<host:port>/`` (``*.crt`` CAs, ``*.cert`` + ``*.key`` client pairs;
  :func:`~dockerdrag.conventions.docker_certs_d_dirs`).
* :class:`Proxies`: the proxy for a URL from ``HTTP(S)_PROXY``/``NO_PROXY``, or where no
  variable is set from the OS's proxy settings and their exceptions (Windows registry,
  macOS settings); a proxy URL's userinfo becomes a ``Proxy-Authorization`` header.
"""

from __future__ import annotations

import ssl
import urllib.request
from pathlib import Path
from urllib.parse import unquote, urlsplit

from .ca_preload import take_loaded
from .conventions import certs_d_name, trusting_context
from .credentials import Credentials
from .errors import TLSError, UsageError


def describe_exception(exc: BaseException) -> str:
    """An exception's text (or its type's name), cut to 300 characters."""
    text = str(exc) or type(exc).__name__
    return text if len(text) < 300 else text[:300] + "…"


class TLSSettings:
    """Which registries are insecure, and the verifying context of each other host.

    Loading the system CAs is the costly part of a context, so every host without a
    ``certs.d`` directory shares one context (the system store plus ``ca_cert``), built
    on first use; a host with one gets its own, built once, with that directory's CAs
    and client certificates added.
    """

    def __init__(
        self,
        insecure_registries: frozenset[str],
        ca_cert: Path | None,
        certs_d_dirs: tuple[Path, ...],
    ) -> None:
        self._insecure = insecure_registries
        self._ca_cert = ca_cert
        self._certs_d_dirs = certs_d_dirs
        self._shared: ssl.SSLContext | None = None
        self._by_host: dict[str, ssl.SSLContext | bool] = {}

    def is_insecure(self, host: str) -> bool:
        """True if the user named ``host`` (host:port or host) as an insecure registry."""
        return host in self._insecure or host.rsplit(":", 1)[0] in self._insecure

    def default_context(self) -> ssl.SSLContext:
        """The verifying context of hosts without ``certs.d``: the system store plus
        ``ca_cert`` (built on the first call, then the same object)."""
        if self._shared is None:
            self._shared = self._new_context()
        return self._shared

    def for_host(self, host: str) -> ssl.SSLContext | bool:
        """The TLS settings for ``host``: verified (with certs.d CAs), or off if insecure."""
        if host in self._by_host:
            return self._by_host[host]
        setting: ssl.SSLContext | bool = False
        if not self.is_insecure(host):
            host_dirs = [base / certs_d_name(host) for base in self._certs_d_dirs]
            host_dirs = [host_dir for host_dir in host_dirs if host_dir.is_dir()]
            context = self._new_context() if host_dirs else self.default_context()
            for host_dir in host_dirs:
                _load_certs_d(context, host_dir)
            setting = context
        self._by_host[host] = setting
        return setting

    def _new_context(self) -> ssl.SSLContext:
        context = take_loaded()  # the command's first one is built while it starts
        if context is None:
            context = trusting_context()
        if self._ca_cert is not None:
            try:
                context.load_verify_locations(cafile=str(self._ca_cert))
            except (OSError, ssl.SSLError) as exc:
                raise UsageError(
                    f"cannot load the CA certificate {self._ca_cert}: {describe_exception(exc)}"
                ) from exc
        return context

    def fallback(self) -> ssl.SSLContext | bool:
        """The setting of a connection that names none: ``True`` (aiohttp's own verifying
        context, built when it is imported: no third context loads the CAs at start-up),
        or with ``ca_cert`` the context every host without certs.d shares, built now so a
        bad file fails before any request."""
        return self.default_context() if self._ca_cert is not None else True


class Proxies:
    """The environment's proxies, read once; where it names none, the OS's settings."""

    def __init__(self) -> None:
        self._proxies = urllib.request.getproxies()
        self._os_settings = not urllib.request.getproxies_environment()

    def for_url(self, url: str) -> str | None:
        """The proxy for ``url`` from ``HTTP_PROXY``/``HTTPS_PROXY``/``NO_PROXY`` (else
        from the OS's settings and their exceptions), or None."""
        parts = urlsplit(url)
        proxy = self._proxies.get(parts.scheme)
        if not proxy or self._bypass(parts.netloc):
            return None
        return proxy if "://" in proxy else f"http://{proxy}"

    def options(self, url: str) -> tuple[str | None, dict[str, str] | None]:
        """``(proxy, proxy_headers)`` for aiohttp: userinfo becomes Proxy-Authorization."""
        proxy = self.for_url(url)
        parts = urlsplit(proxy or "")
        if proxy is None or parts.username is None:
            return proxy, None
        credentials = Credentials(unquote(parts.username), unquote(parts.password or ""))
        netloc = parts.netloc.rsplit("@", 1)[1]
        bare = parts._replace(netloc=netloc).geturl()
        return bare, {"Proxy-Authorization": credentials.basic_header()}

    def _bypass(self, netloc: str) -> bool:
        """Whether ``NO_PROXY`` exempts ``netloc`` (the stdlib matcher: host, domain suffix,
        host:port, ``*``), or for proxies from the OS's settings, the OS's exceptions."""
        if self._os_settings:
            exempt: bool = urllib.request.proxy_bypass(netloc)
            return exempt
        matcher = urllib.request.proxy_bypass_environment  # type: ignore[attr-defined]
        bypass: bool = matcher(netloc, self._proxies)
        return bypass


def proxy_host(proxy: str | None) -> str:
    """A proxy URL's host:port (its userinfo may hold a password)."""
    parts = urlsplit(proxy or "")
    return parts.hostname + (f":{parts.port}" if parts.port else "") if parts.hostname else "?"


def _load_certs_d(context: ssl.SSLContext, host_dir: Path) -> None:
    """Add ``host_dir``'s ``*.crt`` CAs and ``*.cert``/``*.key`` client pairs, as dockerd does."""
    try:
        for ca_file in sorted(host_dir.glob("*.crt")):
            context.load_verify_locations(cafile=str(ca_file))
        for cert in sorted(host_dir.glob("*.cert")):
            key = cert.with_suffix(".key")
            if not key.exists():
                raise TLSError(f"missing key {key} for client certificate {cert}")
            context.load_cert_chain(str(cert), str(key))
        for key in sorted(host_dir.glob("*.key")):
            if not key.with_suffix(".cert").exists():
                raise TLSError(f"missing client certificate {key.with_suffix('.cert')} for {key}")
    except (OSError, ssl.SSLError) as exc:
        raise TLSError(
            f"cannot load the certificates in {host_dir}: {describe_exception(exc)}"
        ) from exc
