"""ClosedOnExit: the with-block protocol of the objects that close."""

from __future__ import annotations

import pytest

from dockerdrag.closing import ClosedOnExit


class _Resource(ClosedOnExit):
    def __init__(self) -> None:
        self.closed = 0

    def close(self) -> None:
        self.closed += 1


def test_the_block_gets_the_object_and_closes_it() -> None:
    with _Resource() as resource:
        assert isinstance(resource, _Resource)
        assert resource.closed == 0
    assert resource.closed == 1


def test_a_raising_block_closes_it_and_the_error_goes_on() -> None:
    resource = _Resource()
    with pytest.raises(KeyError), resource:
        raise KeyError("inside")
    assert resource.closed == 1


def test_a_subclass_must_say_how_it_closes() -> None:
    class _Unclosable(ClosedOnExit):
        pass

    with pytest.raises(TypeError, match="abstract"):
        _Unclosable()  # type: ignore[abstract]
