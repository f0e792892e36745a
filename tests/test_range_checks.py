"""range_checks.accepted_body: every answer to a blob request, judged from status and headers."""

from __future__ import annotations

import pytest

from dockerdrag.digest import Digest
from dockerdrag.errors import RegistryError, SizeMismatchError
from dockerdrag.range_checks import RangeUnusable, accepted_body

DIGEST = Digest.of(b"blob")
SIZE = 1000


def accept(status: int, asked: range | None, **headers: str) -> range:
    named = {name.replace("_", "-").title(): value for name, value in headers.items()}
    return accepted_body(status, named, asked, SIZE, DIGEST)


def test_a_200_holds_the_whole_blob_ranged_or_not() -> None:
    assert accept(200, None) == range(0, SIZE)
    assert accept(200, range(100, 200)) == range(0, SIZE)  # Range ignored: start over
    assert accept(200, None, content_length=str(SIZE)) == range(0, SIZE)


def test_a_206_with_exactly_the_range_asked_for() -> None:
    assert accept(206, range(100, 200), content_range="bytes 100-199/1000") == range(100, 200)
    assert accept(206, range(100, 200), content_range=" bytes 100-199/1000 ") == range(100, 200)
    assert accept(206, range(0, SIZE), content_range="bytes 0-999/1000") == range(0, SIZE)
    assert accept(206, None, content_range="bytes 0-999/1000") == range(0, SIZE)


@pytest.mark.parametrize(
    "header",
    [
        None,
        "bytes 0-99/1000",  # another range
        "bytes 100-200/1000",  # one byte too many
        "bytes 100-199/*",
        "bytes */1000",
        "items 100-199/1000",
        "bytes 100-199/1000, bytes 300-399/1000",
        "bytes " + "1" * 20 + "-199/1000",  # more digits than any blob size
    ],
)
def test_a_206_with_another_content_range_makes_ranges_unusable(header: str | None) -> None:
    headers = {} if header is None else {"content_range": header}
    with pytest.raises(RangeUnusable):
        accept(206, range(100, 200), **headers)


def test_a_206_to_a_plain_request_that_is_not_the_whole_blob_is_a_registry_error() -> None:
    with pytest.raises(RegistryError, match="partial answer") as caught:
        accept(206, None, content_range="bytes 0-99/1000")
    assert caught.value.status == 206
    with pytest.raises(RegistryError, match="partial answer"):
        accept(206, None)


@pytest.mark.parametrize("asked", [range(100, 200), None])
def test_a_206_totalling_another_size_is_a_size_mismatch(asked: range | None) -> None:
    with pytest.raises(SizeMismatchError, match="is 2000 bytes, the manifest says 1000"):
        accept(206, asked, content_range="bytes 100-199/2000")


def test_a_416_naming_another_size_is_a_size_mismatch() -> None:
    with pytest.raises(SizeMismatchError, match="is 999 bytes"):
        accept(416, range(100, 200), content_range="bytes */999")
    with pytest.raises(SizeMismatchError):
        accept(416, None, content_range="bytes */999")


@pytest.mark.parametrize("header", [None, "bytes */1000", "bytes */abc", "nonsense"])
def test_a_416_otherwise_makes_ranges_unusable(header: str | None) -> None:
    headers = {} if header is None else {"content_range": header}
    with pytest.raises(RangeUnusable, match="416"):
        accept(416, range(100, 200), **headers)


def test_a_416_to_a_plain_request_is_a_registry_error() -> None:
    with pytest.raises(RegistryError, match="416") as caught:
        accept(416, None, content_range="bytes */1000")
    assert caught.value.status == 416


@pytest.mark.parametrize("status", [201, 204, 302, 404, 500])
def test_any_other_status_is_a_registry_error(status: int) -> None:
    with pytest.raises(RegistryError, match=f"HTTP {status}") as caught:
        accept(status, range(100, 200), content_range="bytes 100-199/1000")
    assert caught.value.status == status


def test_a_content_length_other_than_the_range_is_a_size_mismatch() -> None:
    with pytest.raises(SizeMismatchError, match="announced 999 bytes where 1000"):
        accept(200, None, content_length="999")
    with pytest.raises(SizeMismatchError, match="announced 101 bytes where 100"):
        accept(206, range(100, 200), content_range="bytes 100-199/1000", content_length=" 101 ")


@pytest.mark.parametrize("header", ["", "abc", "-5", "1" * 20, "100 100"])
def test_a_content_length_that_does_not_parse_is_ignored(header: str) -> None:
    asked = range(100, 200)
    assert accept(206, asked, content_range="bytes 100-199/1000", content_length=header) == asked
