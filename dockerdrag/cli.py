"""The ``dockerdrag`` command line.

Uses the public API; prints errors as one line (or, with ``--json``, one JSON
error object on stdout) and exits with the error's ``exit_code``: 0 ok, 1 error,
2 usage, 3 auth, 4 not found, 5 network/registry, 6 integrity, 7 output,
130 interrupted. Defaults come from ``DOCKERDRAG_*`` environment variables
(:mod:`dockerdrag.config`).
"""

from __future__ import annotations

import argparse
import ctypes
import json
import logging
import os
import sys
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import anyio

from . import __version__
from .auth import Credentials
from .config import VARIABLES, Settings, load_settings
from .errors import DockerDragError, PlatformRequiredError, UsageError
from .manifest import Descriptor
from .progress import (
    Renderer,
    choose_renderer,
    descriptor_json,
    dump_json,
    error_json,
    inspection_json,
)
from .pull import DEFAULT_CONCURRENCY, FORMATS, ImageInspection, Puller, PullResult
from .reference import Reference

SUBCOMMANDS = ("pull", "platforms", "inspect")
# Flags every command takes; given before the command they are moved after it.
GLOBAL_FLAGS = ("-v", "-vv", "-vvv", "--verbose", "--debug", "--json", "-q", "--quiet")
INTERRUPTED = 130
INTERNAL_ERROR = 1

EXAMPLES = """\
examples:
  dockerdrag hello-world --platform linux/amd64
  dockerdrag pull mysql/mysql-server:8.0 -o mysql.tar
  dockerdrag pull alpine:3.20 busybox:1.36 -o bundle.tar --platform linux/amd64
  dockerdrag pull nginx --format oci --platform all -o nginx-oci.tar
  dockerdrag pull busybox --json | jq -c 'select(.event != "layer")'
  dockerdrag inspect nginx --platform linux/arm64
  dockerdrag inspect busybox --raw --config --platform linux/amd64 | jq .
  dockerdrag platforms busybox
  dockerdrag pull 127.0.0.1:5000/team/app:1.2 --insecure 127.0.0.1:5000
  echo "$TOKEN" | dockerdrag pull registry.example.com/app --username me --password-stdin
"""

ENVIRONMENT = "environment (a command-line option wins; repeatable options add to the list):\n" + (
    "\n".join(f"  {name:<31} {meaning}" for name, meaning in VARIABLES.items())
)

EXIT_CODES = """\
exit codes: 0 ok, 1 error, 2 usage, 3 authentication, 4 not found,
            5 network/registry, 6 integrity (digest mismatch), 7 output, 130 interrupted
"""

EPILOG = f"{EXAMPLES}\n{ENVIRONMENT}\n\n{EXIT_CODES}"

log = logging.getLogger("dockerdrag")


class _ArgumentError(Exception):
    """A command-line mistake found by argparse (reported as usage, exit 2)."""

    def __init__(self, parser: argparse.ArgumentParser, message: str) -> None:
        super().__init__(message)
        self.parser = parser
        self.message = message


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser that raises instead of exiting, so ``--json`` can report it."""

    def error(self, message: str) -> NoReturn:
        raise _ArgumentError(self, message)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


# --------------------------------------------------------------------------- parser


def _add_connection_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("registry connection")
    group.add_argument(
        "--insecure",
        action="append",
        default=[],
        metavar="HOST[:PORT]",
        help="allow plain HTTP or unverified TLS for this registry (repeatable; "
        "env DOCKERDRAG_INSECURE_REGISTRIES)",
    )
    group.add_argument("--ca-cert", metavar="FILE", help="extra CA certificate (PEM) to trust")
    group.add_argument(
        "--registry-mirror",
        action="append",
        default=[],
        metavar="URL",
        help="Docker Hub mirror tried before the origin, like dockerd's registry-mirrors "
        "(repeatable; an http:// URL is allowed plain HTTP; env DOCKERDRAG_REGISTRY_MIRRORS)",
    )
    group.add_argument("--username", "-u", help="registry username")
    group.add_argument(
        "--password-stdin", action="store_true", help="read the password or token from stdin"
    )


def _add_logging_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("logging (on stderr)")
    group.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="more detail: -v mirror fallbacks, refetches and resumed downloads; "
        "-vv every request and retry",
    )
    group.add_argument(
        "--debug",
        action="store_true",
        help="every request (never a secret) and a traceback on internal errors",
    )


def _add_json_option(group: argparse._ActionsContainer) -> None:
    group.add_argument(
        "--json", action="store_true", help="machine-readable JSON on stdout (errors too)"
    )


def _add_pull_parser(commands: argparse._SubParsersAction[_Parser]) -> None:
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
        nargs="+",
        help="image reference, e.g. busybox:1.36; several go into one archive (needs -o)",
    )
    what.add_argument(
        "--platform",
        metavar="OS/ARCH[/VARIANT]",
        help="platform to pull from a multi-arch image; with --format oci/oci-dir also a "
        "comma-separated list or 'all' (env DOCKERDRAG_PLATFORM)",
    )
    what.add_argument(
        "--include-attestations",
        action="store_true",
        help="keep attestation manifests (SBOM, provenance) in oci formats",
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
        help="archive path (default: <repo_with_underscores>.tar; a directory for oci-dir)",
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
    download.add_argument(
        "--concurrency",
        type=_positive_int,
        metavar="N",
        help=f"parallel downloads (default {DEFAULT_CONCURRENCY}; env DOCKERDRAG_CONCURRENCY)",
    )
    download.add_argument(
        "--cache-dir",
        metavar="DIR",
        help="blob cache (default ~/.cache/dockerdrag; env DOCKERDRAG_CACHE_DIR)",
    )
    _add_connection_options(pull)
    display = pull.add_argument_group("progress display")
    shown = display.add_mutually_exclusive_group()
    shown.add_argument("-q", "--quiet", action="store_true", help="print only the output path")
    _add_json_option(shown)
    shown.add_argument(
        "--progress",
        choices=("auto", "tty", "plain"),
        default="auto",
        help="auto: a live display when stderr is a terminal, else one line per layer "
        "(default); tty: always the live display; plain: always lines",
    )
    _add_logging_options(pull)


def _add_inspect_parser(commands: argparse._SubParsersAction[_Parser]) -> None:
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
    _add_json_option(shown)
    _add_connection_options(inspect)
    _add_logging_options(inspect)


def _add_platforms_parser(commands: argparse._SubParsersAction[_Parser]) -> None:
    platforms = commands.add_parser(
        "platforms",
        help="list the platforms of a multi-arch image",
        description="List the platforms of a multi-arch image as --platform options.",
    )
    platforms.add_argument("image", metavar="IMAGE")
    _add_json_option(platforms)
    _add_connection_options(platforms)
    _add_logging_options(platforms)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for documentation and tests)."""
    parser = _Parser(
        prog="dockerdrag",
        description="Pull container images from Docker/OCI registries into tarballs that "
        "`docker load` accepts, without a Docker daemon. `dockerdrag IMAGE` means "
        "`dockerdrag pull IMAGE`.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"dockerdrag {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_pull_parser(commands)
    _add_inspect_parser(commands)
    _add_platforms_parser(commands)
    return parser


def _normalise_argv(argv: Sequence[str]) -> list[str]:
    """``dockerdrag IMAGE ...`` means ``dockerdrag pull IMAGE ...``; flags may lead."""
    args = list(argv)
    leading = 0
    while leading < len(args) and args[leading] in GLOBAL_FLAGS:
        leading += 1
    flags, rest = args[:leading], args[leading:]
    if rest and rest[0] in ("-h", "--help", "--version"):
        return args
    if rest and rest[0] in SUBCOMMANDS:
        return [rest[0], *flags, *rest[1:]]
    return ["pull", *args]


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class _Options:
    """Command-line options merged over the environment's defaults."""

    insecure: tuple[str, ...]
    mirrors: tuple[str, ...]
    cache_dir: str | Path | None
    concurrency: int
    platform: str | None


def _options(args: argparse.Namespace, settings: Settings) -> _Options:
    return _Options(
        insecure=(*args.insecure, *settings.insecure_registries),
        mirrors=(*args.registry_mirror, *settings.registry_mirrors),
        cache_dir=getattr(args, "cache_dir", None) or settings.cache_dir,
        concurrency=getattr(args, "concurrency", None)
        or settings.concurrency
        or DEFAULT_CONCURRENCY,
        platform=getattr(args, "platform", None) or settings.platform,
    )


def _credentials(args: argparse.Namespace, image: str) -> dict[str, Credentials]:
    if not args.username and not args.password_stdin:
        return {}
    if not args.username or not args.password_stdin:
        raise UsageError("--username and --password-stdin go together")
    password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        raise UsageError("--password-stdin: no password on standard input")
    host = Reference.parse(image).registry_host
    return {host: Credentials(username=args.username, password=password)}


def _puller(args: argparse.Namespace, options: _Options, image: str) -> Puller:
    return Puller(
        insecure=options.insecure,
        ca_cert=args.ca_cert,
        credentials=_credentials(args, image),
        registry_mirrors=options.mirrors,
        cache_dir=options.cache_dir,
        concurrency=options.concurrency,
        include_attestations=getattr(args, "include_attestations", False),
        include_foreign=getattr(args, "include_foreign", False),
    )


# --------------------------------------------------------------------------- logging


class _StderrHandler(logging.Handler):
    """Writes to whatever ``sys.stderr`` is now (the live display redirects it)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
            sys.stderr.flush()
        except Exception:  # pragma: no cover - logging must never break a pull
            self.handleError(record)


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return f"dockerdrag: {record.levelname.lower()}: {record.getMessage()}"


def configure_logging(verbosity: int, debug: bool) -> None:
    """Send the ``dockerdrag`` logger to stderr: warnings, -v info, -vv/--debug debug."""
    if debug or verbosity >= 2:
        level = logging.DEBUG
    else:
        level = logging.INFO if verbosity == 1 else logging.WARNING
    logger = logging.getLogger("dockerdrag")
    for handler in [h for h in logger.handlers if isinstance(h, _StderrHandler)]:
        logger.removeHandler(handler)
    handler = _StderrHandler()
    handler.setFormatter(_Formatter())
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False


# --------------------------------------------------------------------------- commands


def format_platform_line(entry: Descriptor) -> str:
    """One line of the platform list, in the original docker-drag format."""
    platform = entry.platform
    if platform is None:
        return f"# (no platform)  (digest: {entry.digest})"
    return f"--platform {platform!s:<16}  # {platform.describe()} (digest: {entry.digest})"


async def _platforms_command(args: argparse.Namespace, options: _Options, image: str) -> int:
    async with _puller(args, options, image) as puller:
        entries = await puller.platforms(image)
    if args.json:
        print(json.dumps([descriptor_json(entry) for entry in entries]))
        return 0
    if not entries:
        print(f"{image} is a single-platform image", file=sys.stderr)
        return 0
    for entry in entries:
        print(format_platform_line(entry))
    return 0


def _renderer(args: argparse.Namespace) -> Renderer:
    mode = "json" if args.json else "quiet" if args.quiet else args.progress
    terminal = sys.stderr.isatty() and os.environ.get("TERM") != "dumb"
    return choose_renderer(mode, stream_is_terminal=terminal)


async def _pull_command(args: argparse.Namespace, options: _Options) -> int:
    renderer = _renderer(args)
    async with _puller(args, options, args.images[0]) as puller:
        with renderer:
            results = await _pull(puller, args, options, renderer)
            renderer.finished(results)
    if not args.json:
        print(Path(results[0].output))
    return 0


async def _pull(
    puller: Puller, args: argparse.Namespace, options: _Options, renderer: Renderer
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


async def _inspect_command(args: argparse.Namespace, options: _Options) -> int:
    if args.config and not args.raw:
        raise UsageError("--config goes with --raw (the config summary is always shown)")
    async with _puller(args, options, args.image) as puller:
        found = await puller.inspect(args.image, platform=options.platform)
    if args.raw:
        sys.stdout.buffer.write(_raw_bytes(found, args.config, options.platform is not None))
        sys.stdout.flush()
    elif args.json:
        print(json.dumps(inspection_json(found), indent=2))
    else:
        print("\n".join(describe_inspection(found)))
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
    """The human-readable lines of ``dockerdrag inspect``."""
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


async def _run(args: argparse.Namespace, settings: Settings) -> int:
    options = _options(args, settings)
    if args.command == "platforms":
        return await _platforms_command(args, options, args.image)
    if args.command == "inspect":
        return await _inspect_command(args, options)
    if args.list_platforms:
        return await _platforms_command(args, options, args.images[0])
    return await _pull_command(args, options)


# --------------------------------------------------------------------------- errors


def _leaf_error(error: BaseException) -> BaseException:
    """The most meaningful exception inside an exception group."""
    if not isinstance(error, BaseExceptionGroup):
        return error
    leaves = [_leaf_error(inner) for inner in error.exceptions]
    for leaf in leaves:
        if isinstance(leaf, DockerDragError | KeyboardInterrupt):
            return leaf
    return leaves[0]


def _report(error: BaseException, code: int, json_mode: bool) -> int:
    """Print ``error`` for a person (stderr) and, with --json, for a program (stdout)."""
    if json_mode:
        dump_json(error_json(error, code), sys.stdout)
    if isinstance(error, KeyboardInterrupt):
        print("dockerdrag: interrupted; downloaded blobs are kept in the cache", file=sys.stderr)
    elif isinstance(error, PlatformRequiredError):
        print(f"{error}. Available platforms:", file=sys.stderr)
        for offered in error.available:
            if isinstance(offered, Descriptor):
                print(format_platform_line(offered), file=sys.stderr)
    elif isinstance(error, DockerDragError):
        print(f"dockerdrag: error: {error}", file=sys.stderr)
    else:
        print(
            f"dockerdrag: error: internal error: {type(error).__name__}: {error} "
            "(run with --debug for the traceback)",
            file=sys.stderr,
        )
    return code


def _exit_code(error: BaseException) -> int:
    if isinstance(error, DockerDragError):
        return error.exit_code
    return INTERRUPTED if isinstance(error, KeyboardInterrupt) else INTERNAL_ERROR


def _execute(args: argparse.Namespace, settings: Settings) -> int:
    try:
        return anyio.run(_run, args, settings)
    except (Exception, KeyboardInterrupt) as raised:
        error = _leaf_error(raised)
        if args.debug and not isinstance(error, DockerDragError | KeyboardInterrupt):
            traceback.print_exception(raised)
        return _report(error, _exit_code(error), args.json)


def _usage_error(error: _ArgumentError, json_mode: bool) -> int:
    error.parser.print_usage(sys.stderr)
    print(f"{error.parser.prog}: error: {error.message}", file=sys.stderr)
    if json_mode:
        dump_json(error_json(UsageError(error.message), 2), sys.stdout)
    return 2


def _limit_malloc_arenas() -> None:
    """At most two glibc malloc arenas: otherwise each worker thread keeps its own pool
    of freed 256 KiB-1 MiB buffers, which shows as peak RSS growing with image size
    (measured with the benchmark: a few MB less on a 1 GB pull; one arena saved more
    but cost ~15 % in speed through lock contention).

    ``mallopt`` is looked up among the symbols already loaded into the process (the C
    library is one): ``ctypes.util.find_library`` would run ``ldconfig -p`` (~4 ms)."""
    try:
        libc = ctypes.CDLL(None)
        libc.mallopt(_M_ARENA_MAX, 2)
    except (OSError, AttributeError):  # not glibc: nothing to tune
        pass


_M_ARENA_MAX = -8


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``dockerdrag`` command."""
    _limit_malloc_arenas()
    raw = list(sys.argv[1:] if argv is None else argv)
    json_mode = "--json" in raw
    parser = build_parser()
    try:
        args = parser.parse_args(_normalise_argv(raw))
    except _ArgumentError as error:
        return _usage_error(error, json_mode)
    if args.command is None:
        parser.print_usage(sys.stderr)
        return 2
    configure_logging(args.verbose, args.debug)
    try:
        settings = load_settings(os.environ)
    except UsageError as error:
        return _report(error, error.exit_code, args.json)
    return _execute(args, settings)


if __name__ == "__main__":
    sys.exit(main())
