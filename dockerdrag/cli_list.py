"""``dockerdrag pull -f LIST`` / ``--locked LOCK``: an image list into one bundle and its lock.

The options are read and the list and lock file parsed before any network I/O
(:func:`list_request`); :func:`pull_list` then runs :meth:`Puller.pull_list`.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import NamedTuple

from .errors import UsageError
from .image_list import ImageListEntry, read_image_list
from .lockfile import Lockfile, default_lock_path, read_lockfile
from .progress import Renderer
from .pull import Puller
from .pull_results import PullResult

__all__ = ["ListRequest", "add_list_options", "list_request", "pull_list"]


def add_list_options(parser: argparse.ArgumentParser) -> None:
    """The options of a list pull, in their own group of ``pull``'s help."""
    group = parser.add_argument_group(
        "image list (one bundle and a lock file)",
        "LIST has one image reference per line, optionally followed by --platform P\n"
        "(instead of the command's --platform) and --tag NAME:TAG (the name written\n"
        "into the archive); '#' starts a comment. The lock file records what every\n"
        "line resolved to: manifest (and index) digest, platform, config and layers.",
    )
    group.add_argument(
        "-f",
        "--file",
        metavar="LIST",
        help="pull the images LIST names into one archive (needs -o, no IMAGE arguments)",
    )
    group.add_argument(
        "--lock",
        metavar="FILE",
        help="where the lock file goes (default: beside the archive, bundle.tar -> "
        "bundle.lock.json); written once the archive is complete",
    )
    group.add_argument(
        "--locked",
        metavar="FILE",
        help="pull exactly the digests lock file FILE records, without resolving tags; a tag "
        "that moved since is reported, not followed. Its images are the list, or -f LIST "
        "must name the same ones",
    )


class ListRequest(NamedTuple):
    """A list pull as the command line asks for it, checked and parsed."""

    entries: list[ImageListEntry] | None  # None: the lock file's own list
    locked: Lockfile | None
    output: Path
    lock_output: Path
    platform: str | None

    @property
    def first_reference(self) -> str:
        """The first image (whose registry ``--username`` logs in to)."""
        if self.entries:
            return self.entries[0].reference
        return self.locked.images[0].reference if self.locked else ""


def list_request(args: argparse.Namespace, default_platform: str | None) -> ListRequest | None:
    """The list pull ``args`` ask for (``None`` without ``-f``/``--locked``); no network I/O.

    ``default_platform`` (``--platform`` or its environment default) applies to the
    lines of ``-f LIST`` naming none; a lock file alone takes only an explicit
    ``--platform`` (which it refuses: it records each image's platform).
    """
    if args.file is None and args.locked is None:
        if args.lock is not None:
            raise UsageError("--lock goes with -f LIST or --locked FILE")
        return None
    if args.images:
        raise UsageError("give images as arguments or in a list (-f), not both")
    if args.tag:
        raise UsageError("with a list, --tag goes on the image's line: IMAGE --tag NAME:TAG")
    if args.output is None:
        raise UsageError("a list goes into one archive: name it with -o")
    entries = read_image_list(args.file) if args.file is not None else None
    locked = read_lockfile(args.locked) if args.locked is not None else None
    output = Path(args.output)
    return ListRequest(
        entries=entries,
        locked=locked,
        output=output,
        lock_output=Path(args.lock) if args.lock is not None else default_lock_path(output),
        platform=default_platform if entries is not None else args.platform,
    )


async def pull_list(
    puller: Puller,
    request: ListRequest,
    output_format: str,
    renderer: Renderer,
) -> list[PullResult]:
    """Pull ``request`` into its archive, then write its lock file."""
    result = await puller.pull_list(
        request.entries,
        output=request.output,
        platform=request.platform,
        format=output_format,
        locked=request.locked,
        lock_output=request.lock_output,
        progress=renderer,
    )
    return list(result.results)
