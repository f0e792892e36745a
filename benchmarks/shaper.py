"""A TCP proxy that shapes each connection like a far-away CDN: latency + per-connection cap.

``python -m benchmarks.shaper --upstream 127.0.0.1:5000 --rtt-ms 50 --rate-mbps 10``
listens on 127.0.0.1 (port 0 unless ``--port``), prints ``listening on 127.0.0.1:PORT``
and relays bytes both ways, unchanged (it knows nothing of HTTP), with:

* **latency**: every chunk is delivered ``rtt/2`` after it was read, in both directions,
  through a delay line (so latency does not cost throughput); a new connection also pays
  one round trip before its first byte goes upstream, like a TCP handshake;
* **bandwidth**: each connection, in each direction, is paced to ``rate`` bytes per
  second (token bucket, at most ``BURST_SECONDS`` of burst). Connections do not share
  the cap: many connections together are as fast as the upstream allows.

Backpressure is kept: each direction buffers at most ``MAX_BUFFERED`` bytes, then stops
reading. Each connection logs ``open N`` and ``closed N down=B up=B s=T`` to stderr,
so a caller can count the connections a client opened.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import sys
from collections.abc import Sequence

CHUNK = 64 * 1024
MAX_BUFFERED = 1 << 20  # per direction
BURST_SECONDS = 0.005


class _Direction:
    """One direction of one connection: a delay line followed by a pacer."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        one_way: float,
        rate: float,
        not_before: float,
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.one_way = one_way
        self.rate = rate
        self.not_before = not_before
        self.queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue(
            maxsize=max(1, MAX_BUFFERED // CHUNK)
        )
        self.bytes = 0

    async def run(self) -> None:
        async with asyncio.TaskGroup() as group:
            group.create_task(self._read())
            group.create_task(self._write())

    async def _read(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                data = await self.reader.read(CHUNK)
            except ConnectionError:
                data = b""
            due = max(loop.time(), self.not_before) + self.one_way
            await self.queue.put((due, data))
            if not data:
                return

    async def _write(self) -> None:
        loop = asyncio.get_running_loop()
        next_free = 0.0
        while True:
            due, data = await self.queue.get()
            now = loop.time()
            start = max(due, next_free, now - BURST_SECONDS)
            if start > now:
                await asyncio.sleep(start - now)
            if not data:
                if self.writer.can_write_eof():
                    with contextlib.suppress(OSError):
                        self.writer.write_eof()
                return
            self.writer.write(data)
            self.bytes += len(data)
            next_free = start + len(data) / self.rate
            await self.writer.drain()


class Shaper:
    """The proxy; :meth:`start` binds, :meth:`serve_forever` runs until cancelled."""

    def __init__(
        self,
        upstream_host: str,
        upstream_port: int,
        *,
        rtt: float,
        rate: float,
        listen_port: int = 0,
    ) -> None:
        self.upstream_host = upstream_host
        self.upstream_port = upstream_port
        self.rtt = rtt
        self.rate = rate
        self.listen_port = listen_port
        self._ids = itertools.count(1)
        self._server: asyncio.Server | None = None

    async def start(self) -> int:
        self._server = await asyncio.start_server(
            self._handle, "127.0.0.1", self.listen_port, limit=CHUNK
        )
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def serve_forever(self) -> None:
        assert self._server is not None
        async with self._server:
            await self._server.serve_forever()

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        number = next(self._ids)
        loop = asyncio.get_running_loop()
        accepted = loop.time()
        print(f"open {number}", file=sys.stderr, flush=True)
        try:
            up_r, up_w = await asyncio.open_connection(
                self.upstream_host, self.upstream_port, limit=CHUNK
            )
        except OSError:
            client_w.close()
            return
        one_way = self.rtt / 2
        # The handshake: a real client could send its request only one RTT after connect.
        up = _Direction(
            client_r, up_w, one_way=one_way, rate=self.rate, not_before=accepted + self.rtt
        )
        down = _Direction(up_r, client_w, one_way=one_way, rate=self.rate, not_before=0.0)
        try:
            async with asyncio.TaskGroup() as group:  # one failing side cancels the other
                group.create_task(up.run())
                group.create_task(down.run())
        except* OSError:
            pass
        finally:
            for writer in (client_w, up_w):
                writer.close()
            print(
                f"closed {number} down={down.bytes} up={up.bytes} s={loop.time() - accepted:.3f}",
                file=sys.stderr,
                flush=True,
            )


def _host_port(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


async def _main(args: argparse.Namespace) -> None:
    host, port = _host_port(args.upstream)
    shaper = Shaper(
        host, port, rtt=args.rtt_ms / 1000, rate=args.rate_mbps * 1e6, listen_port=args.port
    )
    listening = await shaper.start()
    print(f"listening on 127.0.0.1:{listening}", flush=True)
    await shaper.serve_forever()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.shaper", description=__doc__)
    parser.add_argument("--upstream", required=True, metavar="HOST:PORT")
    parser.add_argument("--port", type=int, default=0, help="listen port (default: any)")
    parser.add_argument("--rtt-ms", type=float, default=50.0, help="added round trip (ms)")
    parser.add_argument(
        "--rate-mbps", type=float, default=10.0, help="per-connection cap, MB/s (10^6 bytes)"
    )
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_main(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
