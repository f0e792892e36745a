"""Verify carried image archives offline before loading or pushing them.

Usage::

    python examples/verify_archive.py ARCHIVE [ARCHIVE ...] [--complete]

Checks every blob's sha256 and size, every layer's diff_id and every reference
between manifest.json, index.json, manifests and configs, without a network and
without unpacking. Prints one line per image, or the first broken member and
exits with the error's code (6 for damage).
"""

from __future__ import annotations

import argparse

import anyio

from dockerdrag import DockerDragError, VerifiedArchive, verify_archive


async def verify_all(paths: list[str], complete: bool) -> list[VerifiedArchive]:
    """Verify each archive in turn; the first problem is raised."""
    return [await verify_archive(path, require_complete=complete) for path in paths]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("archives", nargs="+")
    parser.add_argument("--complete", action="store_true", help="refuse sparse OCI layouts")
    args = parser.parse_args()
    try:
        verified = anyio.run(verify_all, args.archives, args.complete)
    except DockerDragError as exc:
        print(f"damaged: {str(exc)!a}")
        return exc.exit_code
    for archive in verified:
        for image in archive.images:
            names = ", ".join(ascii(tag) for tag in image.repo_tags) or "(untagged)"
            print(f"{archive.path}: {names} {image.config.digest} ({len(image.layers)} layers)")
        print(f"{archive.path}: OK, {archive.files} files, {archive.total_size} bytes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
