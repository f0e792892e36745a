"""How many bytes a TLS connection holds in the process before its body is read.

asyncio's TLS layer receives up to 256 KiB per ``recv`` into a buffer of that size kept
by each connection, and queues up to 256 KiB of received ciphertext (plus the ``recv``
that crossed the mark) before it stops reading the socket; aiohttp then holds the
plaintext. A pull bound by its own CPU (a fast link) finds every queue full: with 16
connections the TLS layer alone held about 0.6 MB per connection at the peak of a pull
of the benchmark's big image. Here a connection receives at most
:data:`TLS_READ_BYTES` at a time and queues at most :data:`TLS_QUEUE_BYTES` of
ciphertext; the rest waits in the kernel's socket buffer, as it does for plain HTTP.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    import asyncio

TLS_READ_BYTES: Final = 1 << 17
"""The most bytes a TLS connection receives at a time (asyncio's default: 256 KiB)."""

TLS_QUEUE_BYTES: Final = 1 << 16
"""Received ciphertext above which a TLS connection stops reading its socket until the
queue is down to a quarter (asyncio's default: 256 KiB)."""


def limit_tls_reads() -> None:
    """Every TLS connection of this process made from now on receives at most
    :data:`TLS_READ_BYTES` at a time (and keeps a buffer of that size, not 256 KiB).

    asyncio offers this only as an attribute of its TLS protocol class, so it applies to
    the whole process: the command sets it (:mod:`startup`); the library leaves it alone.
    Nothing happens on an asyncio without that attribute.
    """
    from asyncio import sslproto

    protocol = getattr(sslproto, "SSLProtocol", None)
    if protocol is not None and isinstance(getattr(protocol, "max_size", None), int):
        protocol.max_size = TLS_READ_BYTES


def limit_tls_queue(transport: asyncio.BaseTransport | None) -> None:
    """Let ``transport``, if it is a TLS one, queue at most :data:`TLS_QUEUE_BYTES` of
    ciphertext before it pauses reading; any other transport is left as it is."""
    setter: Callable[..., None] | None = getattr(transport, "set_read_buffer_limits", None)
    if setter is not None and transport is not None and transport.get_extra_info("sslcontext"):
        setter(high=TLS_QUEUE_BYTES)
