"""Connections opened before the requests that will use them (a far registry's layers).

Over a far link every new connection pays a round trip (more with TLS) before its first
request can go out. :class:`ConnectionsAhead` opens connections to a URL's host in the
background and hands each to the session's pool as soon as it is up, without sending
anything on it (so no credentials, nor any request, go anywhere): a request sent after
that takes it from the pool and skips the set-up, one sent before opens its own as it
would have anyway. A connection that fails to open is let go (logged at debug level).
The tasks are cancelled when the session closes.

aiohttp opens a connection only for a request; :func:`_open_one` asks the session's
connector for a new one the way a request does (a connection already idle in the pool
is left there, for the request that comes first) and releases it into the pool.
"""

from __future__ import annotations

import asyncio
import logging
import ssl

import aiohttp
import anyio
import yarl
from aiohttp.connector import Connection

log = logging.getLogger("dockerdrag")


class ConnectionsAhead:
    """Background tasks that each open one connection into an aiohttp session's pool."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()

    def open(
        self, session: aiohttp.ClientSession, url: str, tls: ssl.SSLContext | bool, count: int
    ) -> None:
        """Start opening ``count`` connections for ``url`` (its scheme, host and port;
        ``tls``: the ``ssl`` its requests are sent with, so that they find them)."""
        loop = asyncio.get_running_loop()
        for _ in range(count):
            task = loop.create_task(_open_one(session, url, tls))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def cancel(self) -> None:
        """Stop every connection still opening, and wait until they have stopped."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)


async def _open_one(session: aiohttp.ClientSession, url: str, tls: ssl.SSLContext | bool) -> None:
    connector = session.connector
    if connector is None:
        return
    loop = asyncio.get_running_loop()
    request = aiohttp.ClientRequest("GET", yarl.URL(url), loop=loop, ssl=tls, session=session)
    timeout = session.timeout
    try:
        with anyio.fail_after(timeout.connect):
            protocol = await connector._create_connection(request, [], timeout)
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        log.debug("no connection opened ahead to %s: %s", url, exc)
        return
    Connection(connector, request.connection_key, protocol, loop).release()


__all__ = ["ConnectionsAhead"]
