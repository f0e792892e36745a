"""Registry credentials given on the command line (``--username``, ``--password-stdin``)."""

from __future__ import annotations

import argparse
import sys

from .credentials import Credentials
from .errors import UsageError
from .reference import Reference


def command_line_credentials(args: argparse.Namespace, image: str) -> dict[str, Credentials]:
    """The credentials for ``image``'s registry the options give (none: an empty dict)."""
    if not args.username and not args.password_stdin:
        return {}
    if not args.username or not args.password_stdin:
        raise UsageError("--username and --password-stdin go together")
    password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        raise UsageError("--password-stdin: no password on standard input")
    host = Reference.parse(image).registry_host
    return {host: Credentials(username=args.username, password=password)}


__all__ = ["command_line_credentials"]
