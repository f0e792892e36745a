"""Content digests (``sha256:<64 hex>``) and a verifying hasher.

A :class:`Digest` is validated when parsed, so its ``hex`` is always safe to use
in a URL path or a file name.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from .errors import (
    DigestMismatchError,
    InvalidManifestError,
    InvalidReferenceError,
    SizeMismatchError,
)

_SHA256_RE = re.compile(r"sha256:[a-f0-9]{64}")
_HEX_RE = re.compile(r"[a-f0-9]{64}")


@dataclass(frozen=True, order=True)
class Digest:
    """A validated ``sha256`` content digest."""

    hex: str

    def __post_init__(self) -> None:
        if not _HEX_RE.fullmatch(self.hex):
            raise InvalidReferenceError(f"invalid sha256 hex {self.hex!r}")

    @classmethod
    def parse(cls, text: str) -> Digest:
        """Parse a digest the user gave, ``sha256:<64 lowercase hex>``; anything else raises
        InvalidReferenceError (a usage error)."""
        problem = _problem(text)
        if problem:
            raise InvalidReferenceError(problem)
        return cls(text[7:])

    @classmethod
    def from_registry(cls, text: object, where: str) -> Digest:
        """Parse a digest a registry or an archive sent; anything but ``sha256:<64 hex>``
        raises InvalidManifestError (an integrity error) naming ``where`` it was found."""
        problem = _problem(text)
        if problem:
            raise InvalidManifestError(f"{where}: {problem}")
        assert isinstance(text, str)
        return cls(text[7:])

    @classmethod
    def of(cls, data: bytes) -> Digest:
        """The digest of ``data``."""
        return cls(hashlib.sha256(data).hexdigest())

    @property
    def short(self) -> str:
        """The first 12 hex digits, as Docker prints layer IDs."""
        return self.hex[:12]

    def __str__(self) -> str:
        return f"sha256:{self.hex}"


def _problem(text: object) -> str:
    """What is wrong with ``text`` as a sha256 digest; empty if nothing."""
    if isinstance(text, str) and _SHA256_RE.fullmatch(text):
        return ""
    algorithm = text.split(":", 1)[0] if isinstance(text, str) and ":" in text else ""
    if algorithm and algorithm != "sha256":
        return f"unsupported digest algorithm {algorithm!r}: only sha256 is supported"
    return f"invalid digest {text!r}: expected sha256:<64 hex>"


class VerifyingHasher:
    """Hash a stream incrementally and check it against a digest and size.

    ``update`` raises SizeMismatchError as soon as more than ``expected_size``
    bytes arrive, so a lying server cannot make us read past the descriptor.
    ``hash_content=False`` checks the size only, for bytes whose digest was
    verified moments ago by whoever wrote them.
    """

    def __init__(
        self, expected: Digest, expected_size: int | None = None, *, hash_content: bool = True
    ) -> None:
        self.expected = expected
        self.expected_size = expected_size
        self.size = 0
        self._hash = hashlib.sha256() if hash_content else None

    def update(self, data: bytes | memoryview) -> None:
        """Feed the next bytes of the stream."""
        self._add_size(len(data))
        if self._hash is not None:
            self._hash.update(data)

    @property
    def hashes_content(self) -> bool:
        """Whether the bytes are hashed (False: only their size is checked)."""
        return self._hash is not None

    def count_unseen(self, size: int) -> None:
        """Count ``size`` bytes that were copied without passing through here (a kernel
        copy); only for ``hash_content=False``, where nothing is hashed anyway."""
        if self._hash is not None:
            raise ValueError("bytes that are hashed cannot be skipped")
        self._add_size(size)

    def _add_size(self, size: int) -> None:
        self.size += size
        if self.expected_size is not None and self.size > self.expected_size:
            raise SizeMismatchError(
                f"{self.expected}: received more than the expected {self.expected_size} bytes"
            )

    def digest(self) -> Digest:
        """The digest of the bytes fed so far (``expected`` if content is not hashed)."""
        return self.expected if self._hash is None else Digest(self._hash.hexdigest())

    def verify(self) -> None:
        """Raise unless the stream was exactly the expected size and digest."""
        if self.expected_size is not None and self.size != self.expected_size:
            raise SizeMismatchError(
                f"{self.expected}: got {self.size} bytes, expected {self.expected_size}"
            )
        actual = self.digest()
        if actual != self.expected:
            raise DigestMismatchError(
                f"content digest mismatch: expected {self.expected}, got {actual}"
            )
