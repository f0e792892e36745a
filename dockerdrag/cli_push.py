"""``dockerdrag push ARCHIVE DEST``: an archive's images into a registry."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from .cli_credentials import command_line_credentials
from .cli_parser import (
    Subcommand,
    SubParsers,
    add_cache_dir_option,
    add_concurrency_option,
    add_connection_options,
    add_logging_options,
    add_quiet_or_json_options,
    positive_int,
)
from .cli_session import merge_options
from .config import Settings
from .errors import UsageError
from .safe_text import escape
from .transfer_options import UPLOAD_CHUNK_SIZE

if TYPE_CHECKING:
    from .push_progress import PushRenderer

EXAMPLES = """\
examples:
  dockerdrag push bundle.tar registry.internal:5000/team
  dockerdrag push nginx-oci.tar registry.internal:5000/mirror --ca-cert ca.pem
  dockerdrag push app.tar --image app:1.2=registry.internal:5000/prod/app:1.2
  dockerdrag push ./layout-dir 127.0.0.1:5000/test --insecure 127.0.0.1:5000 --json
"""


def _declare(commands: SubParsers) -> argparse.ArgumentParser:
    push = commands.add_parser(
        "push",
        help="push the images of an archive into a registry",
        description="Push every image of ARCHIVE (a tar written by dockerdrag or docker save, "
        "or an OCI layout directory) into a registry, under DEST with its own name, after "
        "checking every blob of the archive. Manifests of OCI archives are pushed as they "
        "are (the registry serves the same digests); images of legacy docker archives get "
        "their layers gzipped again and a new manifest.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    what = push.add_argument_group("what to push")
    what.add_argument("archive", metavar="ARCHIVE", help="the archive file or OCI directory")
    what.add_argument(
        "destination",
        metavar="DEST",
        nargs="?",
        help="repository every image goes under with its name (registry.internal:5000/team: "
        "busybox:1.36 -> registry.internal:5000/team/busybox:1.36), or a registry alone",
    )
    what.add_argument(
        "--image",
        action="append",
        default=[],
        metavar="NAME=DEST:TAG",
        help="push the archive's image NAME (or its digest) to DEST:TAG instead (repeatable; "
        "without DEST only these images are pushed)",
    )
    upload = push.add_argument_group("upload")
    add_concurrency_option(upload, "blobs uploaded at once")
    upload.add_argument(
        "--chunk-size",
        type=positive_int,
        default=UPLOAD_CHUNK_SIZE >> 20,
        metavar="MiB",
        help=f"bytes per upload request, in MiB (default {UPLOAD_CHUNK_SIZE >> 20}); an "
        "interrupted upload resumes after the last chunk the registry took",
    )
    add_cache_dir_option(upload, "where re-compressed layers wait")
    add_connection_options(push, mirrors=False)
    display = push.add_argument_group("progress display")
    add_quiet_or_json_options(display, "print only the pushed references")
    add_logging_options(push)
    return push


def _renames(pairs: list[str]) -> dict[str, str]:
    renames: dict[str, str] = {}
    for pair in pairs:
        name, equals, target = pair.partition("=")
        if not equals or not name or not target:
            raise UsageError(f"--image {pair!r}: expected NAME=DEST:TAG")
        renames[name] = target
    return renames


def _renderer(args: argparse.Namespace) -> PushRenderer:
    from .push_progress import JsonPushProgress, PlainPushProgress, SilentPushProgress

    if args.json:
        return JsonPushProgress()
    if args.quiet:
        return SilentPushProgress()
    return PlainPushProgress()


async def _run(args: argparse.Namespace, settings: Settings) -> int:
    # Imported when the command runs, so that other commands do not load it at start-up.
    from .push import push_archive

    options = merge_options(args, settings)
    renames = _renames(args.image)
    destination: str | None = args.destination
    target_host = destination or next(iter(renames.values()), None)
    if target_host is None:
        raise UsageError("give a destination repository or --image NAME=DEST:TAG")
    renderer = _renderer(args)
    result = await push_archive(
        args.archive,
        destination,
        renames=renames,
        insecure=options.insecure,
        ca_cert=args.ca_cert,
        credentials=command_line_credentials(args, target_host),
        concurrency=options.concurrency,
        chunk_size=args.chunk_size << 20,
        cache_dir=options.cache_dir,
        progress=renderer,
    )
    renderer.finished(result)
    if not args.json:
        for image in result.images:
            print(escape(f"{image.reference}@{image.digest}"), file=sys.stdout)
    return 0


PUSH = Subcommand("push", _declare, _run)

__all__ = ["PUSH"]
