"""What a blob response's status and headers allow: pure checks, no I/O.

:func:`accepted_body` takes the status and headers of an answer to a blob request,
the byte range asked for (None: the whole blob, without ``Range``) and the size the
descriptor gives, and returns the bytes the body holds, or raises:

* 200: the whole blob, ``range(0, size)`` (also to a ranged request: the caller
  starts over from 0).
* 206: only with a ``Content-Range`` that is exactly the range asked for and totals
  ``size``. A total other than ``size`` is a :class:`SizeMismatchError`; any other
  mismatch is :class:`RangeUnusable` (fetch the blob whole), or a
  :class:`RegistryError` when no range was asked for.
* 416 (its body is never read): ``Content-Range: bytes */N`` with N != ``size`` is a
  :class:`SizeMismatchError`; otherwise :class:`RangeUnusable`, or a
  :class:`RegistryError` when no range was asked for.
* Any other status: :class:`RegistryError`.
* A ``Content-Length`` other than the length of the accepted range is a
  :class:`SizeMismatchError`.

Numbers in headers are at most 19 ASCII digits (``int()`` of a longer run costs time,
and is no blob size); a header that does not parse counts as absent or mangled.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from .digest import Digest
from .errors import RegistryError, SizeMismatchError

_CONTENT_RANGE_RE = re.compile(r"bytes ([0-9]{1,19})-([0-9]{1,19})/([0-9]{1,19})")
_UNSATISFIED_RANGE_RE = re.compile(r"bytes \*/([0-9]{1,19})")
_CONTENT_LENGTH_RE = re.compile(r"[0-9]{1,19}")


class RangeUnusable(Exception):
    """The registry ignored or mangled a Range request: fetch the blob whole."""


def accepted_body(
    status: int, headers: Mapping[str, str], asked: range | None, size: int, digest: Digest
) -> range:
    """The bytes of the blob the body of this answer holds, or raise (see the module)."""
    if status == 416:
        _refuse_unsatisfiable(headers.get("Content-Range"), asked is not None, size, digest)
    body = _body_range(status, headers.get("Content-Range"), asked, size, digest)
    _check_content_length(headers.get("Content-Length"), len(body), digest)
    return body


def _body_range(
    status: int, header: str | None, asked: range | None, size: int, digest: Digest
) -> range:
    if status == 200:
        return range(0, size)
    if status != 206:
        raise RegistryError(f"registry answered HTTP {status} for blob {digest.short}", status)
    expected = asked if asked is not None else range(0, size)
    match = _CONTENT_RANGE_RE.fullmatch((header or "").strip())
    if match and int(match[3]) != size:
        raise SizeMismatchError(
            f"registry says blob {digest} is {match[3]} bytes, the manifest says {size}"
        )
    if not match or (int(match[1]), int(match[2])) != (expected.start, expected.stop - 1):
        if asked is None:
            raise RegistryError(
                f"registry sent a partial answer ({header!r}) for the whole blob {digest.short}",
                206,
            )
        raise RangeUnusable(
            f"the registry answered Content-Range {header!r} where bytes "
            f"{expected.start}-{expected.stop - 1}/{size} were asked for"
        )
    return expected


def _refuse_unsatisfiable(header: str | None, ranged: bool, size: int, digest: Digest) -> None:
    """A 416, judged without its body (registries lie about its length)."""
    match = _UNSATISFIED_RANGE_RE.fullmatch((header or "").strip())
    if match and int(match[1]) != size:
        raise SizeMismatchError(
            f"registry says blob {digest} is {match[1]} bytes, the manifest says {size}"
        )
    if not ranged:
        raise RegistryError(
            f"registry answered 416 to a plain request for blob {digest.short}", 416
        )
    raise RangeUnusable("the registry refused the range (HTTP 416)")


def _check_content_length(header: str | None, expected: int, digest: Digest) -> None:
    if (
        header is not None
        and _CONTENT_LENGTH_RE.fullmatch(header.strip())
        and int(header) != expected
    ):
        raise SizeMismatchError(
            f"blob {digest} announced {header.strip()} bytes where {expected} were expected"
        )
