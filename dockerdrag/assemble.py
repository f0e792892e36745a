"""Assemble the archive in a worker thread while the layer blobs still arrive.

The pull resolves every image first (manifests and configs), then starts the
downloads and the writer together: the writer reaches each blob in the order
the format needs it (sorted v1 directories for ``docker``, sorted digests for
``oci``), waiting on a :class:`BlobGate` until the event loop has verified it,
and the downloads are started in that same order.

Cancellation is prompt and clean: the writer thread is never abandoned; a stop
flag makes it raise at its next chunk, its temp output is removed, and only
then does the cancellation propagate.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import anyio
import anyio.lowlevel

from .blob_follow import GrowingBlobReader, open_following
from .closing import ClosedOnExit
from .digest import Digest
from .docker_options import DockerArchiveOptions
from .errors import InvalidManifestError
from .gojson import DecodedConfig
from .image_config import ImageConfig
from .layers import announced_size, open_decompressed
from .manifest import ImageIndex, ImageManifest
from .reference import Reference
from .store import BlobStore, atomic_output

if TYPE_CHECKING:
    from .docker_archive import DockerImagePlan

Writer = Callable[[threading.Event], None]
"""Writes the archive (in a worker thread); must stop soon once the event is set."""


@dataclass(frozen=True)
class PlatformImage:
    """One image manifest with its verified config."""

    manifest: ImageManifest
    config_raw: bytes
    config: ImageConfig
    decoded: DecodedConfig | None
    """The config as Docker decodes it, for the writers; None for an attestation's."""


@dataclass(frozen=True)
class ResolvedPull:
    """Everything known about one requested image before its layers are fetched."""

    reference: Reference
    source: Reference  # where blobs come from: the reference, or it on a mirror
    index: ImageIndex | None
    images: tuple[PlatformImage, ...]  # the first is the primary (tagged) one
    repo_tags: tuple[str, ...]


class WriterCancelled(Exception):
    """Raised inside the writer thread once the pull was cancelled."""


class BlobGate:
    """Lets the writer thread wait for blobs the event loop is still fetching.

    It also hears, from any thread, the uncompressed size a big layer claims before its
    blob arrives (:mod:`size_claims`) and how far each blob's download has its bytes on
    disk (:meth:`note_prefix`): a decoder reads a layer while it arrives through it
    (:class:`~dockerdrag.blob_follow.GrowingBlobs`).
    """

    def __init__(
        self,
        store: BlobStore,
        resolved: Sequence[ResolvedPull],
        skipped: frozenset[Digest] = frozenset(),
    ) -> None:
        descriptors = [
            layer
            for item in resolved
            for image in item.images
            for layer in image.manifest.layers
            if layer.digest not in skipped
        ]
        self.paths: dict[Digest, Path] = {d.digest: store.blob_path(d.digest) for d in descriptors}
        self._changed = threading.Condition()
        self._ready: set[Digest] = set()
        self._cancelled = False
        self._hashed_now: set[Digest] = set()
        self._read: set[Digest] = set()
        self._claimed_sizes: dict[Digest, int] = {}
        self._claims_pending = False
        self._prefixes: dict[Digest, tuple[Path, int]] = {}  # partial file, bytes on disk
        self._restarts: dict[Digest, int] = {}  # times each download started its blob over
        self._watched: dict[Digest, int] = {}  # readers waiting for each blob's bytes

    def mark_ready(self, digest: Digest, path: Path, downloaded: bool = False) -> None:
        """Called on the event loop once ``digest`` is verified at ``path``.

        ``downloaded``: its bytes were hashed as this pull wrote them, a moment ago.
        """
        with self._changed:
            self.paths[digest] = path
            if downloaded:
                self._hashed_now.add(digest)
            self._ready.add(digest)
            self._changed.notify_all()

    def expect_claims(self) -> None:
        """Size claims are on their way: :meth:`wait_for_size` waits until they settle, so
        the writer places every layer it can before decoders take the largest."""
        with self._changed:
            self._claims_pending = True

    def claims_settled(self) -> None:
        """Every size claim expected was heard or given up."""
        with self._changed:
            self._claims_pending = False
            self._changed.notify_all()

    def note_claimed_size(self, digest: Digest, size: int) -> None:
        """The blob ``digest`` claims ``size`` uncompressed bytes (to be checked)."""
        with self._changed:
            self._claimed_sizes[digest] = size
            self._changed.notify_all()

    def note_prefix(self, digest: Digest, partial: Path, end: int) -> None:
        """The download of ``digest`` has its bytes ``[0, end)`` on disk in ``partial``
        (``end`` goes back to 0 when it starts the blob over). Any thread may call it."""
        if digest not in self.paths:
            return
        with self._changed:
            before = self._prefixes.get(digest, (partial, 0))[1]
            if end < before:
                self._restarts[digest] = self._restarts.get(digest, 0) + 1
            self._prefixes[digest] = (partial, end)
            # Waiters hear of a blob's progress only if they wait for that blob's bytes,
            # or for any blob to have bytes (none had, or had none left).
            if self._watched.get(digest) or (before == 0) != (end == 0):
                self._changed.notify_all()

    def restarts(self, digest: Digest) -> int:
        """How often the download of ``digest`` went back below bytes it had on disk (a
        reader of its partial file that saw bytes before may have read unverified ones)."""
        with self._changed:
            return self._restarts.get(digest, 0)

    def size_known(self, digest: Digest) -> bool:
        """Whether :meth:`wait_for_size` answers at once (claims settled, and the blob is
        ready or claims a size)."""
        return not self._claims_pending and (digest in self._ready or digest in self._claimed_sizes)

    def wait_for_size(self, digest: Digest) -> Path | int:
        """Block until the claims expected have settled and ``digest`` is ready (its path)
        or claims a size (that size)."""
        with self._changed:
            self._changed.wait_for(lambda: self.size_known(digest) or self._cancelled)
            if self._cancelled:
                raise WriterCancelled("pull cancelled")
            if digest in self._ready:
                return self.paths[digest]
            return self._claimed_sizes[digest]

    def wait_beyond(self, digest: Digest, position: int) -> tuple[Path, int, bool]:
        """Block until the blob's bytes on disk reach past ``position`` (or fell short of
        it: the download started over) or it is ready; the file, how far its bytes reach,
        whether it is ready (verified). Raise once cancelled."""

        def moved() -> bool:
            end = self._prefixes.get(digest, (None, position))[1]
            return end != position or digest in self._ready or self._cancelled

        with self._changed:
            self._watched[digest] = self._watched.get(digest, 0) + 1
            try:
                self._changed.wait_for(moved)
            finally:
                self._watched[digest] -= 1
            if self._cancelled:
                raise WriterCancelled("pull cancelled")
            self._read.add(digest)
            if digest in self._ready:
                return self.paths[digest], -1, True
            partial, end = self._prefixes[digest]
            return partial, end, False

    def cancel(self) -> None:
        """Wake every waiting writer thread: from now on :meth:`wait` raises."""
        with self._changed:
            self._cancelled = True
            self._changed.notify_all()

    def hashed_in_this_pull(self, digest: Digest) -> bool:
        """Whether the ready blob ``digest`` was downloaded and hashed by this pull."""
        return digest in self._hashed_now

    def read_by_writer(self) -> set[Digest]:
        """The blobs the writer opened to read their bytes (once it has stopped)."""
        return set(self._read)

    def reopen(self) -> None:
        """Let a new run of the writer wait again after the last one ended (was cancelled)."""
        with self._changed:
            self._cancelled = False

    def wait_to_read(self, digest: Digest) -> Path:
        """As :meth:`wait`, for a writer about to read the blob's bytes (it is noted)."""
        path = self.wait(digest)
        self._read.add(digest)
        return path

    def wait_for_any(self, digests: Collection[Digest]) -> Digest:
        """Block (in the writer thread) until one of ``digests`` is ready (the least, if
        several are) and return it; raise once cancelled."""
        with self._changed:
            self._changed.wait_for(lambda: self._cancelled or not self._ready.isdisjoint(digests))
            if self._cancelled:
                raise WriterCancelled("pull cancelled")
            return min(self._ready.intersection(digests))

    def wait_for_any_or_arriving(self, digests: Collection[Digest]) -> tuple[Digest, bool]:
        """Block (in the writer thread) until one of ``digests`` is ready or, failing that,
        has bytes on disk; the least such blob, and whether it is still arriving (not
        ready). Raise once cancelled."""

        def arriving() -> list[Digest]:
            return [d for d in digests if self._prefixes.get(d, (None, 0))[1] > 0]

        with self._changed:
            self._changed.wait_for(
                lambda: self._cancelled or not self._ready.isdisjoint(digests) or arriving()
            )
            if self._cancelled:
                raise WriterCancelled("pull cancelled")
            ready = self._ready.intersection(digests)
            if ready:
                return min(ready), False
            return min(arriving()), True

    def wait(self, digest: Digest) -> Path:
        """Block (in the writer thread) until ``digest`` is ready; raise once cancelled."""
        with self._changed:
            self._changed.wait_for(lambda: digest in self._ready or self._cancelled)
            if self._cancelled:
                raise WriterCancelled("pull cancelled")
            return self.paths[digest]


class _StoppableReader(ClosedOnExit):
    """A read-only stream that raises once ``stop`` is set (prompt cancellation)."""

    def __init__(self, inner: BinaryIO, stop: threading.Event) -> None:
        self._inner = inner
        self._stop = stop

    def read(self, size: int = -1) -> bytes:
        if self._stop.is_set():
            raise WriterCancelled("pull cancelled")
        return self._inner.read(size)

    def readinto(self, buffer: memoryview) -> int:
        if self._stop.is_set():
            raise WriterCancelled("pull cancelled")
        return int(self._inner.readinto(buffer))  # type: ignore[attr-defined]

    def close(self) -> None:
        self._inner.close()


def docker_plans(
    resolved: Sequence[ResolvedPull], options: DockerArchiveOptions
) -> dict[Digest, DockerImagePlan]:
    """The docker archive plan of each pull's primary image, by config digest."""
    from .docker_archive import plan_image  # here: a pull in an oci format needs no plan

    plans: dict[Digest, DockerImagePlan] = {}
    for item in resolved:
        for image in item.images[:1]:
            if image.decoded is None:
                raise InvalidManifestError(f"{item.reference} is not a loadable image")
            plans[image.config.digest] = plan_image(image.decoded, options)
    return plans


def write_order(
    resolved: Sequence[ResolvedPull], plans: Mapping[Digest, DockerImagePlan] | None
) -> list[Digest]:
    """Layer blobs in the order the writer reads them: sorted v1 directories for the docker
    format (``plans`` given), sorted digests for the oci formats (``plans`` None)."""
    if plans is None:
        digests = {
            layer.digest for item in resolved for i in item.images for layer in i.manifest.layers
        }
        return sorted(digests, key=lambda digest: digest.hex)
    first_name: dict[Digest, str] = {}
    for item in resolved:
        for image in item.images[:1]:
            v1_ids = plans[image.config.digest].v1_ids
            for layer, v1_id in zip(image.manifest.layers, v1_ids, strict=True):
                first_name[layer.digest] = min(first_name.get(layer.digest, v1_id), v1_id)
    return sorted(first_name, key=first_name.__getitem__)


def docker_writer(
    output: Path,
    resolved: Sequence[ResolvedPull],
    gate: BlobGate,
    plans: Mapping[Digest, DockerImagePlan],
    options: DockerArchiveOptions,
    follow: bool = False,
) -> Writer:
    """The legacy ``docker save`` archive of the primary image of each pull, as planned.

    ``follow``: the gate hears how far each download has its bytes on disk, so a layer
    may be decompressed as it arrives.
    """
    # Imported here: a pull in an oci format needs no docker writer.
    from .docker_archive import ArchiveImage, ArchiveLayer, write_docker_archive
    from .docker_parallel import write_docker_archive_in_parallel

    def write(stop: threading.Event) -> None:
        images = [
            ArchiveImage(
                plan=plans[image.config.digest],
                repo_tags=item.repo_tags,
                layers=[
                    ArchiveLayer(
                        diff_id,
                        _stoppable_opener(gate, d.digest, stop),
                        _announced_size(gate, d.digest),
                        functools.partial(gate.size_known, d.digest),
                        _following_opener(gate, d.digest, stop) if follow else None,
                        _GateLayerSource(gate, d.digest, d.size, stop),
                    )
                    for d, diff_id in zip(image.manifest.layers, image.config.diff_ids, strict=True)
                ],
            )
            for item in resolved
            for image in item.images[:1]
        ]
        with atomic_output(output) as handle:
            if not write_docker_archive_in_parallel(handle.regions(), images, options, stop):
                write_docker_archive(handle.sequential(), images, options)

    return write


class _ArrivingReader(GrowingBlobReader):
    """A blob's bytes as they arrive, and whether its download started the blob over since
    the reader was opened (``blob_copy.ArrivingBlob``)."""

    def __init__(self, gate: BlobGate, digest: Digest) -> None:
        super().__init__(gate, digest)
        self._gate = gate
        self._restarts_at_open = gate.restarts(digest)

    def intact(self) -> bool:
        return self._gate.restarts(self._digest) == self._restarts_at_open


def oci_writer(
    output: Path,
    resolved: Sequence[ResolvedPull],
    gate: BlobGate,
    output_format: str,
    include_attestations: bool,
    follow: bool = False,
) -> Writer:
    """The ``oci`` tar or the ``oci-dir`` directory of every pulled image.

    Every manifest resolved is stored: attestation manifests are resolved only when
    asked for (``include_attestations``) or with ``--platform all``, which resolves
    everything the index lists so that the layout is complete. ``follow``: the gate
    hears how far each download has its bytes on disk, so the tar copies a blob into its
    region while it arrives, when no blob is ready.
    """
    # Imported here: a docker-format pull, the default, never loads the OCI writer.
    from .oci_archive import OciImage, OciManifest, write_oci_archive_in_regions, write_oci_dir

    images = [
        OciImage(
            manifests=[
                OciManifest(image.manifest, image.config_raw, gate.paths, image.decoded)
                for image in item.images
            ],
            tags=list(item.repo_tags),
            index=item.index if len(item.images) > 1 or include_attestations else None,
        )
        for item in resolved
    ]

    def write(stop: threading.Event) -> None:
        def check_cancelled(_size: int) -> None:
            if stop.is_set():
                raise WriterCancelled("pull cancelled")

        def wait_for_blob(digest: Digest) -> bool:
            gate.wait_to_read(digest)
            # A blob cached by an earlier run is hashed again as it is copied (the cache
            # may have rotted); one this pull hashed as it wrote it is not.
            return gate.hashed_in_this_pull(digest)

        if output_format == "oci-dir":
            write_oci_dir(
                output,
                images,
                include_attestations=True,
                on_chunk=check_cancelled,
                before_blob=wait_for_blob,
                next_ready=gate.wait_for_any,
                link_blob_files=True,
            )
            return

        def next_arriving(digests: Collection[Digest]) -> tuple[Digest, _ArrivingReader | None]:
            digest, arriving = gate.wait_for_any_or_arriving(digests)
            return digest, _ArrivingReader(gate, digest) if arriving else None

        with atomic_output(output) as handle:
            write_oci_archive_in_regions(
                handle.regions(),
                images,
                include_attestations=True,
                on_chunk=check_cancelled,
                before_blob=wait_for_blob,
                next_ready=gate.wait_for_any,
                next_arriving=next_arriving if follow else None,
            )

    return write


class _GateLayerSource:
    """A layer's blob as the gate sees it, for a decoder process
    (:class:`~dockerdrag.decoder_processes.LayerSource`)."""

    def __init__(self, gate: BlobGate, digest: Digest, size: int, stop: threading.Event) -> None:
        self._gate = gate
        self._digest = digest
        self._size = size
        self._stop = stop

    @property
    def digest(self) -> Digest:
        return self._digest

    @property
    def size(self) -> int:
        return self._size

    def wait_beyond(self, position: int) -> tuple[Path, int, bool]:
        return self._gate.wait_beyond(self._digest, position)

    def wait_verified(self) -> Path:
        return self._gate.wait_to_read(self._digest)

    def check_stop(self) -> None:
        if self._stop.is_set():
            raise WriterCancelled("pull cancelled")


def _stoppable_opener(
    gate: BlobGate, digest: Digest, stop: threading.Event
) -> Callable[[], BinaryIO]:
    def open_layer() -> BinaryIO:
        path = gate.wait_to_read(digest)
        return _StoppableReader(open_decompressed(path), stop)  # type: ignore[return-value]

    return open_layer


def _following_opener(
    gate: BlobGate, digest: Digest, stop: threading.Event
) -> Callable[[], BinaryIO]:
    def open_layer() -> BinaryIO:
        return _StoppableReader(open_following(gate, digest), stop)  # type: ignore[return-value]

    return open_layer


def _announced_size(gate: BlobGate, digest: Digest) -> Callable[[], int | None]:
    """The size the blob's trailer claimed, as soon as it did, else the one the verified
    blob announces."""

    def size() -> int | None:
        found = gate.wait_for_size(digest)
        return announced_size(found) if isinstance(found, Path) else found

    return size


async def run_writer_in_thread(write: Writer, gate: BlobGate) -> None:
    """Run ``write`` in a worker thread; on cancellation stop it (the stop event, and the
    ``gate`` it may be waiting on), wait for it, propagate."""
    stop = threading.Event()

    async def set_stop_when_cancelled() -> None:
        try:
            await anyio.sleep_forever()
        finally:
            stop.set()
            gate.cancel()

    async with anyio.create_task_group() as group:
        group.start_soon(set_stop_when_cancelled)
        try:
            await anyio.to_thread.run_sync(write, stop)
        except WriterCancelled:
            # Only raised once ``stop`` was set by a cancellation, which the enclosing
            # scope delivers right here: leave the group and let it propagate.
            await anyio.lowlevel.checkpoint()
            raise
        finally:
            group.cancel_scope.cancel()
