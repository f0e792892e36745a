"""The least a Python client can do for a verified pull: aiohttp GETs, sha256, no disk.

``python -m benchmarks.python_floor HOST REPO TAG [--connections N]`` fetches the
image manifest from a plain-HTTP registry, downloads every layer blob (``N`` at
a time) and hashes it, throwing the bytes away. It prints the wall time of the
whole process and of the transfer, and the CPU seconds. This is not a contender:
it writes nothing. It bounds from below what any CPython+aiohttp pull that
verifies digests can reach on this machine (issue #6's oci target compares
against curl writing to disk without verifying).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import resource
import sys
import time

STARTED = time.perf_counter()

import aiohttp  # noqa: E402 - imported after the clock starts: its import is part of the floor

MANIFEST_TYPES = (
    "application/vnd.docker.distribution.manifest.v2+json,"
    "application/vnd.oci.image.manifest.v1+json"
)
READ_SIZE = 1 << 18


async def fetch_and_hash(
    session: aiohttp.ClientSession, url: str, digest: str, slots: asyncio.Semaphore
) -> int:
    async with slots, session.get(url) as response:
        response.raise_for_status()
        hasher = hashlib.sha256()
        size = 0
        while chunk := await response.content.read(READ_SIZE):
            hasher.update(chunk)
            size += len(chunk)
    if f"sha256:{hasher.hexdigest()}" != digest:
        raise SystemExit(f"digest mismatch for {digest}")
    return size


async def pull(host: str, repo: str, tag: str, connections: int) -> tuple[int, float]:
    base = f"http://{host}/v2/{repo}"
    async with aiohttp.ClientSession(auto_decompress=False) as session:
        async with session.get(
            f"{base}/manifests/{tag}", headers={"Accept": MANIFEST_TYPES}
        ) as response:
            response.raise_for_status()
            manifest = json.loads(await response.read())
        started = time.perf_counter()
        slots = asyncio.Semaphore(connections)
        sizes = await asyncio.gather(
            *(
                fetch_and_hash(session, f"{base}/blobs/{layer['digest']}", layer["digest"], slots)
                for layer in manifest["layers"]
            )
        )
        return sum(sizes), time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("host")
    parser.add_argument("repo")
    parser.add_argument("tag")
    parser.add_argument("--connections", type=int, default=8)
    args = parser.parse_args()
    total, transfer = asyncio.run(pull(args.host, args.repo, args.tag, args.connections))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(
        f"{total} bytes hashed; process {time.perf_counter() - STARTED:.3f} s "
        f"(transfer {transfer:.3f} s), cpu {usage.ru_utime + usage.ru_stime:.3f} s "
        f"({args.connections} connections)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
