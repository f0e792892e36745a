"""The option declarations the subcommands share (dockerdrag/cli_parser.py)."""

from __future__ import annotations

import io

import pytest

from dockerdrag.cli_parser import (
    ArgumentError,
    Parser,
    add_cache_dir_option,
    add_concurrency_option,
    add_progress_option,
    add_quiet_or_json_options,
    stderr_is_terminal,
)
from dockerdrag.conventions import default_cache_dir
from dockerdrag.pull import DEFAULT_CONCURRENCY


def test_quiet_and_json_exclude_each_other_and_what_joins_their_group() -> None:
    parser = Parser(prog="t")
    shown = add_quiet_or_json_options(parser, "print less")
    add_progress_option(shown, "modes")
    assert parser.parse_args([]).progress == "auto"
    assert parser.parse_args(["-q"]).quiet
    assert parser.parse_args(["--progress", "tty"]).progress == "tty"
    for clash in (["-q", "--json"], ["--json", "--progress", "plain"]):
        with pytest.raises(ArgumentError, match="not allowed with argument"):
            parser.parse_args(clash)
    with pytest.raises(ArgumentError, match="invalid choice"):
        parser.parse_args(["--progress", "fancy"])


def test_cache_dir_and_concurrency_help_name_default_and_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A path without hyphens: argparse may wrap a help line after one.
    monkeypatch.setenv("XDG_CACHE_HOME", "/xdgcache")
    parser = Parser(prog="t")
    add_cache_dir_option(parser, "blob cache")
    add_concurrency_option(parser, "parallel things")
    text = " ".join(parser.format_help().split())  # argparse wraps long help lines
    assert f"blob cache (default {default_cache_dir()}; env DOCKERDRAG_CACHE_DIR)" in text
    assert "(default /xdgcache/dockerdrag;" in text  # this system's default, not a fixed one
    assert f"parallel things (default {DEFAULT_CONCURRENCY}; env" in text
    assert parser.parse_args(["--concurrency", "3", "--cache-dir", "d"]).concurrency == 3
    with pytest.raises(ArgumentError, match="must be at least 1"):
        parser.parse_args(["--concurrency", "0"])


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_stderr_is_a_terminal_unless_term_is_dumb(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stderr", _Terminal())
    monkeypatch.setenv("TERM", "xterm")
    assert stderr_is_terminal()
    monkeypatch.setenv("TERM", "dumb")
    assert not stderr_is_terminal()
    monkeypatch.setattr("sys.stderr", io.StringIO())
    monkeypatch.setenv("TERM", "xterm")
    assert not stderr_is_terminal()
