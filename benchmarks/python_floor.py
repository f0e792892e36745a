"""The least a Python client can do for a verified pull: aiohttp GETs, sha256, no disk.

``python -m benchmarks.python_floor HOST REPO TAG [--connections N] [--decompress]
[--ca-cert PEM]`` fetches the image manifest from a plain-HTTP registry (HTTPS trusting
``PEM`` with ``--ca-cert``; a bearer-token challenge is answered with an anonymous pull
token from its realm, as any client does), downloads every layer blob
(``N`` at a time) and hashes it, throwing the bytes away. It prints the wall time from
the start of this module (the interpreter's start-up and the standard library imports
come before it; the benchmark times the whole process) and of the transfer, and the CPU
seconds. It writes nothing. It
bounds from below what any CPython+aiohttp pull that verifies digests can reach on
this machine (issue #6's oci target compares against curl writing to disk without
verifying).

``--decompress`` also does what a ``docker save``-format pull must do on top: every
layer is inflated (ISA-L) as it arrives and the sha256 of the result, its diff_id, is
taken too, with two threads doing that work (ISA-L and hashlib release the GIL). The
bytes still go nowhere: the floor of the docker format.

``--write DIR`` (with ``--decompress``) also hands the inflated bytes of every layer to
the kernel, as any tool writing a ``docker save`` archive (whose layers are uncompressed
tars) must: each layer into a file of its own in ``DIR``, from the inflating thread, with
no fsync. ``--lean-import`` imports aiohttp without the system CAs its two import-time TLS
contexts load (neither is used: plain HTTP, or the context of ``--ca-cert``), as
dockerdrag does: work a careful client skips. Together: the floor of a docker-format pull
that writes its archive.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import re
import resource
import ssl
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

STARTED = time.perf_counter()


@contextlib.contextmanager
def _system_cas_skipped() -> Iterator[None]:
    """``SSLContext.set_default_verify_paths`` (the system CAs) does nothing inside."""
    original = ssl.SSLContext.set_default_verify_paths
    ssl.SSLContext.set_default_verify_paths = lambda _self: None  # type: ignore[method-assign,assignment]
    try:
        yield
    finally:
        ssl.SSLContext.set_default_verify_paths = original  # type: ignore[method-assign]


# Known before aiohttp is imported: argparse reads the option again (and documents it).
with _system_cas_skipped() if "--lean-import" in sys.argv[1:] else contextlib.nullcontext():
    import aiohttp  # imported after the clock starts: its import is part of the floor
from isal import isal_zlib  # noqa: E402

MANIFEST_TYPES = (
    "application/vnd.docker.distribution.manifest.v2+json,"
    "application/vnd.oci.image.manifest.v1+json"
)
READ_SIZE = 1 << 18
GZIP_WBITS = 31
INFLATE_THREADS = 2
_CHALLENGE_PARAM = re.compile(r'(\w+)="([^"]*)"')


def _inflating_hasher(
    hasher: hashlib._Hash, out_fd: int | None
) -> tuple[Callable[[bytes], None], hashlib._Hash]:
    """A chunk consumer that hashes the blob and inflates it into a second hash (and,
    given ``out_fd``, writes the inflated bytes there)."""
    inflater = isal_zlib.decompressobj(wbits=GZIP_WBITS)
    diff_id = hashlib.sha256()

    def consume(chunk: bytes) -> None:
        hasher.update(chunk)
        data = inflater.decompress(chunk)
        diff_id.update(data)
        if out_fd is not None:
            view = memoryview(data)
            while view:
                view = view[os.write(out_fd, view) :]

    return consume, diff_id


async def fetch_and_hash(
    session: aiohttp.ClientSession,
    url: str,
    digest: str,
    slots: asyncio.Semaphore,
    inflaters: ThreadPoolExecutor | None,
    out: Path | None,
) -> int:
    async with slots, session.get(url) as response:
        response.raise_for_status()
        hasher = hashlib.sha256()
        size = 0
        if inflaters is None:
            while chunk := await response.content.read(READ_SIZE):
                hasher.update(chunk)
                size += len(chunk)
        else:
            out_fd = None
            if out is not None:
                path = out / f"{digest.removeprefix('sha256:')}.tar"
                out_fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            try:
                consume, diff_id = _inflating_hasher(hasher, out_fd)
                loop = asyncio.get_running_loop()
                previous: asyncio.Future[None] | None = None
                while chunk := await response.content.read(READ_SIZE):
                    if previous is not None:
                        await previous  # one chunk of a layer in work at a time: in order
                    previous = loop.run_in_executor(inflaters, consume, chunk)
                    size += len(chunk)
                if previous is not None:
                    await previous
            finally:
                if out_fd is not None:
                    os.close(out_fd)
            diff_id.hexdigest()  # a pull compares it with the config; the cost is the same
    if f"sha256:{hasher.hexdigest()}" != digest:
        raise SystemExit(f"digest mismatch for {digest}")
    return size


async def anonymous_token(session: aiohttp.ClientSession, base: str, repo: str) -> str | None:
    """The bearer token the registry's challenge asks for (None: it asks for none)."""
    async with session.get(f"{base}/v2/") as response:
        challenge = response.headers.get("WWW-Authenticate", "")
    if response.status != 401 or not challenge.lower().startswith("bearer "):
        return None
    params = dict(_CHALLENGE_PARAM.findall(challenge))
    query = {"service": params.get("service", ""), "scope": f"repository:{repo}:pull"}
    async with session.get(params["realm"], params=query) as response:
        response.raise_for_status()
        answer = json.loads(await response.read())
    token: str = answer.get("token") or answer["access_token"]
    return token


async def pull(
    host: str,
    repo: str,
    tag: str,
    connections: int,
    decompress: bool,
    ca_cert: str | None,
    out: Path | None = None,
) -> tuple[int, float]:
    scheme = "http" if ca_cert is None else "https"
    tls = True if ca_cert is None else ssl.create_default_context(cafile=ca_cert)
    connector = aiohttp.TCPConnector(ssl=tls)
    async with aiohttp.ClientSession(auto_decompress=False, connector=connector) as session:
        token = await anonymous_token(session, f"{scheme}://{host}", repo)
        if token is not None:
            session.headers["Authorization"] = f"Bearer {token}"
        base = f"{scheme}://{host}/v2/{repo}"
        async with session.get(
            f"{base}/manifests/{tag}", headers={"Accept": MANIFEST_TYPES}
        ) as response:
            response.raise_for_status()
            manifest = json.loads(await response.read())
        started = time.perf_counter()
        slots = asyncio.Semaphore(connections)
        inflaters = ThreadPoolExecutor(INFLATE_THREADS) if decompress else None
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
        try:
            sizes = await asyncio.gather(
                *(
                    fetch_and_hash(
                        session,
                        f"{base}/blobs/{layer['digest']}",
                        layer["digest"],
                        slots,
                        inflaters,
                        out,
                    )
                    for layer in manifest["layers"]
                )
            )
        finally:
            if inflaters is not None:
                inflaters.shutdown()
        return sum(sizes), time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("host")
    parser.add_argument("repo")
    parser.add_argument("tag")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument(
        "--decompress", action="store_true", help="also inflate every layer and hash its diff_id"
    )
    parser.add_argument("--ca-cert", metavar="PEM", help="HTTPS, trusting this CA")
    parser.add_argument(
        "--write",
        metavar="DIR",
        type=Path,
        help="with --decompress: write each inflated layer into a file in DIR (no fsync)",
    )
    parser.add_argument(
        "--lean-import",
        action="store_true",
        help="import aiohttp without the system CAs of its unused import-time TLS contexts",
    )
    args = parser.parse_args()
    if args.write is not None and not args.decompress:
        parser.error("--write needs --decompress")
    total, transfer = asyncio.run(
        pull(
            args.host,
            args.repo,
            args.tag,
            args.connections,
            args.decompress,
            args.ca_cert,
            args.write,
        )
    )
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(
        f"{total} bytes hashed; process {time.perf_counter() - STARTED:.3f} s "
        f"(transfer {transfer:.3f} s), cpu {usage.ru_utime + usage.ru_stime:.3f} s "
        f"({args.connections} connections)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
