"""``dockerdrag pull`` (also ``dockerdrag IMAGE``): images into an archive."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .cli_inspect import list_platforms
from .cli_list import add_list_options, list_request, pull_list
from .cli_parser import (
    EPILOG,
    Subcommand,
    SubParsers,
    add_cache_dir_option,
    add_concurrency_option,
    add_connection_options,
    add_logging_options,
    add_progress_option,
    add_quiet_or_json_options,
    non_negative_int,
    positive_float,
    stderr_is_terminal,
)
from .cli_session import Options, make_puller, merge_options
from .config import Settings
from .errors import UsageError
from .low_speed import LowSpeedLimit
from .progress import Renderer, choose_renderer
from .pull import FORMATS, Puller
from .pull_results import PullResult


def _declare(commands: SubParsers) -> argparse.ArgumentParser:
    pull = commands.add_parser(
        "pull",
        help="pull images into an archive (the default command)",
        description="Pull IMAGE (or several into one archive) into a tarball that "
        "`docker load` accepts.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    what = pull.add_argument_group("what to pull")
    what.add_argument(
        "images",
        metavar="IMAGE",
        nargs="*",
        help="image reference, e.g. busybox:1.36; several go into one archive (needs -o)",
    )
    what.add_argument(
        "--platform",
        metavar="OS/ARCH[/VARIANT]",
        help="platform to pull from a multi-arch image; with --format oci/oci-dir also a "
        "comma-separated list, or 'all': every manifest the index lists, attestations "
        "included, so the layout is complete (env DOCKERDRAG_PLATFORM)",
    )
    what.add_argument(
        "--include-attestations",
        action="store_true",
        help="keep attestation manifests (SBOM, provenance) in oci formats (implied by "
        "--platform all)",
    )
    what.add_argument(
        "--include-foreign",
        action="store_true",
        help="fetch foreign (non-distributable) layers from the URLs their descriptors name, "
        "without credentials; by default oci formats keep them as references and the docker "
        "format refuses such images",
    )
    what.add_argument(
        "--list-platforms", action="store_true", help="list the platforms of IMAGE and exit"
    )
    output = pull.add_argument_group("archive")
    output.add_argument(
        "-o",
        "--output",
        metavar="PATH",
        help="archive path (default: <repo_with_underscores>.tar in the current directory, or "
        "in PATH when PATH is a directory); for oci-dir the layout directory (default: "
        "<repo_with_underscores>; must not exist or be empty)",
    )
    output.add_argument(
        "--format",
        choices=FORMATS,
        default="docker",
        help="docker: legacy `docker save` archive (default); oci: OCI layout + manifest.json "
        "in one tar, layers kept compressed (Docker 25+ shape); oci-dir: OCI layout directory",
    )
    output.add_argument(
        "--tag",
        action="append",
        metavar="NAME:TAG",
        help="name to write into the archive instead of IMAGE's own (one per IMAGE)",
    )
    download = pull.add_argument_group("download")
    add_concurrency_option(download, "parallel downloads")
    download.add_argument(
        "--low-speed-limit",
        type=non_negative_int,
        metavar="BYTES",
        help="a download bringing fewer bytes a second than this over --low-speed-time is "
        f"retried, then fails (default {LowSpeedLimit().bytes_per_second}; 0: no limit; "
        "env DOCKERDRAG_LOW_SPEED_LIMIT)",
    )
    download.add_argument(
        "--low-speed-time",
        type=positive_float,
        metavar="SECONDS",
        help=f"the window of --low-speed-limit (default {LowSpeedLimit().seconds:g}; "
        "env DOCKERDRAG_LOW_SPEED_TIME)",
    )
    add_cache_dir_option(download, "blob cache")
    add_connection_options(pull)
    display = pull.add_argument_group("progress display")
    shown = add_quiet_or_json_options(display, "print only the output path")
    add_progress_option(
        shown,
        "auto: a live display when stderr is a terminal, else one line per layer "
        "(default); tty: always the live display; plain: always lines",
    )
    add_list_options(pull)
    add_logging_options(pull)
    return pull


def _renderer(args: argparse.Namespace) -> Renderer:
    mode = "json" if args.json else "quiet" if args.quiet else args.progress
    return choose_renderer(mode, stream_is_terminal=stderr_is_terminal())


async def _run(args: argparse.Namespace, settings: Settings) -> int:
    options = merge_options(args, settings)
    if args.list_platforms:
        if len(args.images) != 1:
            raise UsageError("--list-platforms takes one IMAGE")
        return await list_platforms(args, options, args.images[0])
    request = list_request(args, options.platform)
    if request is None and not args.images:
        raise UsageError("give an IMAGE to pull, or a list of them with -f LIST")
    renderer = _renderer(args)
    first = request.first_reference if request else args.images[0]
    async with make_puller(args, options, first) as puller:
        with renderer:
            if request is None:
                results = await _pull(puller, args, options, renderer)
            else:
                results = await pull_list(puller, request, args.format, renderer)
            renderer.finished(results)
    if request is not None and not (args.json or args.quiet):
        print(f"Lock file: {request.lock_output}", file=sys.stderr)
    if not args.json:
        if not args.quiet:
            _note_untagged(results)
        print(Path(results[0].output))
    return 0


def _note_untagged(results: list[PullResult]) -> None:
    """One line on stderr per image pulled by digest alone: no name goes into the archive."""
    for result in results:
        if not result.repo_tags:
            print(
                f"{result.reference} was pulled by digest: the archive loads untagged "
                "(docker load shows its image ID); --tag NAME:TAG names it",
                file=sys.stderr,
            )


async def _pull(
    puller: Puller, args: argparse.Namespace, options: Options, renderer: Renderer
) -> list[PullResult]:
    images: list[str] = args.images
    tags: list[str] | None = args.tag
    if tags is not None and len(tags) != len(images):
        raise UsageError("give one --tag per IMAGE")
    if len(images) == 1:
        tag = tags[0] if tags else None
        result = await puller.pull(
            images[0],
            platform=options.platform,
            output=args.output,
            tag=tag,
            format=args.format,
            progress=renderer,
        )
        return [result]
    if args.output is None:
        raise UsageError("several images go into one archive: name it with -o")
    return await puller.pull_many(
        images,
        output=args.output,
        platform=options.platform,
        tags=tags,
        format=args.format,
        progress=renderer,
    )


PULL = Subcommand("pull", _declare, _run)

__all__ = ["PULL"]
