"""Pull several images into ONE archive that ``docker load`` loads at once.

Usage::

    python examples/bundle.py OUTPUT.tar IMAGE [IMAGE ...] [--platform linux/amd64]
        [--insecure HOST:PORT]

Layers shared by the images are downloaded and stored once.
"""

from __future__ import annotations

import argparse

import anyio

from dockerdrag import DockerDragError, PullResult, pull_images


async def bundle(
    output: str, images: list[str], platform: str | None, insecure: list[str]
) -> list[PullResult]:
    """Pull ``images`` into ``output``; one result per image."""
    return await pull_images(images, output=output, platform=platform, insecure=insecure)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output")
    parser.add_argument("images", nargs="+")
    parser.add_argument("--platform", help="e.g. linux/arm64 (needed for a multi-platform image)")
    parser.add_argument("--insecure", action="append", default=[])
    args = parser.parse_args()
    try:
        results = anyio.run(bundle, args.output, args.images, args.platform, args.insecure)
    except DockerDragError as exc:
        print(f"error: {exc}")
        return exc.exit_code
    for result in results:
        print(f"{result.reference}: {result.image_id} ({len(result.layers)} layers)")
    print(f"wrote {args.output}: load it with `docker load -i {args.output}`")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
