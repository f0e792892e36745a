"""Assemble the archive in a worker thread while the layer blobs still arrive.

The pull resolves every image first (manifests and configs), then starts the
downloads and the writer together: the writer reaches each blob in the order
the format needs it (sorted v1 directories for ``docker``, sorted digests for
``oci``), waiting on a :class:`~dockerdrag.blob_gate.BlobGate` until the event loop
has verified it, and the downloads are started in that same order. A cancelled
writer stops at its next chunk and its temp output is removed
(:func:`~dockerdrag.blob_gate.run_writer_in_thread`).
"""

from __future__ import annotations

import functools
import importlib
import logging
import sys
import threading
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Final, NamedTuple

from .blob_follow import GrowingBlobReader, open_following
from .blob_gate import BlobGate, Writer, WriterCancelled
from .closing import ClosedOnExit
from .digest import Digest
from .docker_options import DockerArchiveOptions
from .errors import InvalidManifestError
from .gojson import DecodedConfig
from .image_config import ImageConfig
from .layers import announced_size, open_decompressed
from .manifest import Descriptor, ImageIndex, ImageManifest
from .reference import Reference
from .store import atomic_output

if TYPE_CHECKING:
    from .docker_archive import DockerImagePlan

log = logging.getLogger("dockerdrag")

_DOCKER_WRITER: Final = f"{__package__}.docker_parallel"
"""The docker writer's module (it imports the rest of the writer: ``docker_archive``)."""

OCI_COPIERS: Final = 4
"""Threads copying blobs into the ``oci`` tar at once: blobs that download side by side
are copied as they arrive, not one after the other once the downloads end (a copier done
with one takes the next, starting with what has arrived of it). Each takes the GIL at
every piece it copies: more of them slowed the event loop's download more than they
shortened the copy after it (benchmarks/README.md)."""
OCI_COPY_BLOCK: Final = 1 << 19
"""Bytes each of those threads gathers per direct write (memory: one block each). Each
block costs a copier the GIL a few times (a wait for the bytes, a read, a write), which
it waits for while the event loop runs: 256 KiB blocks cost the copiers more CPU and left
them further behind the download, larger ones cost memory (benchmarks/README.md)."""


class PlatformImage(NamedTuple):
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


def layers_to_fetch(
    resolved: Sequence[ResolvedPull], skipped: frozenset[Digest] = frozenset()
) -> list[Descriptor]:
    """The layer descriptors of every image of ``resolved``, but those in ``skipped``."""
    return [
        layer
        for item in resolved
        for image in item.images
        for layer in image.manifest.layers
        if layer.digest not in skipped
    ]


def import_docker_writer_ahead() -> threading.Thread | None:
    """Start importing the docker writer (:func:`docker_plans`, :func:`docker_writer`) in
    a background thread, unless it is imported already; the thread, or None.

    A docker-format pull needs it once its config came, on the way to its first layer
    request; before that, the event loop mostly waits for the registry (a token, the
    manifest, the config), so the import runs then. The thread is only a head start: the
    pull's own import waits for it, or (should it have failed) imports and fails itself.
    """
    if _DOCKER_WRITER in sys.modules:
        return None
    thread = threading.Thread(target=_import_quietly, name="dockerdrag-import", daemon=True)
    thread.start()
    return thread


def _import_quietly() -> None:
    try:
        importlib.import_module(_DOCKER_WRITER)
    except Exception as exc:  # the pull's own import meets it again and reports it
        log.debug("importing %s ahead failed: %s", _DOCKER_WRITER, exc)


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
                        functools.partial(gate.is_ready, d.digest),
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
                handle.regions(writers=0, block_size=OCI_COPY_BLOCK),
                images,
                include_attestations=True,
                on_chunk=check_cancelled,
                before_blob=wait_for_blob,
                next_ready=gate.wait_for_any,
                next_arriving=next_arriving if follow else None,
                copiers=OCI_COPIERS,
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
