"""The ``dockerdrag`` command line: the table of subcommands and the entry point.

Uses the public API; prints errors as one line (or, with ``--json``, one JSON
error object on stdout) and exits with the error's ``exit_code``: 0 ok, 1 error,
2 usage, 3 auth, 4 not found, 5 network/registry, 6 integrity, 7 output,
130 interrupted. Defaults come from ``DOCKERDRAG_*`` environment variables
(:mod:`dockerdrag.config`).

Each subcommand is a :class:`~dockerdrag.cli_parser.Subcommand` in a module of its
own; adding one is adding it to ``COMMANDS``. ``dockerdrag IMAGE`` means
``dockerdrag pull IMAGE``; ``dockerdrag help [COMMAND]`` prints a command's help.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Sequence

import anyio

from . import __version__
from .cli_cache import CACHE
from .cli_inspect import INSPECT, PLATFORMS
from .cli_parser import EPILOG, ArgumentError, Parser, Subcommand
from .cli_pull import PULL
from .cli_push import PUSH
from .cli_report import configure_logging, exit_code, report_error
from .cli_verify import VERIFY
from .config import Settings, load_settings
from .errors import DockerDragError, UsageError, leaf_error
from .eventloop import LoopFactory
from .progress import dump_json, error_json

# Every subcommand, in the order ``dockerdrag --help`` lists them.
COMMANDS: tuple[Subcommand, ...] = (PULL, PUSH, INSPECT, PLATFORMS, VERIFY, CACHE)
HELP = "help"
DEFAULT_COMMAND = PULL.name
# Flags every command takes; given before the command they are moved after it.
GLOBAL_FLAGS = ("-v", "-vv", "-vvv", "--verbose", "--debug", "--json", "-q", "--quiet")


class _TopLevelFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps each command's summary on its name's line (argparse leaves the commands'
    names out of the width it gives the first column)."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog)
        self._action_max_length = _COMMAND_COLUMN


_COMMAND_COLUMN = 16


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The top-level parser and each subcommand's parser by name."""
    parser = Parser(
        prog="dockerdrag",
        description="Pull container images from Docker/OCI registries into tarballs that "
        "`docker load` accepts, without a Docker daemon. `dockerdrag IMAGE` means "
        "`dockerdrag pull IMAGE`.",
        epilog=EPILOG,
        formatter_class=_TopLevelFormatter,
    )
    parser.add_argument("--version", action="version", version=f"dockerdrag {__version__}")
    subparsers = parser.add_subparsers(title="commands", dest="command", metavar="COMMAND")
    parsers = {command.name: command.declare(subparsers) for command in COMMANDS}
    helper = subparsers.add_parser(
        HELP,
        help="show the help of dockerdrag or of one COMMAND",
        description="Show the help of dockerdrag, or of COMMAND.",
    )
    helper.add_argument("topic", metavar="COMMAND", nargs="?", choices=sorted(parsers))
    return parser, parsers


def _command_names() -> tuple[str, ...]:
    return (*[command.name for command in COMMANDS], HELP)


def _normalise_argv(argv: Sequence[str]) -> list[str]:
    """``dockerdrag IMAGE ...`` means ``dockerdrag pull IMAGE ...``; flags may lead."""
    args = list(argv)
    leading = 0
    while leading < len(args) and args[leading] in GLOBAL_FLAGS:
        leading += 1
    flags, rest = args[:leading], args[leading:]
    if rest and rest[0] in ("-h", "--help", "--version"):
        return args
    if rest and rest[0] in _command_names():
        return [rest[0], *flags, *rest[1:]]
    return [DEFAULT_COMMAND, *args]


def _show_help(
    parser: argparse.ArgumentParser, parsers: dict[str, argparse.ArgumentParser], topic: str | None
) -> int:
    (parsers[topic] if topic else parser).print_help(sys.stdout)
    return 0


async def _run(command: Subcommand, args: argparse.Namespace, settings: Settings) -> int:
    return await command.run(args, settings)


def _execute(
    command: Subcommand,
    args: argparse.Namespace,
    settings: Settings,
    loop_factory: LoopFactory | None,
) -> int:
    options = {} if loop_factory is None else {"loop_factory": loop_factory}
    try:
        return anyio.run(_run, command, args, settings, backend_options=options)
    except (Exception, KeyboardInterrupt) as raised:
        error = leaf_error(raised)
        if args.debug and not isinstance(error, DockerDragError | KeyboardInterrupt):
            traceback.print_exception(raised)
        return report_error(error, exit_code(error), args.json)


def _usage_error(error: ArgumentError, json_mode: bool) -> int:
    error.parser.print_usage(sys.stderr)
    print(f"{error.parser.prog}: error: {error.message}", file=sys.stderr)
    if json_mode:
        dump_json(error_json(UsageError(error.message), 2), sys.stdout)
    return 2


def main(argv: Sequence[str] | None = None, *, loop_factory: LoopFactory | None = None) -> int:
    """Entry point of the ``dockerdrag`` command; the command runs on an event loop made by
    ``loop_factory`` (None: asyncio's own)."""
    raw = list(sys.argv[1:] if argv is None else argv)
    json_mode = "--json" in raw
    parser, parsers = build_parser()
    if all(arg in GLOBAL_FLAGS for arg in raw):
        # Bare ``dockerdrag``: what it can do, on stderr (nothing to pull).
        parser.print_help(sys.stderr)
        return 2
    try:
        args = parser.parse_args(_normalise_argv(raw))
    except ArgumentError as error:
        return _usage_error(error, json_mode)
    if args.command == HELP:
        return _show_help(parser, parsers, args.topic)
    configure_logging(args.verbose, args.debug)
    try:
        settings = load_settings(os.environ)
    except UsageError as error:
        return report_error(error, error.exit_code, args.json)
    (command,) = [command for command in COMMANDS if command.name == args.command]
    return _execute(command, args, settings, loop_factory)
