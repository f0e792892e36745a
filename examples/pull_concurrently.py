"""Pull several images concurrently with one shared client.

Usage::

    python examples/pull_concurrently.py OUTDIR IMAGE [IMAGE ...] [--platform linux/amd64]
        [--insecure HOST:PORT]

Each image is written to OUTDIR/<repo>.tar (an existing directory given as
``output`` gets the archive under its default name). The pulls share one HTTP session,
one token cache and one blob cache, so layers common to several images are
downloaded once.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from dockerdrag import DockerDragError, Puller, PullResult


async def pull_all(
    images: list[str], outdir: Path, platform: str | None, insecure: list[str]
) -> list[PullResult]:
    outdir.mkdir(parents=True, exist_ok=True)
    async with Puller(insecure=insecure, concurrency=4) as puller:
        tasks = [puller.pull(image, platform=platform, output=outdir) for image in images]
        return list(await asyncio.gather(*tasks))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("outdir", type=Path)
    parser.add_argument("images", nargs="+")
    parser.add_argument("--platform", help="e.g. linux/arm64 (needed for a multi-platform image)")
    parser.add_argument("--insecure", action="append", default=[])
    args = parser.parse_args()
    try:
        results = asyncio.run(pull_all(args.images, args.outdir, args.platform, args.insecure))
    except DockerDragError as exc:
        print(f"error: {exc}")
        return exc.exit_code
    for result in results:
        layers = len(result.layers)
        print(f"{result.reference} -> {result.output} ({result.image_id}, {layers} layers)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
