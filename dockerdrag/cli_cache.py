"""``dockerdrag cache``: where the blob cache is and what it holds; ``cache prune``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

import anyio

from .cli_parser import (
    Subcommand,
    SubParsers,
    add_cache_dir_option,
    add_json_option,
    add_logging_options,
)
from .config import Settings
from .conventions import default_cache_dir
from .errors import OutputError, UsageError
from .human_units import format_bytes
from .store import describe_os_error

if TYPE_CHECKING:
    from .cache_admin import CacheSummary, PruneResult


def _declare(commands: SubParsers) -> argparse.ArgumentParser:
    cache = commands.add_parser(
        "cache",
        help="show the blob cache, or prune it",
        description="Show where the blob cache is, how big it is and how many blobs and "
        "partial downloads it holds; `cache prune` removes them (blobs other pulls are "
        "fetching or using stay).",
    )
    cache.add_argument(
        "action", nargs="?", choices=("show", "prune"), default="show", help="default: show"
    )
    add_cache_dir_option(cache, "blob cache")
    what = cache.add_argument_group("prune").add_mutually_exclusive_group()
    what.add_argument("--partials", action="store_true", help="only partial downloads")
    what.add_argument(
        "--unused-for",
        type=float,
        metavar="DAYS",
        help="only blobs and partials no pull used for DAYS days",
    )
    add_json_option(cache)
    add_logging_options(cache)
    return cache


def _show(summary: CacheSummary, as_json: bool) -> None:
    if as_json:
        print(json.dumps({**vars(summary), "root": str(summary.root)}))
        return
    print(f"Cache:     {summary.root}")
    print(f"Size:      {format_bytes(summary.total_bytes)} ({summary.total_bytes} bytes)")
    print(f"Blobs:     {summary.blobs} ({format_bytes(summary.blob_bytes)})")
    print(f"Partials:  {summary.partials} ({format_bytes(summary.partial_bytes)})")


def _report(result: PruneResult, as_json: bool) -> None:
    if as_json:
        print(json.dumps(vars(result)))
        return
    line = (
        f"Removed {result.blobs} blob(s) and {result.partials} partial download(s), "
        f"{format_bytes(result.bytes_freed)}"
    )
    if result.kept_in_use:
        line += f"; kept {result.kept_in_use} blob(s) running pulls use"
    print(line)


async def _run(args: argparse.Namespace, settings: Settings) -> int:
    # Imported when the command runs, so that other commands do not load it at start-up.
    from .cache_admin import prune, summarize

    given = args.cache_dir or settings.cache_dir
    root = Path(given).expanduser() if given else default_cache_dir()
    if args.action != "prune" and (args.partials or args.unused_for is not None):
        raise UsageError("--partials and --unused-for go with `dockerdrag cache prune`")
    if args.unused_for is not None and args.unused_for < 0:
        raise UsageError("--unused-for takes a number of days of at least 0")
    try:
        if args.action == "prune":
            result = await anyio.to_thread.run_sync(
                lambda: prune(root, partials_only=args.partials, unused_days=args.unused_for)
            )
            _report(result, args.json)
        else:
            _show(await anyio.to_thread.run_sync(summarize, root), args.json)
    except OSError as exc:
        doing = "pruning" if args.action == "prune" else "reading"
        raise OutputError(describe_os_error(exc, f"{doing} the cache {root}")) from exc
    return 0


CACHE = Subcommand("cache", _declare, _run)

__all__ = ["CACHE"]
