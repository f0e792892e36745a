"""``dockerdrag inspect`` and ``dockerdrag platforms``: describe an image without pulling it."""

from __future__ import annotations

import argparse
import json
import sys

from .cli_parser import (
    EXAMPLES,
    Subcommand,
    SubParsers,
    add_connection_options,
    add_json_option,
    add_logging_options,
)
from .cli_report import format_platform_line
from .cli_session import Options, make_puller, merge_options
from .config import Settings
from .errors import PlatformRequiredError, UsageError
from .manifest import Descriptor
from .progress import descriptor_json, inspection_json
from .pull_results import ImageInspection
from .safe_text import escape


def _declare_inspect(commands: SubParsers) -> argparse.ArgumentParser:
    inspect = commands.add_parser(
        "inspect",
        help="describe an image without pulling it",
        description="Show an image's digest, media type, platforms, layers and config "
        "without downloading layers.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    inspect.add_argument("image", metavar="IMAGE")
    inspect.add_argument(
        "--platform",
        metavar="OS/ARCH[/VARIANT]",
        help="the image of a multi-arch index to describe (env DOCKERDRAG_PLATFORM)",
    )
    shown = inspect.add_argument_group("output")
    shown.add_argument(
        "--raw",
        action="store_true",
        help="print the manifest bytes exactly as served (the index's without --platform)",
    )
    shown.add_argument(
        "--config", action="store_true", help="with --raw: print the image config bytes"
    )
    add_json_option(shown)
    add_connection_options(inspect)
    add_logging_options(inspect)
    return inspect


def _declare_platforms(commands: SubParsers) -> argparse.ArgumentParser:
    platforms = commands.add_parser(
        "platforms",
        help="list the platforms of an image",
        description="List the platforms of an image (the one of a single-platform image) "
        "as --platform options.",
    )
    platforms.add_argument("image", metavar="IMAGE")
    add_json_option(platforms)
    add_connection_options(platforms)
    add_logging_options(platforms)
    return platforms


async def list_platforms(args: argparse.Namespace, options: Options, image: str) -> int:
    """Print the platforms of ``image`` (``platforms`` and ``pull --list-platforms``)."""
    async with make_puller(args, options, image) as puller:
        entries = await puller.platforms(image)
        single = None if entries else await puller.inspect(image)
    if single is not None and single.config is not None:
        # The platform of a single-platform image is in its config.
        entries = [
            Descriptor(single.media_type, single.digest, len(single.raw), single.config.platform)
        ]
    if args.json:
        print(json.dumps([descriptor_json(entry) for entry in entries]))
        return 0
    if single is not None:
        print(f"{escape(image)} is a single-platform image", file=sys.stderr)
    for entry in entries:
        print(format_platform_line(entry))
    return 0


async def _run_platforms(args: argparse.Namespace, settings: Settings) -> int:
    return await list_platforms(args, merge_options(args, settings), args.image)


async def _run_inspect(args: argparse.Namespace, settings: Settings) -> int:
    options = merge_options(args, settings)
    if args.config and not args.raw:
        raise UsageError("--config goes with --raw (the config summary is always shown)")
    async with make_puller(args, options, args.image) as puller:
        found = await puller.inspect(args.image, platform=options.platform)
    if args.raw:
        sys.stdout.buffer.write(_raw_bytes(found, args.config, options.platform is not None))
        sys.stdout.flush()
    elif args.json:
        print(json.dumps(inspection_json(found), indent=2))
    else:
        print("\n".join(escape(line) for line in describe_inspection(found)))
    return 0


def _raw_bytes(found: ImageInspection, config: bool, platform_chosen: bool) -> bytes:
    if config or platform_chosen:
        if found.manifest is None or found.config is None:
            raise PlatformRequiredError(
                f"{found.reference} is a multi-platform image; choose one with --platform",
                available=found.platforms,
            )
        return found.config.raw if config else found.manifest.raw
    return found.raw


def _size(size: int) -> str:
    """``512 B``, ``1.2 kB``, ``3.4 MB`` (decimal units, as Docker prints them)."""
    if size < 1000:
        return f"{size} B"
    value = float(size)
    for unit in ("kB", "MB", "GB"):
        value /= 1000
        if value < 1000 or unit == "GB":
            break
    return f"{value:.1f} {unit}"


def describe_inspection(found: ImageInspection) -> list[str]:
    """The human-readable lines of ``dockerdrag inspect`` (registry text unescaped: one
    line each, escaped by the caller)."""
    lines = [
        f"Name:        {found.reference}",
        f"Digest:      {found.digest}",
        f"Media type:  {found.media_type}",
    ]
    if found.platforms:
        lines.append("Platforms:")
        lines += [f"  {format_platform_line(entry)}" for entry in found.platforms]
    if found.manifest is None or found.config is None:
        lines.append(
            "(a multi-platform image: choose one with --platform for its layers and config)"
        )
        return lines
    config = found.config
    if found.manifest.digest != found.digest:
        lines.append(f"Manifest:    {found.manifest.digest} ({found.manifest.media_type})")
    lines += [
        f"Platform:    {config.platform}",
        f"Image ID:    {config.digest}",
        f"Created:     {config.created or '-'}",
        f"Entrypoint:  {json.dumps(list(config.entrypoint)) if config.entrypoint else '-'}",
        f"Cmd:         {json.dumps(list(config.cmd)) if config.cmd else '-'}",
        f"WorkingDir:  {config.working_dir or '-'}",
        f"User:        {config.user or '-'}",
        "Env:",
        *[f"  {item}" for item in config.env],
        "Labels:",
        *[f"  {key}={value}" for key, value in sorted(config.labels.items())],
        f"Layers:      {len(found.layers)} ({_size(found.size)}, {found.size} bytes)",
        *[f"  {layer.digest}  {layer.size:>12}  {layer.media_type}" for layer in found.layers],
    ]
    return lines


INSPECT = Subcommand("inspect", _declare_inspect, _run_inspect)
PLATFORMS = Subcommand("platforms", _declare_platforms, _run_platforms)

__all__ = ["INSPECT", "PLATFORMS", "describe_inspection", "list_platforms"]
