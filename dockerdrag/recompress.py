"""Deterministic gzip of an uncompressed layer, for pushing a legacy docker archive.

A legacy ``docker save`` archive holds each layer as an uncompressed tar; a registry wants
it compressed, and the digest of the compressed bytes names it. :func:`compress_layer`
streams the tar once: its sha256 is checked against the config's ``diff_id`` while it
is gzipped into a file, whose bytes are hashed as they are written. The gzip stream is
deterministic (no file name, modification time 0, level :data:`GZIP_LEVEL`): the same
layer always gives the same digest with the same zlib, so pushing an archive twice
pushes the same blobs and the same manifest.
"""

from __future__ import annotations

import gzip
import hashlib
from dataclasses import dataclass
from pathlib import Path

from .digest import Digest
from .errors import DiffIDMismatchError, OutputError, UsageError
from .store import describe_os_error
from .upload import BlobSource

__all__ = ["GZIP_LEVEL", "CompressedLayer", "compress_layer"]

GZIP_LEVEL = 6
_READ = 1 << 20


@dataclass(frozen=True)
class CompressedLayer:
    """A layer gzipped into ``path``: its digest and size, and the diff_id it was checked
    against."""

    diff_id: Digest
    digest: Digest
    size: int
    path: Path


class _HashingFile:
    """A binary file that hashes and counts what is written to it."""

    def __init__(self, path: Path) -> None:
        self._file = path.open("wb")
        self.hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.hash.update(data)
        self.size += len(data)
        return self._file.write(data)

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def compress_layer(layer: BlobSource, diff_id: Digest, target: Path) -> CompressedLayer:
    """Gzip the uncompressed layer tar ``layer`` into ``target``, checking its ``diff_id``.

    The archive was verified before, but these are the bytes that go out: a layer changed
    since is a DiffIDMismatchError before anything leaves this machine.
    """
    uncompressed = hashlib.sha256()
    try:
        output = _HashingFile(target)
        try:
            gzipped = gzip.GzipFile(
                filename="", mode="wb", compresslevel=GZIP_LEVEL, fileobj=output, mtime=0
            )
            with layer.path.open("rb") as source, gzipped:
                source.seek(layer.offset)
                remaining = layer.size
                while remaining:
                    block = source.read(min(_READ, remaining))
                    if not block:
                        raise DiffIDMismatchError(f"layer {diff_id} is cut short")
                    remaining -= len(block)
                    uncompressed.update(block)
                    gzipped.write(block)
        finally:
            output.close()
    except OSError as exc:
        if exc.filename is not None and Path(exc.filename) == layer.path:
            raise UsageError(describe_os_error(exc, f"reading {layer.path}")) from exc
        raise OutputError(describe_os_error(exc, f"writing {target}")) from exc
    actual = Digest(uncompressed.hexdigest())
    if actual != diff_id:
        raise DiffIDMismatchError(
            f"layer {diff_id} changed since the archive was verified (it now hashes to {actual})"
        )
    return CompressedLayer(diff_id, Digest(output.hash.hexdigest()), output.size, target)
