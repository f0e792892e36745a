"""An https front (a proxy, a CDN stand-in) trusted through a test registry's own CA."""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import Iterator

from .fault_proxy import FaultProxy
from .registry_server import RegistryServer


def server_tls_context(server: RegistryServer) -> ssl.SSLContext:
    """A server-side context with a certificate from ``server``'s CA (for proxies, CDNs)."""
    assert server.ca is not None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return context


@contextlib.contextmanager
def tls_proxy(server: RegistryServer) -> Iterator[FaultProxy]:
    """A FaultProxy serving https (same CA) in front of an https registry."""
    with FaultProxy(
        server.url,
        ssl_context=server_tls_context(server),
        upstream_ssl=server.ssl_context() or True,
    ) as proxy:
        yield proxy
