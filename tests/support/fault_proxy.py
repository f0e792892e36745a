"""A fault-injecting reverse proxy for registry tests (test-only helper).

:class:`FaultProxy` sits between the client under test and a real upstream server (usually a
``docker-registry`` on 127.0.0.1).  By default it is transparent: method, path, query string,
headers (repeated ones such as several ``Accept`` lines are kept, hop-by-hop ones dropped, ``Host``
rewritten) and body go upstream, and the answer is streamed back byte for byte (no decompression).
``Location`` headers pointing at the upstream are rewritten to point at the proxy, so upload URLs
and same-host redirects stay on the proxy.

Faults are attached with :meth:`FaultProxy.add`: a :class:`Rule` matches requests by method and a
path regex and applies its faults to the first ``times`` matching requests; later requests pass
through.  Rules are checked in the order they were added and the first live one wins, so a
sequence such as "503, then a connection reset after 1 KiB, then success" is three ``add`` calls.
Several faults given to one ``add`` act together on the same request (``throttle`` + ``flip_byte``).

Fault factories (each returns an immutable fault value):

- :func:`status` -- answer with a status code, optional ``Retry-After`` and body (no upstream).
- :func:`redirect` -- answer with a redirect (``{path}``/``{query}`` in the target are filled in).
- :func:`replace_body` -- answer 200 with the given bytes (e.g. manifests the registry refuses).
- :func:`ignore_range` -- strip ``Range``/``If-Range`` so the upstream answers 200, full body.
- :func:`swap_body` -- serve another upstream path's bytes (or given bytes) with these headers.
- :func:`wrong_content_range` -- make a 206 answer's ``Content-Range`` lie.
- :func:`lie_content_length` -- declare ``Content-Length`` = real length + delta.
- :func:`strip_content_length` -- drop ``Content-Length``; the body goes out chunked.
- :func:`flip_byte` -- invert one byte of the body as served.
- :func:`drop_after` -- send headers and ``n`` body bytes, then reset the TCP connection.
- :func:`stall` -- pause the body for a while after ``after_bytes`` bytes.
- :func:`delay` -- hold the request back for a while before it goes upstream (a far registry).
- :func:`throttle` -- send the body at ``bytes_per_second``.
- :func:`drop_request_after` -- read ``n`` bytes of the request body, then reset the
  connection; nothing reaches the upstream (as behind a proxy that buffers request bodies).

The server runs on its own thread and event loop (:class:`ThreadedServer`), so sync tests and
async tests (any event loop) can use it the same way; everything a test calls is thread-safe.

Example::

    with FaultProxy(registry_url) as proxy:
        proxy.add(status(503, retry_after=1), path=r"/blobs/sha256:", times=2)
        proxy.add(drop_after(1024), path=rf"/blobs/sha256:{hex_}$")
        pull(f"{proxy.host}/library/app:1")             # the client sees only the proxy
        assert [r.status for r in proxy.requests_for(r"/blobs/")][:2] == [503, 503]
        assert proxy.bytes_served(r"/blobs/") >= size
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import copy
import dataclasses
import fcntl
import re
import socket
import ssl
import struct
import termios
import threading
from collections.abc import AsyncGenerator, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import format_datetime
from types import TracebackType
from typing import Literal, Self, TypeAlias

import aiohttp
from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from multidict import CIMultiDict
from yarl import URL

__all__ = [
    "Delay",
    "DropAfter",
    "DropRequestAfter",
    "Fault",
    "FaultProxy",
    "FlipByte",
    "IgnoreRange",
    "LieContentLength",
    "RecordedRequest",
    "Redirect",
    "ReplaceBody",
    "Rule",
    "Stall",
    "Status",
    "StripContentLength",
    "SwapBody",
    "ThreadedServer",
    "Throttle",
    "WrongContentRange",
    "delay",
    "drop_after",
    "drop_request_after",
    "flip_byte",
    "ignore_range",
    "lie_content_length",
    "redirect",
    "replace_body",
    "stall",
    "status",
    "strip_content_length",
    "swap_body",
    "throttle",
    "wrong_content_range",
]

HeaderPairs: TypeAlias = tuple[tuple[str, str], ...]
HeadersLike: TypeAlias = Mapping[str, str] | Iterable[tuple[str, str]] | None

# RFC 9110 section 7.6.1 plus headers the proxy recomputes itself (Host, framing, Expect).
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
        "expect",
    }
)
# Headers aiohttp's client would otherwise invent; the upstream must see only the client's.
_SKIP_AUTO_HEADERS = ("Accept", "Accept-Encoding", "User-Agent", "Content-Type")
_CONTENT_RANGE_RE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")
_LISTEN_HOST = "127.0.0.1"


# --------------------------------------------------------------------------------------------
# Background server plumbing
# --------------------------------------------------------------------------------------------


class ThreadedServer:
    """An ``aiohttp.web`` server on 127.0.0.1 (free port) run by its own thread and event loop.

    Subclasses implement :meth:`_make_app` and may override the async :meth:`_setup` /
    :meth:`_teardown` hooks, which run on the server's loop.  Use as a context manager, or call
    :meth:`start` / :meth:`stop`.  Stopping closes every connection (in-flight handlers are
    cancelled after a short grace period) and joins the thread.
    """

    _SHUTDOWN_GRACE = 0.5

    def __init__(self, *, ssl_context: ssl.SSLContext | None = None) -> None:
        self._ssl_context = ssl_context
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_event: asyncio.Event | None = None
        self._port: int | None = None
        self._accepted = 0

    # -- addresses ---------------------------------------------------------------------------
    @property
    def port(self) -> int:
        """The TCP port the server listens on (only while running)."""
        if self._port is None:
            raise RuntimeError(f"{type(self).__name__} is not running")
        return self._port

    @property
    def host(self) -> str:
        """``"127.0.0.1:PORT"``, i.e. what goes in front of a repository name."""
        return f"{_LISTEN_HOST}:{self.port}"

    @property
    def scheme(self) -> str:
        """``"https"`` when serving TLS, else ``"http"``."""
        return "https" if self._ssl_context is not None else "http"

    @property
    def url(self) -> str:
        """Base URL without a trailing slash, e.g. ``"http://127.0.0.1:41234"``."""
        return f"{self.scheme}://{self.host}"

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> Self:
        """Start the thread and wait until the socket is listening."""
        if self._thread is not None:
            raise RuntimeError(f"{type(self).__name__} already started")
        started: concurrent.futures.Future[int] = concurrent.futures.Future()
        thread = threading.Thread(
            target=self._thread_main, args=(started,), name=type(self).__name__, daemon=True
        )
        self._thread = thread
        thread.start()
        try:
            self._port = started.result(timeout=30)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop serving, close all connections and join the thread (idempotent)."""
        thread, loop, stop_event = self._thread, self._loop, self._stop_event
        if thread is None:
            return
        if loop is not None and stop_event is not None:
            with contextlib.suppress(RuntimeError):  # loop already gone (startup failed)
                loop.call_soon_threadsafe(stop_event.set)
        thread.join(timeout=30)
        if thread.is_alive():
            raise RuntimeError(f"{type(self).__name__} thread did not stop")
        self._thread = None
        self._loop = None
        self._stop_event = None
        self._port = None

    @property
    def connections_accepted(self) -> int:
        """TCP connections accepted so far (whether or not a request came on them)."""
        return self._accepted

    @property
    def running(self) -> bool:
        """Whether the server thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- hooks -------------------------------------------------------------------------------
    def _make_app(self) -> web.Application:
        raise NotImplementedError

    async def _setup(self) -> None:
        """Runs on the server loop before the socket opens."""

    async def _teardown(self) -> None:
        """Runs on the server loop after all connections are closed."""

    def _count_connections(self, runner: web.AppRunner) -> None:
        """Count each connection the server accepts: aiohttp tells its server of each one
        (``connection_made``), before any request comes on it."""
        server = runner.server
        assert server is not None
        made = server.connection_made

        def counted(handler: RequestHandler, transport: asyncio.Transport) -> None:
            self._accepted += 1  # on the server's loop; an int is read whole from any thread
            made(handler, transport)

        server.connection_made = counted  # type: ignore[method-assign]

    # -- thread body -------------------------------------------------------------------------
    def _thread_main(self, started: concurrent.futures.Future[int]) -> None:
        try:
            asyncio.run(self._main(started))
        except BaseException as exc:
            if started.done():
                raise  # reported by threading.excepthook (pytest turns it into an error)
            started.set_exception(exc)

    async def _main(self, started: concurrent.futures.Future[int]) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop_event = asyncio.Event()
        await self._setup()
        try:
            runner = web.AppRunner(
                self._make_app(),
                access_log=None,
                handle_signals=False,
                shutdown_timeout=self._SHUTDOWN_GRACE,
                handler_cancellation=True,
            )
            await runner.setup()
            self._count_connections(runner)
            try:
                site = web.TCPSite(runner, _LISTEN_HOST, 0, ssl_context=self._ssl_context)
                await site.start()
                port = runner.addresses[0][1]
                started.set_result(int(port))
                await self._stop_event.wait()
            finally:
                await runner.cleanup()
        finally:
            await self._teardown()


# --------------------------------------------------------------------------------------------
# Faults
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Status:
    """Answer ``code`` without asking the upstream (see :func:`status`)."""

    code: int
    retry_after: str | None = None
    body: bytes = b""
    headers: HeaderPairs = ()


@dataclass(frozen=True)
class Redirect:
    """Answer with a redirect to ``to_url`` (see :func:`redirect`)."""

    to_url: str
    code: int = 307


@dataclass(frozen=True)
class ReplaceBody:
    """Answer ``code`` with fixed bytes, upstream not asked (see :func:`replace_body`)."""

    body: bytes
    content_type: str | None = None
    headers: HeaderPairs = ()
    code: int = 200


@dataclass(frozen=True)
class IgnoreRange:
    """Strip ``Range`` and ``If-Range`` before forwarding (see :func:`ignore_range`)."""


@dataclass(frozen=True)
class SwapBody:
    """Serve another path's (or given) bytes under this answer's headers (see :func:`swap_body`)."""

    source: str | bytes


@dataclass(frozen=True)
class WrongContentRange:
    """Falsify a 206 answer's ``Content-Range`` (see :func:`wrong_content_range`)."""

    kind: Literal["start", "total"] = "start"
    value: str | None = None


@dataclass(frozen=True)
class LieContentLength:
    """Declare ``Content-Length`` = actual + ``delta`` (see :func:`lie_content_length`)."""

    delta: int


@dataclass(frozen=True)
class StripContentLength:
    """Send the body chunked, without ``Content-Length`` (see :func:`strip_content_length`)."""


@dataclass(frozen=True)
class FlipByte:
    """Invert the body byte at ``offset`` (see :func:`flip_byte`)."""

    offset: int


@dataclass(frozen=True)
class DropAfter:
    """Abort the connection after ``n_bytes`` of body (see :func:`drop_after`)."""

    n_bytes: int
    rst: bool = True


@dataclass(frozen=True)
class DropRequestAfter:
    """Reset the connection after ``n_bytes`` of request body (see :func:`drop_request_after`)."""

    n_bytes: int


@dataclass(frozen=True)
class Stall:
    """Pause ``seconds`` once ``after_bytes`` of body were sent (see :func:`stall`)."""

    seconds: float
    after_bytes: int = 0


@dataclass(frozen=True)
class Delay:
    """Hold the request ``seconds`` before answering it (see :func:`delay`)."""

    seconds: float


@dataclass(frozen=True)
class Throttle:
    """Limit the body rate (see :func:`throttle`)."""

    bytes_per_second: float


Fault: TypeAlias = (
    Status
    | Redirect
    | ReplaceBody
    | IgnoreRange
    | SwapBody
    | WrongContentRange
    | LieContentLength
    | StripContentLength
    | FlipByte
    | DropAfter
    | DropRequestAfter
    | Stall
    | Delay
    | Throttle
)


def _header_pairs(headers: HeadersLike) -> HeaderPairs:
    if headers is None:
        return ()
    items = headers.items() if isinstance(headers, Mapping) else headers
    return tuple((str(k), str(v)) for k, v in items)


def status(
    code: int,
    retry_after: float | str | datetime | None = None,
    body: bytes = b"",
    *,
    headers: HeadersLike = None,
) -> Status:
    """Answer ``code`` (503, 429, 500, 401, ...) without contacting the upstream.

    ``retry_after`` becomes a ``Retry-After`` header: a number of seconds, an aware ``datetime``
    (sent as an HTTP date) or a literal string.  ``headers`` are added as given (e.g. a
    ``WWW-Authenticate`` for a forged 401).  HEAD answers carry no body.
    """
    value: str | None
    if retry_after is None or isinstance(retry_after, str):
        value = retry_after
    elif isinstance(retry_after, datetime):
        value = format_datetime(retry_after, usegmt=True)
    else:
        value = str(int(retry_after)) if float(retry_after).is_integer() else str(retry_after)
    return Status(code, value, bytes(body), _header_pairs(headers))


def redirect(to_url: str, status: int = 307) -> Redirect:
    """Answer ``status`` with ``Location: to_url``; ``{path}`` and ``{query}`` are filled in.

    ``{path}`` is the request path, ``{query}`` is ``?`` + the query string (or empty), so
    ``redirect(recorder.url + "{path}{query}")`` sends the client to the same path elsewhere.
    """
    return Redirect(to_url, status)


def replace_body(
    body: bytes,
    content_type: str | None = None,
    headers: HeadersLike = None,
    *,
    status: int = 200,
) -> ReplaceBody:
    """Answer ``status`` (200) with ``body`` instead of the upstream's answer.

    For documents the registry refuses to store (huge or ambiguous manifests).  No
    ``Docker-Content-Digest`` is added unless given in ``headers``.
    """
    return ReplaceBody(bytes(body), content_type, _header_pairs(headers), status)


def ignore_range() -> IgnoreRange:
    """Strip the client's ``Range``/``If-Range``: the upstream answers 200 with the full body."""
    return IgnoreRange()


def swap_body(other: str | bytes) -> SwapBody:
    """Serve other bytes under this answer's status and headers.

    ``other`` is an upstream path (``"/v2/<name>/blobs/sha256:..."``, fetched with the same
    request headers, so a ``Range`` applies to it too) or literal bytes.  ``Content-Length`` is
    set to the served length; ``Docker-Content-Digest``/``ETag`` still describe the original.
    """
    return SwapBody(other if isinstance(other, str) else bytes(other))


def wrong_content_range(
    value: str | None = None, *, kind: Literal["start", "total"] = "start"
) -> WrongContentRange:
    """Falsify the ``Content-Range`` of a 206 answer (other answers are left alone).

    ``kind="start"`` claims the range starts at 0 (at 1 if it really starts at 0), same length;
    ``kind="total"`` adds one to the total size; ``value`` replaces the header verbatim.
    """
    return WrongContentRange(kind, value)


def lie_content_length(delta: int) -> LieContentLength:
    """Declare ``Content-Length`` = actual length + ``delta``.

    ``delta > 0``: the whole body is sent, then the connection is reset (client: payload error).
    ``delta < 0``: the body is cut at the declared length (client: a well-framed short body).
    """
    return LieContentLength(delta)


def strip_content_length() -> StripContentLength:
    """Drop ``Content-Length``; the body is sent with ``Transfer-Encoding: chunked``."""
    return StripContentLength()


def flip_byte(offset: int) -> FlipByte:
    """Invert (XOR 0xFF) the byte at ``offset`` of the body as served (0 = first byte sent)."""
    if offset < 0:
        raise ValueError("offset must be >= 0")
    return FlipByte(offset)


def drop_after(n_bytes: int, *, rst: bool = True) -> DropAfter:
    """Send the headers and the first ``n_bytes`` of body, then kill the connection.

    The proxy waits until the client's kernel has acknowledged those bytes, then closes the
    socket with ``SO_LINGER`` 0 (a TCP RST; ``rst=False`` sends a FIN instead).  Either way the
    client sees a broken body (Content-Length not reached, or no final chunk), never a clean
    short one, and -- if it keeps reading -- exactly ``n_bytes`` of it.  A client that stops
    reading for more than 3 s is reset anyway and may get fewer bytes (an RST discards what
    its kernel still buffers).  A body of at most ``n_bytes`` is sent whole before the kill
    (so a Content-Length-framed client may not notice anything).
    """
    if n_bytes < 0:
        raise ValueError("n_bytes must be >= 0")
    return DropAfter(n_bytes, rst)


def drop_request_after(n_bytes: int) -> DropRequestAfter:
    """Read the first ``n_bytes`` of the request body, then reset the connection (RST).

    The upstream never sees the request: the client's upload breaks as behind a reverse
    proxy that buffers request bodies (nginx's default) when the link drops mid-way.
    ``request_bytes`` of the record says how many bytes were read.
    """
    if n_bytes < 0:
        raise ValueError("n_bytes must be >= 0")
    return DropRequestAfter(n_bytes)


def stall(seconds: float, after_bytes: int = 0) -> Stall:
    """Stop sending for ``seconds`` once ``after_bytes`` of body went out (headers go first)."""
    return Stall(seconds, after_bytes)


def delay(seconds: float) -> Delay:
    """Wait ``seconds`` before asking the upstream (or giving a synthetic answer): nothing,
    headers included, goes out before, as over a far link."""
    if seconds < 0:
        raise ValueError("seconds must be >= 0")
    return Delay(seconds)


def throttle(bytes_per_second: float) -> Throttle:
    """Send the body at about ``bytes_per_second`` (in ~20 slices a second)."""
    if bytes_per_second <= 0:
        raise ValueError("bytes_per_second must be > 0")
    return Throttle(bytes_per_second)


# --------------------------------------------------------------------------------------------
# Rules and records
# --------------------------------------------------------------------------------------------


@dataclass
class Rule:
    """Apply ``faults`` to the first ``times`` requests matching ``method`` and ``path``.

    ``path`` is a regex searched in the request path (``re.search``); ``method`` ``None``
    matches every method; ``times`` ``None`` means forever.  ``hits`` counts applications.
    """

    faults: tuple[Fault, ...]
    path: re.Pattern[str]
    method: str | None = "GET"
    times: int | None = 1
    hits: int = 0
    range_header: re.Pattern[str] | None = None

    @property
    def exhausted(self) -> bool:
        """True once the rule was applied ``times`` times."""
        return self.times is not None and self.hits >= self.times

    def matches(self, method: str, path: str, range_header: str | None = None) -> bool:
        """Whether a request with this method, path and ``Range`` header is subject to the
        rule (ignores hits)."""
        if self.method is not None and self.method.upper() != method.upper():
            return False
        if self.range_header is not None and (
            range_header is None or self.range_header.fullmatch(range_header) is None
        ):
            return False
        return self.path.search(path) is not None


@dataclass
class RecordedRequest:
    """One request seen by the proxy and what it answered."""

    method: str
    path: str
    query: str
    headers: list[tuple[str, str]]
    range_requested: bool
    faults: tuple[Fault, ...] = ()
    status: int | None = None
    response_headers: list[tuple[str, str]] = field(default_factory=list)
    bytes_sent: int = 0
    request_bytes: int = 0  # request body bytes read (and forwarded, unless dropped)
    client_port: int | None = None  # the client's port: one per TCP connection
    aborted: bool = False
    done: bool = False
    connections_when_done: int = 0  # TCP connections the proxy had accepted by then

    def header(self, name: str) -> str | None:
        """First value of request header ``name`` (case-insensitive), or None."""
        values = self.header_values(name)
        return values[0] if values else None

    def header_values(self, name: str) -> list[str]:
        """All values of request header ``name`` in arrival order (repeated lines kept)."""
        lname = name.lower()
        return [v for k, v in self.headers if k.lower() == lname]

    def response_header(self, name: str) -> str | None:
        """First value of response header ``name`` as sent to the client, or None."""
        lname = name.lower()
        return next((v for k, v in self.response_headers if k.lower() == lname), None)


# --------------------------------------------------------------------------------------------
# The proxy
# --------------------------------------------------------------------------------------------


@dataclass
class _Origin:
    """What the proxy would answer before body/header faults are applied."""

    status: int
    reason: str | None
    headers: CIMultiDict[str]
    length: int | None
    chunks: AsyncGenerator[bytes, None]
    from_upstream: bool = False
    responses: list[aiohttp.ClientResponse] = field(default_factory=list)


async def _iter_bytes(data: bytes, size: int) -> AsyncGenerator[bytes, None]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


def _client_port(request: web.Request) -> int | None:
    peer = request.transport.get_extra_info("peername") if request.transport else None
    return int(peer[1]) if isinstance(peer, tuple) and len(peer) >= 2 else None


class _UpstreamBroke(Exception):
    """The upstream broke off mid-body; the client must see a broken body too."""

    def __init__(self, message: str, *, reset: bool) -> None:
        super().__init__(message)
        self.reset = reset  # the upstream reset (RST) rather than closed (FIN)


async def _iter_upstream(resp: aiohttp.ClientResponse, size: int) -> AsyncGenerator[bytes, None]:
    try:
        async for chunk in resp.content.iter_chunked(size):
            yield chunk
    except (aiohttp.ClientError, OSError) as exc:
        cause: BaseException | None = exc
        reset = False
        while cause is not None and not reset:
            reset = isinstance(cause, ConnectionResetError)
            cause = cause.__cause__ or cause.__context__
        raise _UpstreamBroke(str(exc), reset=reset) from exc


class FaultProxy(ThreadedServer):
    """Reverse proxy in front of ``upstream`` that injects faults (see the module docstring).

    Args:
        upstream: base URL of the real server, e.g. ``"http://127.0.0.1:5000"`` (a bare
            ``host:port`` means http).
        ssl_context: serve TLS on the proxy side with this server context.
        upstream_ssl: ``ssl`` argument for upstream requests (context, or False to skip
            verification).
        chunk_size: read/write slice for streamed bodies.
    """

    _KILL_FLUSH_TIMEOUT = 3.0

    def __init__(
        self,
        upstream: str,
        *,
        ssl_context: ssl.SSLContext | None = None,
        upstream_ssl: ssl.SSLContext | bool = True,
        chunk_size: int = 64 * 1024,
    ) -> None:
        super().__init__(ssl_context=ssl_context)
        if "://" not in upstream:
            upstream = f"http://{upstream}"
        up = URL(upstream)
        if not up.host or up.scheme not in ("http", "https"):
            raise ValueError(f"bad upstream URL: {upstream!r}")
        self.upstream = str(up.origin())
        self._upstream_ssl = upstream_ssl
        self._chunk_size = chunk_size
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._rules: list[Rule] = []
        self._records: list[RecordedRequest] = []
        self._session: aiohttp.ClientSession | None = None

    # -- test-side API (any thread) ----------------------------------------------------------
    def add(
        self,
        *faults: Fault,
        path: str | re.Pattern[str] = ".*",
        method: str | None = "GET",
        times: int | None = 1,
        range_header: str | None = None,
    ) -> Rule:
        """Apply ``faults`` together to the next ``times`` requests matching ``method``/``path``.

        ``path`` is searched (``re.search``) in the request path, e.g. ``r"/blobs/sha256:ab"``;
        ``method=None`` matches any method (the default ``"GET"`` leaves HEAD probes alone);
        ``range_header``, a regex, must match the whole ``Range`` header (a request without
        one does not match); ``times=None`` applies forever.  Returns the rule (its ``hits``
        counts applications).
        """
        if not faults:
            raise ValueError("add() needs at least one fault")
        if times is not None and times < 1:
            raise ValueError("times must be >= 1 or None")
        pattern = path if isinstance(path, re.Pattern) else re.compile(path)
        ranges = None if range_header is None else re.compile(range_header)
        rule = Rule(tuple(faults), pattern, method, times, range_header=ranges)
        with self._lock:
            self._rules.append(rule)
        return rule

    def remove(self, rule: Rule) -> None:
        """Remove one rule (no error if already gone)."""
        with self._lock:
            self._rules = [r for r in self._rules if r is not rule]

    def clear_rules(self) -> None:
        """Remove all rules: from now on everything passes through."""
        with self._lock:
            self._rules.clear()

    @property
    def rules(self) -> list[Rule]:
        """Snapshot of the rules (copies; use the objects returned by :meth:`add` to watch)."""
        with self._lock:
            return [copy.copy(r) for r in self._rules]

    @property
    def requests(self) -> list[RecordedRequest]:
        """Snapshot (deep copies) of every request recorded so far, in arrival order."""
        with self._lock:
            return [self._copy_record(r) for r in self._records]

    def requests_for(
        self, path: str | None = None, method: str | None = None
    ) -> list[RecordedRequest]:
        """Recorded requests whose path matches regex ``path`` and whose method is ``method``."""
        pattern = re.compile(path) if path is not None else None
        return [
            r
            for r in self.requests
            if (pattern is None or pattern.search(r.path))
            and (method is None or r.method.upper() == method.upper())
        ]

    def connections(self, path_regex: str | None = None) -> int:
        """How many TCP connections carried the requests whose path matches ``path_regex``."""
        return len({r.client_port for r in self.requests_for(path_regex)})

    def bytes_served(self, path_regex: str | None = None) -> int:
        """Body bytes handed to clients, for requests whose path matches ``path_regex``."""
        return sum(r.bytes_sent for r in self.requests_for(path_regex))

    def wait_idle(self, timeout: float = 5.0) -> None:
        """Wait until every recorded request's handler has finished (``done``).

        A client can hold the whole body before the proxy's handler returns; call this before
        asserting on ``done``/``aborted`` or on the request count after a client gave up.
        """
        with self._idle:
            if not self._idle.wait_for(lambda: all(r.done for r in self._records), timeout):
                raise TimeoutError(f"fault proxy still busy after {timeout} s")

    def clear_requests(self) -> None:
        """Forget the recorded requests."""
        with self._lock:
            self._records.clear()

    def reset(self) -> None:
        """Remove all rules and forget all recorded requests."""
        with self._lock:
            self._rules.clear()
            self._records.clear()

    @staticmethod
    def _copy_record(rec: RecordedRequest) -> RecordedRequest:
        return dataclasses.replace(
            rec, headers=list(rec.headers), response_headers=list(rec.response_headers)
        )

    # -- server side (proxy loop) ------------------------------------------------------------
    def _make_app(self) -> web.Application:
        app = web.Application(client_max_size=1024**3)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        return app

    async def _setup(self) -> None:
        self._session = aiohttp.ClientSession(
            auto_decompress=False,
            cookie_jar=aiohttp.DummyCookieJar(),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=30),
        )

    async def _teardown(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _take_rule(self, method: str, path: str, range_header: str | None) -> tuple[Fault, ...]:
        with self._lock:
            for rule in self._rules:
                if not rule.exhausted and rule.matches(method, path, range_header):
                    rule.hits += 1
                    return rule.faults
        return ()

    def _update(self, rec: RecordedRequest, **changes: object) -> None:
        with self._lock:
            for key, value in changes.items():
                setattr(rec, key, value)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        faults = self._take_rule(request.method, request.path, request.headers.get("Range"))
        rec = RecordedRequest(
            method=request.method,
            path=request.path,
            query=request.query_string,
            headers=list(request.headers.items()),
            range_requested="Range" in request.headers,
            faults=faults,
            client_port=_client_port(request),
        )
        with self._lock:
            self._records.append(rec)
        try:
            cut = next((f for f in faults if isinstance(f, DropRequestAfter)), None)
            if cut is not None:
                return await self._drop_request(request, rec, cut)
            return await self._serve(request, rec, faults)
        except asyncio.CancelledError:  # client disconnected, or the proxy is stopping
            self._update(rec, aborted=True)
            raise
        finally:
            with self._idle:
                rec.done = True
                rec.connections_when_done = self.connections_accepted
                self._idle.notify_all()

    async def _drop_request(
        self, request: web.Request, rec: RecordedRequest, cut: DropRequestAfter
    ) -> web.StreamResponse:
        received = 0
        while received < cut.n_bytes:
            chunk = await request.content.read(min(self._chunk_size, cut.n_bytes - received))
            if not chunk:
                break
            received += len(chunk)
        self._update(rec, request_bytes=received)
        await self._kill(request, rec, rst=True)
        return web.StreamResponse()

    async def _serve(
        self, request: web.Request, rec: RecordedRequest, faults: tuple[Fault, ...]
    ) -> web.StreamResponse:
        for fault in faults:
            if isinstance(fault, Delay):
                await asyncio.sleep(fault.seconds)
        origin = await self._origin(request, rec, faults)
        try:
            return await self._respond(request, rec, faults, origin)
        finally:
            await origin.chunks.aclose()
            for up in origin.responses:
                if up.content.at_eof():
                    up.release()
                else:
                    up.close()

    # Where the answer comes from: a synthetic fault answer, or the upstream.
    async def _origin(
        self, request: web.Request, rec: RecordedRequest, faults: tuple[Fault, ...]
    ) -> _Origin:
        size = self._chunk_size
        for fault in faults:
            if isinstance(fault, Status):
                headers = CIMultiDict(fault.headers)
                if fault.retry_after is not None:
                    headers["Retry-After"] = fault.retry_after
                if fault.body and "Content-Type" not in headers:
                    is_json = fault.body.lstrip().startswith(b"{")
                    headers["Content-Type"] = "application/json" if is_json else "text/plain"
                return _Origin(
                    fault.code, None, headers, len(fault.body), _iter_bytes(fault.body, size)
                )
            if isinstance(fault, Redirect):
                query = f"?{request.query_string}" if request.query_string else ""
                target = fault.to_url.replace("{path}", request.path).replace("{query}", query)
                headers = CIMultiDict({"Location": target})
                return _Origin(fault.code, None, headers, 0, _iter_bytes(b"", size))
            if isinstance(fault, ReplaceBody):
                headers = CIMultiDict(fault.headers)
                if fault.content_type is not None:
                    headers["Content-Type"] = fault.content_type
                return _Origin(
                    fault.code, None, headers, len(fault.body), _iter_bytes(fault.body, size)
                )

        forwarded = self._forward_headers(request, any(isinstance(f, IgnoreRange) for f in faults))
        body = await request.read() if request.body_exists else None
        self._update(rec, request_bytes=len(body or b""))
        origin = await self._fetch(request.method, request.raw_path, forwarded, body)
        for fault in faults:
            if isinstance(fault, SwapBody) and request.method != "HEAD":
                if isinstance(fault.source, bytes):
                    origin.chunks = _iter_bytes(fault.source, size)
                    origin.length = len(fault.source)
                else:
                    other = await self._fetch("GET", fault.source, forwarded, None)
                    origin.responses.extend(other.responses)
                    origin.chunks, origin.length = other.chunks, other.length
        return origin

    @staticmethod
    def _forward_headers(request: web.Request, drop_range: bool) -> CIMultiDict[str]:
        named_hop = {
            token.strip().lower()
            for value in request.headers.getall("Connection", [])
            for token in value.split(",")
        }
        forwarded: CIMultiDict[str] = CIMultiDict()
        for name, value in request.headers.items():  # multidict: repeated lines stay separate
            lname = name.lower()
            if lname in _HOP_BY_HOP or lname in named_hop:
                continue
            if drop_range and lname in ("range", "if-range"):
                continue
            forwarded.add(name, value)
        return forwarded

    async def _fetch(
        self, method: str, raw_path: str, headers: CIMultiDict[str], body: bytes | None
    ) -> _Origin:
        assert self._session is not None
        url = URL(self.upstream + raw_path, encoded=True)
        try:
            up = await self._session.request(
                method,
                url,
                headers=headers,
                data=body,
                allow_redirects=False,
                skip_auto_headers=_SKIP_AUTO_HEADERS,
                ssl=self._upstream_ssl,
            )
        except (aiohttp.ClientError, OSError) as exc:
            msg = f"fault proxy: upstream error: {exc!r}".encode()
            plain = CIMultiDict({"Content-Type": "text/plain"})
            return _Origin(502, None, plain, len(msg), _iter_bytes(msg, self._chunk_size))
        headers_out: CIMultiDict[str] = CIMultiDict()
        for name, value in up.headers.items():
            if name.lower() not in _HOP_BY_HOP:
                headers_out.add(name, value)
        chunked = "chunked" in up.headers.get("Transfer-Encoding", "").lower()
        length = None if chunked else up.content_length
        return _Origin(
            up.status,
            up.reason,
            headers_out,
            length,
            _iter_upstream(up, self._chunk_size),
            from_upstream=True,
            responses=[up],
        )

    def _rewrite_location(self, value: str) -> str:
        """Point an absolute URL on the upstream at the proxy; leave anything else alone."""
        prefix = self.upstream
        if value.startswith(prefix) and value[len(prefix) : len(prefix) + 1] in ("", "/", "?"):
            return self.url + value[len(prefix) :]
        return value

    @staticmethod
    def _falsify_content_range(value: str, fault: WrongContentRange) -> str:
        if fault.value is not None:
            return fault.value
        m = _CONTENT_RANGE_RE.match(value.strip())
        if m is None:
            return "bytes 0-0/1"
        first, last, total = int(m[1]), int(m[2]), m[3]
        if fault.kind == "total":
            return f"bytes {first}-{last}/{int(total) + 1 if total != '*' else 1}"
        new_first = 0 if first > 0 else 1
        return f"bytes {new_first}-{new_first + last - first}/{total}"

    async def _respond(
        self,
        request: web.Request,
        rec: RecordedRequest,
        faults: tuple[Fault, ...],
        origin: _Origin,
    ) -> web.StreamResponse:
        headers = origin.headers
        if origin.from_upstream and "Location" in headers:
            locations = [self._rewrite_location(v) for v in headers.getall("Location")]
            del headers["Location"]
            for loc in locations:
                headers.add("Location", loc)

        declared = origin.length
        lie = 0
        drop: DropAfter | None = None
        stall_fault: Stall | None = None
        throttle_fault: Throttle | None = None
        flips: set[int] = set()
        for fault in faults:
            if isinstance(fault, WrongContentRange) and origin.status == 206:
                if "Content-Range" in headers:
                    headers["Content-Range"] = self._falsify_content_range(
                        headers["Content-Range"], fault
                    )
            elif isinstance(fault, StripContentLength):
                declared = None
            elif isinstance(fault, LieContentLength):
                lie = fault.delta
            elif isinstance(fault, DropAfter):
                drop = fault
            elif isinstance(fault, Stall):
                stall_fault = fault
            elif isinstance(fault, Throttle):
                throttle_fault = fault
            elif isinstance(fault, FlipByte):
                flips.add(fault.offset)

        head_only = request.method == "HEAD"
        if lie:
            if declared is None and not head_only:  # need the real length: buffer the body
                data = b"".join([chunk async for chunk in origin.chunks])
                origin.chunks = _iter_bytes(data, self._chunk_size)
                declared = len(data)
            declared = max(0, (declared or 0) + lie)

        resp = web.StreamResponse(status=origin.status, reason=origin.reason)
        for name, value in headers.items():
            resp.headers.add(name, value)
        if declared is not None:
            resp.content_length = declared
        if drop is not None or lie:
            resp.force_close()
        self._update(rec, status=origin.status)
        try:
            await resp.prepare(request)
        except ConnectionError:
            self._update(rec, aborted=True)
            return resp
        self._update(rec, response_headers=list(resp.headers.items()))
        if head_only:
            return resp

        loop = asyncio.get_running_loop()
        started = loop.time()
        offset = 0
        try:
            async for chunk in origin.chunks:
                if declared is not None and offset >= declared:
                    break  # never send past the declared length; leave the rest unread
                while chunk:
                    if stall_fault is not None and offset >= stall_fault.after_bytes:
                        await resp.write(b"")  # make sure the headers are out
                        await asyncio.sleep(stall_fault.seconds)
                        stall_fault = None
                    if drop is not None and offset >= drop.n_bytes:
                        await self._kill(request, rec, rst=drop.rst)
                        return resp
                    if declared is not None and offset >= declared:
                        break  # never send past the declared length
                    n = len(chunk)
                    if stall_fault is not None:
                        n = min(n, stall_fault.after_bytes - offset)
                    if drop is not None:
                        n = min(n, drop.n_bytes - offset)
                    if declared is not None:
                        n = min(n, declared - offset)
                    if throttle_fault is not None:
                        step = max(1, int(throttle_fault.bytes_per_second / 20))
                        n = min(n, step)
                        due = started + (offset + n) / throttle_fault.bytes_per_second
                        await asyncio.sleep(max(0.0, due - loop.time()))
                    piece, chunk = chunk[:n], chunk[n:]
                    hit = [o - offset for o in flips if offset <= o < offset + n]
                    if hit:
                        buf = bytearray(piece)
                        for i in hit:
                            buf[i] ^= 0xFF
                        piece = bytes(buf)
                    with self._lock:
                        rec.bytes_sent += n
                    await resp.write(piece)
                    offset += n
            if stall_fault is not None:
                await resp.write(b"")
                await asyncio.sleep(stall_fault.seconds)
            if drop is not None or (declared is not None and offset < declared):
                await self._kill(request, rec, rst=drop.rst if drop is not None else True)
        except _UpstreamBroke as broke:  # mirror it: same kind of close, after what we got
            await self._kill(request, rec, rst=broke.reset)
        except ConnectionError:  # the client went away
            self._update(rec, aborted=True)
        return resp

    async def _kill(self, request: web.Request, rec: RecordedRequest, *, rst: bool) -> None:
        """Get what was written onto the wire, then close the socket (RST or FIN).

        An RST makes the sender's kernel discard unsent data, so first wait (up to a few
        seconds, in case the client stopped reading) until asyncio's buffer is empty and the
        client's kernel acknowledged every byte (``TIOCOUTQ`` == 0).
        """
        self._update(rec, aborted=True)
        transport = request.transport
        if transport is None or transport.is_closing():
            return
        sock = transport.get_extra_info("socket")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._KILL_FLUSH_TIMEOUT
        while loop.time() < deadline and (
            transport.get_write_buffer_size() or _unacked_bytes(sock)
        ):
            await asyncio.sleep(0.002)
        if rst:
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            transport.abort()
        else:
            transport.close()


def _unacked_bytes(sock: socket.socket | None) -> int:
    """Bytes in the kernel send queue not yet acknowledged by the peer (0 if unknown)."""
    if sock is None:
        return 0
    try:
        raw = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0")
    except OSError:
        return 0
    return int(struct.unpack("i", raw)[0])
