"""Carry images across an air gap: push an archive's images into the registry there.

Usage::

    python examples/push_archive.py ARCHIVE DEST [--insecure HOST:PORT]

``ARCHIVE`` is what ``dockerdrag pull`` (any ``--format``) or ``docker save`` wrote, or an
OCI layout directory; ``DEST`` a repository such as ``registry.internal:5000/team``, under
which every image goes with its own name. The archive is checked whole before anything is
sent; the progress of each blob is printed as it finishes.
"""

from __future__ import annotations

import argparse

import anyio

from dockerdrag import (
    DockerDragError,
    LayerPhase,
    LayerProgress,
    ManifestPushed,
    PushEvent,
    PushResult,
    PushStarted,
    push_archive,
)

_UNFINISHED = (LayerPhase.WAITING, LayerPhase.UPLOADING)


def show(event: PushEvent) -> None:
    """Print each image, each blob as it ends up in the registry, and each manifest."""
    if isinstance(event, PushStarted):
        print(f"pushing {event.source} -> {event.reference}: {len(event.layers)} blobs")
    elif isinstance(event, ManifestPushed):
        how = "a new manifest" if event.rewritten else "the archive's manifest"
        print(f"{event.reference}: {event.digest} ({how})")
    elif isinstance(event, LayerProgress) and event.phase not in _UNFINISHED:
        print(f"blob {event.digest.short}: {event.phase}")


async def push(archive: str, destination: str, insecure: list[str]) -> PushResult:
    """Push every image of ``archive`` under ``destination``."""
    return await push_archive(archive, destination, insecure=insecure, progress=show)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("archive")
    parser.add_argument("destination")
    parser.add_argument("--insecure", action="append", default=[])
    args = parser.parse_args()
    try:
        result = anyio.run(push, args.archive, args.destination, args.insecure)
    except DockerDragError as exc:
        print(f"error: {exc}")
        return exc.exit_code
    print(
        f"done: {len(result.images)} image(s), {result.uploaded} blobs uploaded, "
        f"{result.existing} already there, {result.mounted} mounted"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
