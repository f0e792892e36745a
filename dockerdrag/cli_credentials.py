"""Registry credentials given on the command line: ``--username`` with the password
from standard input (``--password-stdin``) or, as ``docker login`` does, typed at a
prompt on the terminal (never echoed)."""

from __future__ import annotations

import argparse
import sys

from .credentials import Credentials
from .errors import UsageError
from .reference import Reference


def command_line_credentials(args: argparse.Namespace, image: str) -> dict[str, Credentials]:
    """The credentials for ``image``'s registry the options give (none: an empty dict)."""
    if args.password_stdin and not args.username:
        raise UsageError("--password-stdin needs --username")
    if not args.username:
        return {}
    host = Reference.parse(image).registry_host
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            raise UsageError("--password-stdin: no password on standard input")
    else:
        password = _prompt_for_password(args.username, host)
    return {host: Credentials(username=args.username, password=password)}


def _prompt_for_password(username: str, host: str) -> str:
    """Ask on the terminal, echo off; a usage error where there is no terminal to ask on."""
    if not sys.stdin.isatty():
        raise UsageError(
            f"--username {username}: no terminal to ask for the password on; "
            "pipe it in with --password-stdin"
        )
    import getpass  # here: only a prompt needs it (and termios)

    try:
        password = getpass.getpass(f"Password for {username} at {host}: ")
    except EOFError:
        password = ""
    if not password:
        raise UsageError(f"no password given for {username} at {host}")
    return password


__all__ = ["command_line_credentials"]
