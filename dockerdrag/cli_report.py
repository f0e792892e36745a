"""What the command prints on stderr besides the progress display: log lines and errors.

Errors are one line (``dockerdrag: error: …``) and, with ``--json``, also one
JSON error object on stdout; the exit code is the error's ``exit_code``. A library
error words the settings it suggests (its ``remedies``) as API parameters; here they
become the command's options. Messages and log lines carry registry text: they are
escaped (:mod:`safe_text`) before stderr sees them.
"""

from __future__ import annotations

import logging
import sys

from .errors import DockerDragError, PlatformRequiredError, Remedy, Setting
from .manifest import Descriptor
from .progress import dump_json, error_json
from .safe_text import escape

INTERRUPTED = 130
INTERNAL_ERROR = 1


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
        return f"dockerdrag: {record.levelname.lower()}: {escape(record.getMessage())}"


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


def format_platform_line(entry: Descriptor) -> str:
    """One line of the platform list, in the original docker-drag format (escaped: the
    platform's names come from the registry)."""
    platform = entry.platform
    if platform is None:
        return f"# (no platform)  (digest: {entry.digest})"
    return escape(f"--platform {platform!s:<16}  # {platform.describe()} (digest: {entry.digest})")


def option_text(remedy: Remedy) -> str:
    """``remedy`` worded as the command's option (``--insecure HOST``)."""
    value = remedy.value
    match remedy.setting:
        case Setting.INSECURE:
            return f"--insecure {value}"
        case Setting.CA_CERT:
            return "--ca-cert FILE"
        case Setting.PLATFORM:
            return f"--platform {value}" if value else "--platform"
        case Setting.CREDENTIALS:
            return "--username and --password-stdin"
        case Setting.TAG:
            return f"--tag {value!r}" if value else "--tag"
        case Setting.FORMAT:
            return f"--format {value}"
        case Setting.INCLUDE_FOREIGN:
            return "--include-foreign"
        case Setting.INCLUDE_ATTESTATIONS:
            return "--include-attestations"
        case Setting.LOCKED:
            return "--locked"
        case Setting.RENAMES:
            return f"--image {value}" if value else "--image"


def error_message(error: BaseException) -> str:
    """``str(error)`` with each remedy it suggests worded as the command's option (not
    yet escaped)."""
    text = str(error)
    if isinstance(error, DockerDragError):
        for remedy in error.remedies:
            text = text.replace(str(remedy), option_text(remedy), 1)
    return text


def exit_code(error: BaseException) -> int:
    """The exit code for ``error``: its own, 130 for Ctrl-C, 1 for anything unexpected."""
    if isinstance(error, DockerDragError):
        return error.exit_code
    return INTERRUPTED if isinstance(error, KeyboardInterrupt) else INTERNAL_ERROR


def report_error(error: BaseException, code: int, json_mode: bool) -> int:
    """Print ``error`` for a person (stderr) and, with --json, for a program (stdout)."""
    if json_mode:
        dump_json(error_json(error, code, error_message(error)), sys.stdout)
    if isinstance(error, KeyboardInterrupt):
        print("dockerdrag: interrupted; downloaded blobs are kept in the cache", file=sys.stderr)
    elif isinstance(error, PlatformRequiredError):
        print(f"{escape(error_message(error))}. Available platforms:", file=sys.stderr)
        for offered in error.available:
            if isinstance(offered, Descriptor):
                print(format_platform_line(offered), file=sys.stderr)
    elif isinstance(error, DockerDragError):
        print(f"dockerdrag: error: {escape(error_message(error))}", file=sys.stderr)
    else:
        print(
            f"dockerdrag: error: internal error: {type(error).__name__}: {escape(str(error))} "
            "(run with --debug for the traceback)",
            file=sys.stderr,
        )
    return code


__all__ = [
    "INTERNAL_ERROR",
    "INTERRUPTED",
    "configure_logging",
    "error_message",
    "exit_code",
    "format_platform_line",
    "option_text",
    "report_error",
]
