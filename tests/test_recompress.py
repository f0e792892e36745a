"""Deterministic gzip of legacy layers (recompress.compress_layer)."""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import pytest

from dockerdrag.digest import Digest
from dockerdrag.errors import DiffIDMismatchError
from dockerdrag.recompress import compress_layer
from dockerdrag.upload import BlobSource


def layer_in_file(tmp_path: Path, data: bytes) -> BlobSource:
    """``data`` at offset 100 of a file, as a tar member's data lies in a tar."""
    path = tmp_path / "archive"
    path.write_bytes(b"x" * 100 + data + b"y" * 50)
    return BlobSource(Digest.of(data), len(data), path, 100)


def test_the_same_layer_always_gives_the_same_blob(tmp_path: Path) -> None:
    data = bytes(range(256)) * 4000
    source = layer_in_file(tmp_path, data)
    first = compress_layer(source, Digest.of(data), tmp_path / "one.gz")
    second = compress_layer(source, Digest.of(data), tmp_path / "two.gz")
    blob = (tmp_path / "one.gz").read_bytes()
    assert first.digest == second.digest == Digest(hashlib.sha256(blob).hexdigest())
    assert first.size == len(blob)
    assert blob[3] == 0  # no file name, no comment, no extra field
    assert blob[4:8] == b"\0\0\0\0"  # modification time 0
    assert gzip.decompress(blob) == data  # only the member's own bytes


def test_a_layer_that_does_not_match_its_diff_id_is_refused(tmp_path: Path) -> None:
    source = layer_in_file(tmp_path, b"layer bytes")
    with pytest.raises(DiffIDMismatchError, match="changed since"):
        compress_layer(source, Digest.of(b"other bytes"), tmp_path / "out.gz")
