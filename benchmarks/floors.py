"""Helpers the floor contenders run as child processes.

``python -m benchmarks.floors decompress FILE`` inflates one gzip blob with ISA-L and
throws the bytes away: the decompression floor starts one per layer, all at once.

``python -m benchmarks.floors docker-layer URL OUT DIGEST DIFF_ID [--ca-cert PEM]
[--token TOKEN]`` does for one layer the least a docker-format pull must: the blob is
received (one GET), hashed (sha256, checked against DIGEST), inflated (ISA-L) and the
result hashed (checked against DIFF_ID) and written to OUT past the page cache
(``O_DIRECT``, as dockerdrag writes its archive), every byte handled once by native
code (the kernel's receive, OpenSSL's sha256, ISA-L's inflate, the direct write), each
call on 1 MiB at a time, with no pipe or extra copy between the steps. The native
docker floor starts one per layer, all at once.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import io
import mmap
import os
import ssl
import sys
import urllib.parse
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from isal import igzip, isal_zlib

READ_SIZE = 1 << 20


def decompress(path: str) -> int:
    """Inflate ``path``; returns the uncompressed size."""
    buffer = bytearray(READ_SIZE)
    total = 0
    with igzip.open(path, "rb") as stream:  # type: ignore[no-untyped-call]
        while n := stream.readinto(buffer):
            total += n
    return total


class _HashedBody(io.RawIOBase):
    """An HTTP response body read into the caller's buffer, hashed on the way."""

    def __init__(self, response: http.client.HTTPResponse) -> None:
        super().__init__()
        self._response = response
        self.hasher = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        count = self._response.readinto(buffer)
        if count:
            with memoryview(buffer) as view:
                self.hasher.update(view[:count])
        return count


def _get(url: str, ca_cert: str | None, token: str | None) -> http.client.HTTPResponse:
    parts = urllib.parse.urlsplit(url)
    connection: http.client.HTTPConnection
    if parts.scheme == "https":
        context = ssl.create_default_context(cafile=ca_cert)
        connection = http.client.HTTPSConnection(parts.netloc, context=context)
    else:
        connection = http.client.HTTPConnection(parts.netloc)
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    connection.request(
        "GET", f"{parts.path}?{parts.query}" if parts.query else parts.path, headers=headers
    )
    response = connection.getresponse()
    if response.status != 200:
        raise SystemExit(f"{url}: HTTP {response.status}")
    return response


def docker_layer(
    url: str, out: str, digest: str, diff_id: str, ca_cert: str | None, token: str | None
) -> int:
    """Fetch, hash, inflate, hash and write one layer; returns the uncompressed size.

    Two page-aligned blocks: a helper thread writes the full one (a direct write
    returns once the disk has it) while the next one is inflated.
    """
    body = _HashedBody(_get(url, ca_cert, token))
    inflated = isal_zlib._GzipReader(body, READ_SIZE)  # inflates into the caller's buffer
    diff = hashlib.sha256()
    blocks = [mmap.mmap(-1, READ_SIZE) for _ in range(2)]  # page-aligned, as O_DIRECT needs
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_DIRECT, 0o644)
    writing: Future[int] | None = None
    total = 0
    with ThreadPoolExecutor(1) as writer:
        try:
            while True:
                block = blocks[0]
                fill = 0
                while fill < READ_SIZE and (count := inflated.readinto(memoryview(block)[fill:])):
                    diff.update(memoryview(block)[fill : fill + count])
                    fill += count
                if writing is not None:
                    writing.result()
                    writing = None
                if fill < READ_SIZE:  # the last block: its tail through the page cache
                    os.close(fd)
                    fd = os.open(out, os.O_WRONLY)
                    os.pwrite(fd, memoryview(block)[:fill], total)
                    total += fill
                    break
                writing = writer.submit(os.pwrite, fd, block, total)
                total += fill
                blocks.reverse()
        finally:
            if writing is not None:
                writing.result()
            os.close(fd)
    if f"sha256:{body.hasher.hexdigest()}" != digest:
        raise SystemExit(f"digest mismatch for {digest}")
    if f"sha256:{diff.hexdigest()}" != diff_id:
        raise SystemExit(f"diff_id mismatch for {digest}")
    return total


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.floors")
    commands = parser.add_subparsers(dest="command", required=True)
    inflate = commands.add_parser("decompress", help="inflate FILE, output discarded")
    inflate.add_argument("file")
    layer = commands.add_parser("docker-layer", help="fetch, verify, inflate and write a layer")
    for name in ("url", "out", "digest", "diff_id"):
        layer.add_argument(name)
    layer.add_argument("--ca-cert", metavar="PEM", help="HTTPS, trusting this CA")
    layer.add_argument("--token", help="a bearer token for the request")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if args.command == "decompress":
        decompress(args.file)
    else:
        docker_layer(args.url, args.out, args.digest, args.diff_id, args.ca_cert, args.token)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
