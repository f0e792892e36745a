"""Pull an image list into one bundle with a lock file, or pull a lock file's digests again.

Usage::

    python examples/locked_bundle.py OUTPUT.tar --list images.txt [--platform linux/amd64]
        [--insecure HOST:PORT]
    python examples/locked_bundle.py OUTPUT.tar --locked OUTPUT.lock.json [--insecure ...]

The first form writes OUTPUT.tar and, once it is complete, OUTPUT.lock.json beside
it: the digests every line of the list resolved to. The second pulls exactly those
digests again (the same bytes, even after a tag moved) and says which tags moved.
``--platform`` is the platform of the list's lines that name none of their own.
"""

from __future__ import annotations

import argparse

import anyio

from dockerdrag import (
    DockerDragError,
    ListPullResult,
    Puller,
    default_lock_path,
    read_image_list,
    read_lockfile,
)


async def bundle(
    output: str,
    image_list: str | None,
    lock_file: str | None,
    platform: str | None,
    insecure: list[str],
) -> ListPullResult:
    """Pull the list (or the lock file's images) into ``output`` and write its lock."""
    entries = read_image_list(image_list) if image_list else None
    locked = read_lockfile(lock_file) if lock_file else None
    async with Puller(insecure=insecure) as puller:
        return await puller.pull_list(
            entries,
            output=output,
            platform=platform,
            locked=locked,
            lock_output=default_lock_path(output),
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--list", help="image list: one reference per line")
    source.add_argument("--locked", help="lock file of an earlier bundle")
    parser.add_argument("--platform", help="e.g. linux/arm64 (for lines that name none)")
    parser.add_argument("--insecure", action="append", default=[])
    args = parser.parse_args()
    try:
        result = anyio.run(
            bundle, args.output, args.list, args.locked, args.platform, args.insecure
        )
    except DockerDragError as exc:
        print(f"error: {exc}")
        return exc.exit_code
    for image, pulled in zip(result.lock.images, result.results, strict=True):
        print(f"{image.reference}: {image.resolved_digest} ({len(pulled.layers)} layers)")
    for move in result.moved_tags:
        print(f"{move.reference} moved to {move.current}; kept the locked {move.locked}")
    print(f"wrote {args.output} and {default_lock_path(args.output)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
