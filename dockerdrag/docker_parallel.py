"""The ``docker save`` archive with its layers decompressed in parallel, each at its offset.

Written one after the other (:func:`~dockerdrag.docker_archive.write_docker_archive`),
the layers are decompressed one at a time: a single ISA-L stream is the pull's slowest
part on a big image. But where every member will sit in the tar is known up front if
every layer's uncompressed size is: a gzip blob announces it in its trailer (ISIZE), an
uncompressed blob is its own size. Then ``DECODERS`` threads each decompress, hash and
write whole layers into their own regions of the file (the pages wholly inside a region
past the page cache), while the headers and small members around them are written
with ``pwrite``. The bytes are exactly the sequential writer's.

Decoders take the layer with the largest blob placed and not yet taken first
(:func:`~dockerdrag.decode_order.largest_first`): the longest to read starts soonest,
and the downloads bring each decoder's bytes in that order; while that blob is still
arriving, a layer whose blob is in whole (``ArchiveLayer.arrived``) goes first
(:func:`~dockerdrag.decode_order.next_to_decode`). On Linux, when the layers
are big enough to pay for starting them, each decoder thread hands its layer to a
worker process (:mod:`~dockerdrag.decoder_processes`), which inflates, hashes and
writes it with an interpreter of its own, so decoding never waits for the pull's (the
thread answers the worker's questions about a blob still arriving and checks the
diff_id).

A layer whose blob can be read as it arrives (``ArchiveLayer.open_early``) is
decompressed from its first bytes on, before the blob is verified; if that attempt fails
in any way the bytes may explain (corrupt data, a wrong diff_id or size, a download that
started over), the layer is written again from the verified blob, and only that
attempt's verdict counts.

The announced size is a claim, checked while writing: a layer that yields more or fewer
bytes (a multi-member gzip, a layer over 4 GiB, trailing junk) or a blob that announces
nothing (bzip2, xz, zstd) makes :func:`write_docker_archive_in_parallel` return False
with the file emptied, and the caller writes the archive sequentially instead. A diff_id
mismatch raises, as in the sequential writer.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import BinaryIO, NamedTuple, cast

from .blob_follow import FollowLost
from .decode_order import DECODERS, largest_first, next_to_decode
from .decoder_processes import PROCESSES_MIN_BYTES, DecoderProcesses, processes_available
from .digest import Digest
from .direct_io import Readable
from .direct_regions import DirectRegionFile
from .docker_archive import (
    ArchiveImage,
    DockerArchiveOptions,
    LayerData,
    archive_entries,
)
from .errors import IntegrityError, OutputError
from .tarwriter import (
    BLOCK_SIZE,
    END_OF_ARCHIVE,
    TYPE_FILE,
    build_header,
    member_bytes,
    padding_for,
)

__all__ = ["DECODERS", "write_docker_archive_in_parallel"]

log = logging.getLogger("dockerdrag")


def write_docker_archive_in_parallel(
    out: DirectRegionFile,
    images: Sequence[ArchiveImage],
    options: DockerArchiveOptions,
    interrupt: threading.Event | None = None,
) -> bool:
    """Write the archive of ``images`` to the empty ``out``; False if it must be sequential.

    Each layer's ``announced_size`` gives its size (it may wait for the blob); the
    layers placed are handed to the decoders before a wait (``size_known`` tells when
    there is none) and at the end. On
    False nothing was kept: ``out`` is empty again. ``interrupt`` is set when a
    decoder fails (a full disk, a diff_id mismatch), to end a wait for a blob that
    watches it; that decoder's error is raised.
    """
    entries = archive_entries(images, options)
    placed = _LargestFirst()
    flavour = options.header_flavour
    failed = threading.Event()  # a wrong size, an error or a stop: every decoder stops
    around: list[tuple[int, bytes]] = []  # everything outside the layer regions
    position = 0
    jobs: list[Future[bool]] = []
    interrupted: BaseException | None = None
    first_errors: list[BaseException] = []  # in the order decoders failed: the first is the cause
    with (
        _decoder_processes(out, images) as processes,
        ThreadPoolExecutor(DECODERS, thread_name_prefix="dockerdrag-decoder") as decoders,
    ):
        decoding = _Decoding(out, placed, failed, interrupt, first_errors, processes)
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
                layer = entry.layer.layer
                if layer.size_known is None or not layer.size_known():
                    # About to wait: the decoders take what is placed, largest first.
                    jobs += _hand_over(decoders, decoding)
                size = None if layer.announced_size is None else layer.announced_size()
                if size is None or failed.is_set():
                    failed.set()
                    break
                header = build_header(
                    entry.name, TYPE_FILE, size=size, mtime=entry.mtime, flavour=flavour
                )
                around.append((position, header))
                position += BLOCK_SIZE
                placed.put(size, (position, entry.layer))
                position += size + padding_for(size)
            else:
                jobs += _hand_over(decoders, decoding)
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


class _LargestFirst:
    """The layers placed and not taken by a decoder yet, the largest blob first (the
    uncompressed size for a layer read without its blob, :attr:`ArchiveLayer.source`),
    unless it is still arriving and another is in whole (:func:`next_to_decode`)."""

    def __init__(self) -> None:
        self._placed: list[tuple[tuple[int, int], int, LayerData]] = []  # (key, size, data)
        self._lock = threading.Lock()
        self._unhanded = 0  # layers put that no decoder job was made for yet

    def take_unhanded(self) -> int:
        """How many layers were put since the last call (each needs a decoder job)."""
        count, self._unhanded = self._unhanded, 0
        return count

    def put(self, size: int, placed: tuple[int, LayerData]) -> None:
        start, data = placed
        source = data.layer.source
        key = largest_first(size if source is None else source.size, start)
        with self._lock:
            self._placed.append((key, size, data))  # starts differ: each key is unique
        self._unhanded += 1

    def take(self) -> tuple[int, int, LayerData]:
        """The next layer's start, size and data (one was put per decoder job)."""
        with self._lock:
            placed = self._placed
            index = next_to_decode([key for key, _, _ in placed], lambda i: _in(placed[i][2]))
            (_, start), size, data = placed.pop(index)
        return start, size, data


def _in(data: LayerData) -> bool:
    """Whether the layer's blob is in whole (False when that cannot be told)."""
    arrived = data.layer.arrived
    return arrived is not None and arrived()


class _Decoding(NamedTuple):
    """What every decoder job of one archive shares."""

    out: DirectRegionFile
    placed: _LargestFirst
    failed: threading.Event
    interrupt: threading.Event | None
    first_errors: list[BaseException]
    processes: DecoderProcesses | None


def _decoder_processes(
    out: DirectRegionFile, images: Sequence[ArchiveImage]
) -> contextlib.AbstractContextManager[DecoderProcesses | None]:
    """Worker processes for the layers where this system runs them, every layer's blob
    can be handed to one (:attr:`ArchiveLayer.source`) and they hold enough bytes to pay
    for starting them; else, or if they cannot be started, None: threads decode."""
    sources = [layer.source for image in images for layer in image.layers]
    if (
        not processes_available()
        or None in sources
        or sum(source.size for source in sources if source is not None) < PROCESSES_MIN_BYTES
    ):
        return contextlib.nullcontext()
    try:
        return DecoderProcesses(out.fd, DECODERS)
    except OutputError as exc:
        log.info("layers decoded by threads: %s", exc)
        return contextlib.nullcontext()


def _hand_over(decoders: ThreadPoolExecutor, decoding: _Decoding) -> list[Future[bool]]:
    """One decoder job for each layer placed and not handed over yet."""
    return [
        decoders.submit(_write_largest, decoding) for _ in range(decoding.placed.take_unhanded())
    ]


def _write_largest(decoding: _Decoding) -> bool:
    """Write the largest layer not taken yet (see :func:`_write_layer`)."""
    start, size, data = decoding.placed.take()
    return _write_layer(decoding, start, data, size)


def _write_layer(decoding: _Decoding, start: int, data: LayerData, size: int) -> bool:
    """Decompress the layer into ``[start, start + size)`` and pad it; False if not ``size``.

    With ``open_early``, first from the blob as it arrives; on a failure the bytes may
    explain, again from the verified blob.
    """
    failed = decoding.failed
    try:
        if data.layer.open_early is not None:
            try:
                if _decode(decoding, start, data, size, early=True):
                    return True
            except (FollowLost, IntegrityError) as exc:
                log.info("layer %s: read again from its verified blob: %s", data.layer.diff_id, exc)
            if failed.is_set():
                return False
        if _decode(decoding, start, data, size, early=False):
            return True
        failed.set()
        return False
    except BaseException as error:
        decoding.first_errors.append(error)
        failed.set()
        if decoding.interrupt is not None:
            decoding.interrupt.set()
        raise


def _decode(decoding: _Decoding, start: int, data: LayerData, size: int, *, early: bool) -> bool:
    """Decompress the layer into the region (``early``: as its blob arrives) and check its
    diff_id; False if it is not ``size`` bytes long (or another decoder failed)."""
    source = data.layer.source
    if decoding.processes is not None and source is not None:
        decoded = decoding.processes.decode(
            start, size, source, follow=early, failed=decoding.failed
        )
        if decoded is None or decoded[0] != size:
            return False
        data.check(decoded[1])
        return True
    open_layer = data.layer.open_early if early else data.layer.open
    assert open_layer is not None
    return _decode_here(decoding, start, data, size, open_layer)


def _decode_here(
    decoding: _Decoding,
    start: int,
    data: LayerData,
    size: int,
    open_layer: Callable[[], BinaryIO],
) -> bool:
    """:func:`_decode` in this thread, from the stream ``open_layer()``."""
    hasher = hashlib.sha256()
    written = 0
    with decoding.out.region(start, size) as region, open_layer() as opened:
        stream = cast(Readable, opened)  # binary files have readinto; typing.IO lacks it
        # Asking for one byte past the announced size tells a longer layer from EOF.
        while count := region.fill_from(stream, size + 1 - written, hasher):
            written += count
            if written > size or decoding.failed.is_set():
                return False
        if written != size:
            return False
        region.zero_fill(padding_for(size))
        region.finish()
    data.check(Digest(hasher.hexdigest()))
    return True
