"""One helper picks the error to report out of a task group's exception group."""

from __future__ import annotations

import pytest

from dockerdrag.errors import NetworkError, OutputError, leaf_error


def test_a_plain_error_is_its_own_leaf() -> None:
    error = OutputError("disk full")
    assert leaf_error(error) is error


def test_the_first_dockerdrag_error_wins_over_other_leaves() -> None:
    wanted = NetworkError("reset")
    group = BaseExceptionGroup(
        "outer",
        [
            ValueError("bug"),
            BaseExceptionGroup("inner", [KeyboardInterrupt(), wanted]),
            OutputError("x"),
        ],
    )
    assert leaf_error(group) is wanted


def test_ctrl_c_comes_before_a_foreign_error() -> None:
    interrupt = KeyboardInterrupt()
    assert leaf_error(BaseExceptionGroup("g", [ValueError("bug"), interrupt])) is interrupt


@pytest.mark.parametrize("nested", [False, True])
def test_otherwise_the_first_leaf(nested: bool) -> None:
    first = ValueError("first")
    inner: BaseException = ExceptionGroup("inner", [first]) if nested else first
    assert leaf_error(ExceptionGroup("g", [inner, TypeError("second")])) is first
