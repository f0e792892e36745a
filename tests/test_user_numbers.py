"""The number readers shared by the command-line options and the DOCKERDRAG_* variables."""

from __future__ import annotations

import argparse
from collections.abc import Callable

import pytest

from dockerdrag.cli_parser import non_negative_int, positive_float, positive_int
from dockerdrag.config import load_settings
from dockerdrag.errors import UsageError
from dockerdrag.user_numbers import (
    non_negative_whole_number,
    positive_seconds,
    positive_whole_number,
)


def test_readers_accept_their_numbers() -> None:
    assert positive_whole_number("16") == 16
    assert non_negative_whole_number("0") == 0
    assert positive_seconds("2.5") == 2.5


@pytest.mark.parametrize(
    ("read", "text", "complaint"),
    [
        (positive_whole_number, "many", "not a whole number: 'many'"),
        (positive_whole_number, "²", "not a whole number: '²'"),
        (positive_whole_number, "0", "must be at least 1"),
        (non_negative_whole_number, "-1", "must be at least 0"),
        (positive_seconds, "soon", "not a number: 'soon'"),
        (positive_seconds, "0", "must be above 0"),
        (positive_seconds, "nan", "must be above 0"),
        (positive_seconds, "inf", "must be above 0"),
    ],
)
def test_readers_say_what_is_wrong(read: Callable[[str], float], text: str, complaint: str) -> None:
    with pytest.raises(ValueError) as caught:
        read(text)
    assert str(caught.value) == complaint


@pytest.mark.parametrize(
    ("argument_type", "text", "complaint"),
    [
        (positive_int, "x", "not a whole number: 'x'"),
        (non_negative_int, "-3", "must be at least 0"),
        (positive_float, "-1", "must be above 0"),
    ],
)
def test_argparse_types_raise_the_readers_complaints(
    argument_type: Callable[[str], float], text: str, complaint: str
) -> None:
    with pytest.raises(argparse.ArgumentTypeError) as caught:
        argument_type(text)
    assert str(caught.value) == complaint


def test_a_variable_accepts_what_its_option_accepts() -> None:
    for text in ("3", "+3", " 3"):
        assert load_settings({"DOCKERDRAG_CONCURRENCY": text}).concurrency == positive_int(text)
    settings = load_settings(
        {"DOCKERDRAG_LOW_SPEED_LIMIT": "0", "DOCKERDRAG_LOW_SPEED_TIME": "1e1"}
    )
    assert (settings.low_speed_limit, settings.low_speed_time) == (0, 10.0)


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        # "²" passes str.isdigit but not int(): it was a traceback, not a usage error.
        ("DOCKERDRAG_CONCURRENCY", "²", "a whole number of at least 1"),
        ("DOCKERDRAG_CONCURRENCY", "0", "a whole number of at least 1"),
        ("DOCKERDRAG_LOW_SPEED_LIMIT", "-1", "a whole number of bytes a second (0: no limit)"),
        ("DOCKERDRAG_LOW_SPEED_TIME", "0", "a number of seconds above 0"),
    ],
)
def test_a_bad_variable_is_a_usage_error_naming_it(name: str, value: str, expected: str) -> None:
    with pytest.raises(UsageError) as caught:
        load_settings({name: value})
    assert str(caught.value) == f"environment variable {name}={value!r}: expected {expected}"
