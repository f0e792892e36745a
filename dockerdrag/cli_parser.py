"""Building blocks of the command line's argument parsers, and what a subcommand is.

A subcommand is a :class:`Subcommand`: its name, a function that declares its
parser (with the option groups below) and an async function that runs it. The
table of subcommands is ``COMMANDS`` in :mod:`dockerdrag.cli`; a new subcommand
lives in a module of its own (as :mod:`dockerdrag.cli_pull`) and is added there.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, NamedTuple, NoReturn, TypeVar

from .config import VARIABLES, Settings
from .conventions import default_cache_dir
from .pull import DEFAULT_CONCURRENCY
from .user_numbers import non_negative_whole_number, positive_seconds, positive_whole_number

_Number = TypeVar("_Number", int, float)

EXAMPLES = """\
examples:
  dockerdrag hello-world --platform linux/amd64
  dockerdrag pull mysql/mysql-server:8.0 -o mysql.tar
  dockerdrag pull alpine:3.20 busybox:1.36 -o bundle.tar --platform linux/amd64
  dockerdrag pull nginx --format oci --platform all -o nginx-oci.tar
  dockerdrag pull -f images.txt -o bundle.tar         # and bundle.lock.json beside it
  dockerdrag pull --locked bundle.lock.json -o bundle.tar   # the locked digests again
  dockerdrag pull busybox --json | jq -c 'select(.event != "layer")'
  dockerdrag inspect nginx --platform linux/arm64
  dockerdrag inspect busybox --raw --config --platform linux/amd64 | jq .
  dockerdrag platforms busybox
  dockerdrag verify bundle.tar
  dockerdrag push bundle.tar registry.internal:5000/team   # every image, under its name
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


class ArgumentError(Exception):
    """A command-line mistake found by argparse (reported as usage, exit 2)."""

    def __init__(self, parser: argparse.ArgumentParser, message: str) -> None:
        super().__init__(message)
        self.parser = parser
        self.message = message


class Parser(argparse.ArgumentParser):
    """An ArgumentParser that raises instead of exiting, so ``--json`` can report it."""

    def error(self, message: str) -> NoReturn:
        raise ArgumentError(self, message)


if TYPE_CHECKING:
    SubParsers = argparse._SubParsersAction[Parser]
else:  # not subscriptable at run time
    SubParsers = argparse._SubParsersAction


class Subcommand(NamedTuple):
    """One ``dockerdrag COMMAND``.

    ``declare`` adds the command's parser to the subparsers and returns it;
    ``run`` receives the parsed arguments and the ``DOCKERDRAG_*`` settings and
    returns the exit code (errors are raised as :class:`~dockerdrag.errors.DockerDragError`).
    """

    name: str
    declare: Callable[[SubParsers], argparse.ArgumentParser]
    run: Callable[[argparse.Namespace, Settings], Awaitable[int]]


def _argument(read: Callable[[str], _Number], text: str) -> _Number:
    """``read(text)``, its complaint raised as the argparse error argparse shows."""
    try:
        return read(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def non_negative_int(text: str) -> int:
    """An argparse type: a whole number of at least 0."""
    return _argument(non_negative_whole_number, text)


def positive_float(text: str) -> float:
    """An argparse type: a number of seconds above 0."""
    return _argument(positive_seconds, text)


def positive_int(text: str) -> int:
    """An argparse type: a whole number of at least 1."""
    return _argument(positive_whole_number, text)


def add_connection_options(parser: argparse.ArgumentParser, *, mirrors: bool = True) -> None:
    """Registry connection options: ``--insecure``, ``--ca-cert``, mirrors (unless
    ``mirrors`` is False: a push has no use for them), credentials."""
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
    if mirrors:
        group.add_argument(
            "--registry-mirror",
            action="append",
            default=[],
            metavar="URL",
            help="Docker Hub mirror tried before the origin, like dockerd's registry-mirrors "
            "(repeatable; an http:// URL is allowed plain HTTP; env DOCKERDRAG_REGISTRY_MIRRORS)",
        )
    group.add_argument(
        "--username",
        "-u",
        help="registry username; the password is asked for on the terminal, or read from "
        "stdin with --password-stdin",
    )
    group.add_argument(
        "--password-stdin", action="store_true", help="read the password or token from stdin"
    )


def add_logging_options(parser: argparse.ArgumentParser) -> None:
    """``-v``/``--verbose`` and ``--debug``."""
    group = parser.add_argument_group("logging (on stderr)")
    group.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="more detail: -v retries, mirror fallbacks, refetches and resumed downloads; "
        "-vv every request",
    )
    group.add_argument(
        "--debug",
        action="store_true",
        help="every request (never a secret) and a traceback on internal errors",
    )


def add_json_option(group: argparse._ActionsContainer) -> None:
    """``--json``: machine-readable output on stdout."""
    group.add_argument(
        "--json", action="store_true", help="machine-readable JSON on stdout (errors too)"
    )


def add_quiet_or_json_options(
    container: argparse._ActionsContainer, quiet_help: str
) -> argparse._MutuallyExclusiveGroup:
    """``-q``/``--quiet`` (``quiet_help`` says what it still prints) and ``--json``, which
    exclude each other; their group is returned for options that exclude both."""
    shown = container.add_mutually_exclusive_group()
    shown.add_argument("-q", "--quiet", action="store_true", help=quiet_help)
    add_json_option(shown)
    return shown


def add_progress_option(container: argparse._ActionsContainer, modes_help: str) -> None:
    """``--progress auto|tty|plain`` (default auto); ``modes_help`` says what each shows."""
    container.add_argument(
        "--progress", choices=("auto", "tty", "plain"), default="auto", help=modes_help
    )


def stderr_is_terminal() -> bool:
    """Whether stderr is a terminal that redraws (``TERM=dumb`` does not): what
    ``--progress auto`` decides by."""
    return sys.stderr.isatty() and os.environ.get("TERM") != "dumb"


def add_cache_dir_option(container: argparse._ActionsContainer, holds: str) -> None:
    """``--cache-dir DIR``, the directory that ``holds`` what it says (``DOCKERDRAG_CACHE_DIR``
    when not given; the help names this system's default cache directory)."""
    container.add_argument(
        "--cache-dir",
        metavar="DIR",
        help=f"{holds} (default {default_cache_dir()}; env DOCKERDRAG_CACHE_DIR)",
    )


def add_concurrency_option(container: argparse._ActionsContainer, counts: str) -> None:
    """``--concurrency N``: how many of what ``counts`` says at once (``DOCKERDRAG_CONCURRENCY``
    when not given)."""
    container.add_argument(
        "--concurrency",
        type=positive_int,
        metavar="N",
        help=f"{counts} (default {DEFAULT_CONCURRENCY}; env DOCKERDRAG_CONCURRENCY)",
    )


__all__ = [
    "EPILOG",
    "EXAMPLES",
    "ArgumentError",
    "Parser",
    "SubParsers",
    "Subcommand",
    "add_cache_dir_option",
    "add_concurrency_option",
    "add_connection_options",
    "add_json_option",
    "add_logging_options",
    "add_progress_option",
    "add_quiet_or_json_options",
    "non_negative_int",
    "positive_float",
    "positive_int",
    "stderr_is_terminal",
]
