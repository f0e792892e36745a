"""The ``docker save`` archive with its layers decompressed in parallel, each at its offset.

Written one after the other (:func:`~dockerdrag.docker_archive.write_docker_archive`),
the layers are decompressed one at a time: a single ISA-L stream is the pull's slowest
part on a big image. But where every member will sit in the tar is known up front if
every layer's uncompressed size is: a gzip blob announces it in its trailer (ISIZE), an
uncompressed blob is its own size. Then ``DECODERS`` threads each decompress, hash and
write whole layers into their own regions of the file (the pages wholly inside a region
past the page cache), while the headers and small members around them are written
with ``pwrite``. The bytes are exactly the sequential writer's.

The announced size is a claim, checked while writing: a layer that yields more or fewer
bytes (a multi-member gzip, a layer over 4 GiB, trailing junk) or a blob that announces
nothing (bzip2, xz, zstd) makes :func:`write_docker_archive_in_parallel` return False
with the file emptied, and the caller writes the archive sequentially instead. A diff_id
mismatch raises, as in the sequential writer.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import cast

from .digest import Digest
from .direct_io import Readable
from .direct_regions import DirectRegionFile
from .docker_archive import (
    ArchiveImage,
    DockerArchiveOptions,
    LayerData,
    archive_entries,
)
from .tarwriter import (
    BLOCK_SIZE,
    END_OF_ARCHIVE,
    TYPE_FILE,
    build_header,
    member_bytes,
    padding_for,
)

__all__ = ["DECODERS", "write_docker_archive_in_parallel"]

DECODERS = 2
"""Layers decompressed at once (measured on 2 cores: 40 small layers in 124 ms with 2,
212 ms with 1; 3 gained nothing)."""


def write_docker_archive_in_parallel(
    out: DirectRegionFile,
    images: Sequence[ArchiveImage],
    options: DockerArchiveOptions,
    interrupt: threading.Event | None = None,
) -> bool:
    """Write the archive of ``images`` to the empty ``out``; False if it must be sequential.

    Each layer's ``announced_size`` gives its size (it may wait for the blob). On
    False nothing was kept: ``out`` is empty again. ``interrupt`` is set when a
    decoder fails (a full disk, a diff_id mismatch), to end a wait for a blob that
    watches it; that decoder's error is raised.
    """
    entries = archive_entries(images, options)
    flavour = options.header_flavour
    failed = threading.Event()  # a wrong size, an error or a stop: every decoder stops
    around: list[tuple[int, bytes]] = []  # everything outside the layer regions
    position = 0
    jobs: list[Future[bool]] = []
    interrupted: BaseException | None = None
    first_errors: list[BaseException] = []  # in the order decoders failed: the first is the cause
    with ThreadPoolExecutor(DECODERS, thread_name_prefix="dockerdrag-decoder") as decoders:
        try:
            for entry in entries:
                if entry.layer is None:
                    member = member_bytes(
                        entry.name,
                        entry.kind,
                        mtime=entry.mtime,
                        data=entry.data,
                        linkname=entry.link,
                        flavour=flavour,
                    )
                    around.append((position, member))
                    position += len(member)
                    continue
                announced = entry.layer.layer.announced_size
                size = None if announced is None else announced()
                if size is None or failed.is_set():
                    failed.set()
                    break
                header = build_header(
                    entry.name, TYPE_FILE, size=size, mtime=entry.mtime, flavour=flavour
                )
                around.append((position, header))
                position += BLOCK_SIZE
                job = decoders.submit(
                    _write_layer, out, position, entry.layer, size, failed, interrupt, first_errors
                )
                jobs.append(job)
                position += size + padding_for(size)
            else:
                around.append((position, END_OF_ARCHIVE))
                for offset, data in _joined(around):
                    out.write_at(data, offset)
        except BaseException as error:
            failed.set()
            interrupted = error
        finally:
            if failed.is_set():
                for job in jobs:
                    job.cancel()  # those not started yet
    # Every decoder has stopped. A decoder's error (a diff_id mismatch, a full disk, a
    # stop) is raised before what it interrupted; a wrong size means: write sequentially.
    if first_errors:
        raise first_errors[0]
    if interrupted is not None:
        raise interrupted
    complete = not failed.is_set()
    for job in jobs:
        if job.cancelled() or not job.result():
            complete = False
    if not complete:
        out.discard()
    return complete


def _joined(pieces: list[tuple[int, bytes]]) -> list[tuple[int, bytes]]:
    """Adjacent pieces as one write each."""
    joined: list[tuple[int, bytes]] = []
    for offset, data in pieces:
        if joined and joined[-1][0] + len(joined[-1][1]) == offset:
            joined[-1] = (joined[-1][0], joined[-1][1] + data)
        else:
            joined.append((offset, data))
    return joined


def _write_layer(
    out: DirectRegionFile,
    start: int,
    data: LayerData,
    size: int,
    failed: threading.Event,
    interrupt: threading.Event | None,
    first_errors: list[BaseException],
) -> bool:
    """Decompress the layer into ``[start, start + size)`` and pad it; False if not ``size``."""
    hasher = hashlib.sha256()
    written = 0
    try:
        with out.region(start) as region, data.layer.open() as opened:
            stream = cast(Readable, opened)  # binary files have readinto; typing.IO lacks it
            # Asking for one byte past the announced size tells a longer layer from EOF.
            while count := region.fill_from(stream, size + 1 - written, hasher):
                written += count
                if written > size or failed.is_set():
                    failed.set()
                    return False
            if written != size:
                failed.set()
                return False
            region.zero_fill(padding_for(size))
            region.finish()
        data.check(Digest(hasher.hexdigest()))
    except BaseException as error:
        first_errors.append(error)
        failed.set()
        if interrupt is not None:
            interrupt.set()
        raise
    return True
