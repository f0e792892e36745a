"""Push the images of an archive into a registry: :func:`push_archive`.

Every image goes under a destination repository with its own name
(``registry.internal:5000/team`` + ``library/busybox:1.36`` ->
``registry.internal:5000/team/busybox:1.36``), or where a rename sends it
(``renames={"busybox:1.36": "registry.internal:5000/base/busybox:stable"}``).

The archive is checked whole before the first byte is sent, by
:func:`~dockerdrag.verify.verify_archive` (every blob's sha256 and size, every manifest and
index, each layer's ``diff_id``, every reference between them); an index whose manifests
are not all in the archive is refused (:mod:`~dockerdrag.archive_images`).

* From an OCI layout (``--format oci``/``oci-dir``, Docker 25+ archives) the manifests and
  indexes are pushed as the archive's bytes, so the registry serves the source's digests.
* From a legacy docker archive (uncompressed layers) each layer is gzipped again
  (deterministically: see :mod:`recompress`) into a temporary file under the cache
  directory, the config is pushed as it is (its digest is the image ID), and a new Docker
  schema 2 manifest is written (:attr:`PushedImage.rewritten`).

Blobs then go up through :class:`~dockerdrag.upload.BlobUploader` (skipped when the
registry has them, mounted from a repository this push filled, chunked and resumable),
at most ``concurrency`` at a time; images one after the other, so later ones mount what
earlier ones uploaded. Manifests go last, children before the index listing them.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import anyio

from .archive_images import LayoutImage, LegacyImage, PushableImage, pushable_images
from .conventions import default_cache_dir
from .credentials import Credentials
from .digest import Digest
from .download import DEFAULT_CONCURRENCY
from .errors import OutputError, Remedy, Setting, UsageError, leaf_error
from .events import (
    LayerPhase,
    LayerProgress,
    ManifestPushed,
    PushEvent,
    PushProgressCallback,
    PushStarted,
)
from .media_types import (
    MEDIA_TYPE_DOCKER_CONFIG,
    MEDIA_TYPE_DOCKER_LAYER_GZIP,
    MEDIA_TYPE_DOCKER_MANIFEST,
)
from .recompress import CompressedLayer, compress_layer
from .reference import Reference
from .retry import RetryPolicy
from .store import describe_os_error
from .transfer_options import UPLOAD_CHUNK_SIZE
from .transport import Transport, TransportConfig
from .upload import BlobOutcome, BlobSource, BlobUploader
from .verify import verify_archive

__all__ = ["PushResult", "PushedImage", "push_archive"]

_OUTCOME_PHASES = {
    BlobOutcome.EXISTS: LayerPhase.EXISTS,
    BlobOutcome.MOUNTED: LayerPhase.MOUNTED,
    BlobOutcome.UPLOADED: LayerPhase.COMPLETE,
}


@dataclass(frozen=True)
class PushedImage:
    """One image as the registry now holds it."""

    reference: str  # where it went: host/repository:tag
    source: str  # its name in the archive (or its digest when it has none)
    digest: Digest  # the manifest's (or index's) digest in the registry
    rewritten: bool  # True: a new manifest was written (legacy docker archive)


@dataclass(frozen=True)
class PushResult:
    """What :func:`push_archive` did."""

    archive: Path
    images: tuple[PushedImage, ...]
    uploaded: int  # blobs sent
    existing: int  # blobs the registry had
    mounted: int  # blobs taken from another repository of the registry
    uploaded_bytes: int


@dataclass(frozen=True)
class _Target:
    """One image of the archive and the reference it goes to."""

    image: PushableImage
    source: str
    reference: Reference


# --------------------------------------------------------------------------- targets


def _repository_and_tag(name: str) -> tuple[str | None, str]:
    """``(repository path, tag)`` of an image's name in the archive; a bare tag (an OCI
    ``ref.name`` such as ``1.0``) has no repository."""
    if "/" not in name and ":" not in name:
        return None, name
    ref = Reference.parse(name)
    path = ref.familiar_name if ref.is_docker_hub else ref.path
    return path, ref.tag or "latest"


def _is_registry_host(destination: str) -> bool:
    """Whether ``destination`` names a registry alone (``registry.internal:5000``), as the
    first component of a reference would: with a dot or a port, or ``localhost``."""
    return "/" not in destination and (
        "." in destination or ":" in destination or destination == "localhost"
    )


def _under(destination: str, name: str) -> Reference:
    repository, tag = _repository_and_tag(name)
    if repository:
        return Reference.parse(f"{destination}/{repository}:{tag}")
    if _is_registry_host(destination):
        rename = Remedy(Setting.RENAMES)
        raise UsageError(
            f"the archive names an image only by its tag {tag!r}: give DEST a repository "
            f"({destination}/NAME) or use {rename}"
        ).suggesting(rename)
    return Reference.parse(f"{destination}:{tag}")


def _check_destination(destination: str) -> str:
    """The repository (or registry) every image goes under, as a reference prefix."""
    if _is_registry_host(destination):
        Reference.parse(f"{destination}/x")  # a malformed host is a usage error here
        return destination
    ref = Reference.parse(destination)
    if destination.rsplit("/", 1)[-1].count(":") or ref.digest is not None:
        rename = Remedy(Setting.RENAMES, "NAME=HOST/PATH:TAG")
        raise UsageError(
            f"destination {destination!r} must be a repository (HOST/PATH, no tag) or a "
            f"registry (HOST:PORT); use {rename} to choose a tag"
        ).suggesting(rename)
    return ref.name


def _matches(image: PushableImage, wanted: str) -> bool:
    if wanted == image.key:
        return True
    for name in image.names:
        if name == wanted:
            return True
        try:
            if str(Reference.parse(name)) == str(Reference.parse(wanted)):
                return True
        except UsageError:
            continue
    return False


def plan_targets(
    images: Sequence[PushableImage], destination: str | None, renames: Mapping[str, str]
) -> list[_Target]:
    """Where each image goes: renamed ones where asked, the others under ``destination``."""
    targets: list[_Target] = []
    for wanted, to in renames.items():
        found = [image for image in images if _matches(image, wanted)]
        if not found:
            named = Remedy(Setting.RENAMES, wanted)
            raise UsageError(f"{named}: the archive holds no image of that name").suggesting(named)
        reference = Reference.parse(to)
        if reference.digest is not None:
            named = Remedy(Setting.RENAMES, f"{wanted}={to}")
            raise UsageError(f"{named}: push to a tag, not a digest").suggesting(named)
        targets.append(_Target(found[0], wanted, reference))
    if destination is None:
        if not targets:
            rename = Remedy(Setting.RENAMES, "NAME=DEST:TAG")
            raise UsageError(f"give a destination repository or {rename}").suggesting(rename)
        return targets
    repository = _check_destination(destination)
    renamed = {target.image.key for target in targets}
    for image in images:
        if image.key in renamed:
            continue
        if not image.names:
            rename = Remedy(Setting.RENAMES, f"{image.key}=DEST:TAG")
            raise UsageError(
                f"image {image.key} has no name in the archive; push it with {rename}"
            ).suggesting(rename)
        for name in image.names:
            targets.append(_Target(image, name, _under(repository, name)))
    return targets


# --------------------------------------------------------------------------- manifests


def _manifest_for(image: LegacyImage, layers: Sequence[CompressedLayer]) -> bytes:
    """A Docker schema 2 manifest of a legacy image, laid out as Docker writes one."""
    document = {
        "schemaVersion": 2,
        "mediaType": MEDIA_TYPE_DOCKER_MANIFEST,
        "config": {
            "mediaType": MEDIA_TYPE_DOCKER_CONFIG,
            "size": len(image.config_raw),
            "digest": str(image.config.digest),
        },
        "layers": [
            {
                "mediaType": MEDIA_TYPE_DOCKER_LAYER_GZIP,
                "size": layer.size,
                "digest": str(layer.digest),
            }
            for layer in layers
        ],
    }
    return json.dumps(document, indent=3).encode()


class _Preparation:
    """Every blob the targets need, by digest; legacy layers gzipped, each once."""

    def __init__(self, work_dir: Path) -> None:
        self.work_dir = work_dir
        self.sources: dict[Digest, BlobSource] = {}
        self.compressed: dict[Digest, CompressedLayer] = {}  # by diff_id

    def prepare(self, targets: Sequence[_Target]) -> None:
        """Gather the blobs and gzip legacy layers (blocking: run it in a worker thread)."""
        for target in targets:
            image = target.image
            if isinstance(image, LayoutImage):
                for blob in image.blobs:
                    self.sources.setdefault(blob.digest, blob)
                continue
            self.sources[image.config.digest] = image.config
            for layer, diff_id in zip(image.layers, image.diff_ids, strict=True):
                if diff_id not in self.compressed:
                    compressed = compress_layer(layer, diff_id, self.work_dir / diff_id.hex)
                    self.compressed[diff_id] = compressed
                    self.sources[compressed.digest] = BlobSource(
                        compressed.digest, compressed.size, compressed.path
                    )

    def blobs_of(self, image: PushableImage) -> list[BlobSource]:
        """The blobs ``image`` needs, config first, each once."""
        if isinstance(image, LayoutImage):
            return list(image.blobs)
        digests = [image.config.digest, *(self.compressed[d].digest for d in image.diff_ids)]
        return [self.sources[digest] for digest in dict.fromkeys(digests)]


# --------------------------------------------------------------------------- pushing


class _Pusher:
    """Pushes the prepared targets, one image after the other."""

    def __init__(
        self,
        uploader: BlobUploader,
        preparation: _Preparation,
        concurrency: int,
        emit: PushProgressCallback,
    ) -> None:
        self.uploader = uploader
        self.preparation = preparation
        self.limiter = anyio.CapacityLimiter(concurrency)
        self.emit = emit
        self.holders: dict[Digest, set[tuple[str, str]]] = {}  # digest -> (host, repository)
        self.outcomes: list[tuple[BlobOutcome, int]] = []

    def _mount_source(self, repo: Reference, digest: Digest) -> str | None:
        for host, path in sorted(self.holders.get(digest, ())):
            if host == repo.registry_host and path != repo.path:
                return path
        return None

    async def _blob(self, repo: Reference, source: BlobSource) -> None:
        async with self.limiter:
            outcome = await self.uploader.push_blob(
                repo, source, self._mount_source(repo, source.digest)
            )
        self.holders.setdefault(source.digest, set()).add((repo.registry_host, repo.path))
        self.outcomes.append((outcome, source.size))
        phase = _OUTCOME_PHASES[outcome]
        self.emit(LayerProgress(source.digest, phase, source.size, source.size))

    async def push(self, target: _Target) -> PushedImage:
        repo = target.reference
        blobs = self.preparation.blobs_of(target.image)
        layers = tuple((blob.digest, blob.size) for blob in blobs)
        self.emit(PushStarted(str(repo), target.source, layers))
        for blob in blobs:
            self.emit(LayerProgress(blob.digest, LayerPhase.WAITING, 0, blob.size))
        async with anyio.create_task_group() as group:
            for blob in blobs:
                group.start_soon(self._blob, repo, blob)
        tag = repo.tag or "latest"
        image = target.image
        if isinstance(image, LegacyImage):
            layers_gz = [self.preparation.compressed[d] for d in image.diff_ids]
            raw = _manifest_for(image, layers_gz)
            digest = await self.uploader.put_manifest(repo, tag, raw, MEDIA_TYPE_DOCKER_MANIFEST)
            rewritten = True
        else:
            for document in image.documents:
                where = tag if document.digest == image.root.digest else str(document.digest)
                await self.uploader.put_manifest(repo, where, document.raw, document.media_type)
            digest, rewritten = image.root.digest, False
        self.emit(ManifestPushed(str(repo), digest, rewritten))
        return PushedImage(str(repo), target.source, digest, rewritten)


def _counts(outcomes: Iterable[tuple[BlobOutcome, int]]) -> tuple[int, int, int, int]:
    listed = list(outcomes)
    uploaded = [size for outcome, size in listed if outcome is BlobOutcome.UPLOADED]
    existing = sum(1 for outcome, _ in listed if outcome is BlobOutcome.EXISTS)
    mounted = sum(1 for outcome, _ in listed if outcome is BlobOutcome.MOUNTED)
    return len(uploaded), existing, mounted, sum(uploaded)


async def push_archive(
    archive: str | Path,
    destination: str | None = None,
    *,
    renames: Mapping[str, str] | None = None,
    insecure: Iterable[str] = (),
    ca_cert: str | Path | None = None,
    credentials: Mapping[str, Credentials] | None = None,
    use_docker_config: bool = True,
    concurrency: int = DEFAULT_CONCURRENCY,
    chunk_size: int = UPLOAD_CHUNK_SIZE,
    retry: RetryPolicy | None = None,
    cache_dir: str | Path | None = None,
    progress: PushProgressCallback | None = None,
) -> PushResult:
    """Push every image of ``archive`` (a tar or an OCI layout directory) to a registry.

    ``destination`` is a repository (``registry.internal:5000/team``) under which each
    image goes with its name; ``renames`` maps an image's name in the archive (or its
    digest) to the ``host/repository:tag`` it goes to instead. ``credentials`` maps
    registry hosts to credentials (Docker's config.json is read too, unless
    ``use_docker_config=False``). Blobs go up ``concurrency`` at a time in ``PATCH``
    chunks of ``chunk_size`` bytes; compressed legacy layers wait in a temporary
    directory under ``cache_dir`` (default: the pull's cache directory).
    """
    path = Path(archive)
    images = pushable_images(await verify_archive(path))
    targets = plan_targets(images, destination, dict(renames or {}))
    work_root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    emit = progress or _ignore
    config = TransportConfig(
        insecure_registries=frozenset(insecure),
        ca_cert=Path(ca_cert) if ca_cert is not None else None,
        credentials=dict(credentials or {}),
        use_docker_config=use_docker_config,
        retry=retry or RetryPolicy(),
    )
    work_dir = await anyio.to_thread.run_sync(_work_dir, work_root)
    try:
        preparation = _Preparation(work_dir)
        await anyio.to_thread.run_sync(preparation.prepare, targets)
        async with Transport(config) as transport:
            transport.on_retry = emit
            uploader = BlobUploader(
                transport,
                chunk_size=chunk_size,
                progress=lambda digest, done: _uploading(emit, preparation, digest, done),
            )
            pusher = _Pusher(uploader, preparation, concurrency, emit)
            pushed = [await pusher.push(target) for target in targets]
    except BaseExceptionGroup as group:
        raise leaf_error(group) from None
    finally:
        await anyio.to_thread.run_sync(lambda: shutil.rmtree(work_dir, ignore_errors=True))
    uploaded, existing, mounted, uploaded_bytes = _counts(pusher.outcomes)
    return PushResult(path, tuple(pushed), uploaded, existing, mounted, uploaded_bytes)


def _work_dir(root: Path) -> Path:
    """A new directory for compressed legacy layers under ``root`` (created if needed)."""
    try:
        root.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix="push-", dir=root))
    except OSError as exc:
        raise OutputError(describe_os_error(exc, f"creating a work directory in {root}")) from exc


def _ignore(_event: PushEvent) -> None:
    return None


def _uploading(
    emit: PushProgressCallback, preparation: _Preparation, digest: Digest, done: int
) -> None:
    size = preparation.sources[digest].size
    emit(LayerProgress(digest, LayerPhase.UPLOADING, done, size))
