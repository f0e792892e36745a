"""A tiny HTTP(S) server that records every request's headers (test-only helper).

Used as a redirect target ("the CDN") to prove that credentials never cross hosts: point a
:func:`~.fault_proxy.redirect` fault at it, run the client, then look at
``recorder.requests[i].header("Authorization")``.  It answers with configurable bytes (by default
the same answer for every path), so a redirected blob download can also succeed; ``Range``
requests are honoured (206 / 416) so resumed downloads work too.

Like :class:`~.fault_proxy.FaultProxy` it runs on its own thread and event loop, binds a free
port on 127.0.0.1, and is used as a context manager::

    with HeaderRecorder(blob_bytes, content_type="application/octet-stream") as cdn:
        proxy.add(redirect(cdn.url + "{path}"), path=r"/blobs/")
        ...
        assert all(r.header("Authorization") is None for r in cdn.requests)

Pass ``certfile``/``keyfile`` (or a ready ``ssl_context``) to serve HTTPS.
"""

from __future__ import annotations

import re
import ssl
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from os import PathLike

from aiohttp import web

from .fault_proxy import ThreadedServer

__all__ = ["HeaderRecorder", "RecordedHeaders", "Reply"]

_RANGE_RE = re.compile(r"^bytes=(\d+)-(\d*)$")


@dataclass(frozen=True)
class Reply:
    """What the recorder answers: status, body and extra headers."""

    body: bytes = b""
    status: int = 200
    headers: tuple[tuple[str, str], ...] = ()
    content_type: str | None = "application/octet-stream"


@dataclass(frozen=True)
class RecordedHeaders:
    """One request seen by the recorder."""

    method: str
    path: str
    query: str
    headers: tuple[tuple[str, str], ...]
    body: bytes
    status: int

    def header(self, name: str) -> str | None:
        """First value of header ``name`` (case-insensitive), or None."""
        values = self.header_values(name)
        return values[0] if values else None

    def header_values(self, name: str) -> list[str]:
        """All values of header ``name`` in arrival order (repeated lines kept)."""
        lname = name.lower()
        return [v for k, v in self.headers if k.lower() == lname]


def _pairs(
    headers: Mapping[str, str] | Iterable[tuple[str, str]] | None,
) -> tuple[tuple[str, str], ...]:
    if headers is None:
        return ()
    items = headers.items() if isinstance(headers, Mapping) else headers
    return tuple((str(k), str(v)) for k, v in items)


class HeaderRecorder(ThreadedServer):
    """Records requests and answers them with configurable bytes.

    Args:
        body: default answer body for every path.
        status: default answer status.
        headers: extra answer headers (mapping or pairs).
        content_type: ``Content-Type`` of the answer (None: none sent).
        honor_range: answer ``Range: bytes=a-[b]`` on a 200 reply with 206 (or 416).
        certfile, keyfile: serve HTTPS with this certificate chain and key.
        ssl_context: serve HTTPS with this server context (instead of certfile/keyfile).
    """

    def __init__(
        self,
        body: bytes = b"",
        *,
        status: int = 200,
        headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
        content_type: str | None = "application/octet-stream",
        honor_range: bool = True,
        certfile: str | PathLike[str] | None = None,
        keyfile: str | PathLike[str] | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        if ssl_context is None and certfile is not None:
            ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ssl_context.load_cert_chain(certfile, keyfile)
        super().__init__(ssl_context=ssl_context)
        self._lock = threading.Lock()
        self._default = Reply(bytes(body), status, _pairs(headers), content_type)
        self._by_path: dict[str, Reply] = {}
        self._records: list[RecordedHeaders] = []
        self.honor_range = honor_range

    def respond(
        self,
        body: bytes = b"",
        *,
        status: int = 200,
        headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
        content_type: str | None = "application/octet-stream",
        path: str | None = None,
    ) -> None:
        """Set the answer for requests to exactly ``path`` (or the default answer if None)."""
        reply = Reply(bytes(body), status, _pairs(headers), content_type)
        with self._lock:
            if path is None:
                self._default = reply
            else:
                self._by_path[path] = reply

    @property
    def requests(self) -> list[RecordedHeaders]:
        """Snapshot of the requests recorded so far, in arrival order."""
        with self._lock:
            return list(self._records)

    def reset(self) -> None:
        """Forget recorded requests (answers are kept)."""
        with self._lock:
            self._records.clear()

    def _make_app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        return app

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read() if request.body_exists else b""
        with self._lock:
            reply = self._by_path.get(request.path, self._default)
        resp = self._answer(request, reply)
        record = RecordedHeaders(
            method=request.method,
            path=request.path,
            query=request.query_string,
            headers=tuple(request.headers.items()),
            body=body,
            status=resp.status,
        )
        with self._lock:
            self._records.append(record)
        return resp

    def _answer(self, request: web.Request, reply: Reply) -> web.Response:
        status, data = reply.status, reply.body
        extra: list[tuple[str, str]] = list(reply.headers)
        asked = request.headers.get("Range")
        if self.honor_range and status == 200 and asked is not None:
            m = _RANGE_RE.match(asked.strip())
            total = len(data)
            if m is not None and int(m[1]) < total:
                first = int(m[1])
                last = min(int(m[2]), total - 1) if m[2] else total - 1
                status, data = 206, data[first : last + 1]
                extra.append(("Content-Range", f"bytes {first}-{last}/{total}"))
            elif m is not None:
                status, data = 416, b""
                extra.append(("Content-Range", f"bytes */{total}"))
        resp = web.Response(status=status, body=data)
        if reply.content_type is not None and data:
            resp.headers["Content-Type"] = reply.content_type
        for name, value in extra:
            resp.headers.add(name, value)
        return resp
