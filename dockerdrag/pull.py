"""Pull an image into an archive: the public entry points.

:func:`pull_image` is a thin function over :class:`Puller`, a reusable client
whose pulls share one HTTP session, one token cache and one blob cache.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import anyio

from .auth import Credentials
from .digest import Digest
from .docker_archive import ArchiveImage, ArchiveLayer, DockerArchiveOptions, write_docker_archive
from .download import BlobFetcher, fetch_all, first_error
from .errors import DockerDragError, InvalidManifestError, UsageError
from .events import ArchiveWriting, ProgressCallback, PullStarted
from .layers import open_decompressed
from .manifest import Descriptor, ImageIndex, parse_config
from .platform import Platform
from .reference import Reference
from .registry import RegistryClient, ResolvedImage, mirror_host
from .store import BlobStore, atomic_output, check_output_path, default_cache_dir
from .transport import RetryPolicy, Transport, TransportConfig

DEFAULT_CONCURRENCY = 3


@dataclass(frozen=True)
class LayerResult:
    """One layer of a pulled image."""

    digest: Digest
    diff_id: Digest
    size: int
    media_type: str


@dataclass(frozen=True)
class PullResult:
    """What a pull produced."""

    output: Path
    reference: str
    manifest_digest: Digest
    index_digest: Digest | None
    config_digest: Digest
    layers: tuple[LayerResult, ...]
    platform: Platform
    repo_tags: tuple[str, ...]

    @property
    def image_id(self) -> str:
        """The image ID Docker shows after loading: the config digest."""
        return str(self.config_digest)


class _Cancelled(Exception):
    """Raised inside the archive-writing thread when the pull is cancelled."""


class _StoppableReader:
    """A read-only stream that raises once ``stop`` is set (prompt cancellation)."""

    def __init__(self, inner: BinaryIO, stop: threading.Event) -> None:
        self._inner = inner
        self._stop = stop

    def read(self, size: int = -1) -> bytes:
        if self._stop.is_set():
            raise _Cancelled("pull cancelled")
        return self._inner.read(size)

    def close(self) -> None:
        self._inner.close()

    def __enter__(self) -> _StoppableReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _as_platform(platform: Platform | str | None) -> Platform | None:
    if platform is None or isinstance(platform, Platform):
        return platform
    return Platform.parse(platform)


class Puller:
    """A reusable client: several pulls share one HTTP session and caches.

    Use as ``async with Puller(...) as puller: await puller.pull("busybox")``.
    """

    def __init__(
        self,
        *,
        insecure: Iterable[str] = (),
        ca_cert: str | Path | None = None,
        credentials: Mapping[str, Credentials] | None = None,
        use_docker_config: bool = True,
        registry_mirrors: Sequence[str] = (),
        cache_dir: str | Path | None = None,
        concurrency: int = DEFAULT_CONCURRENCY,
        retry: RetryPolicy | None = None,
        progress: ProgressCallback | None = None,
        archive_options: DockerArchiveOptions | None = None,
    ) -> None:
        plain_mirrors = [mirror_host(url)[0] for url in registry_mirrors if mirror_host(url)[1]]
        self.transport = Transport(
            TransportConfig(
                insecure_registries=frozenset([*insecure, *plain_mirrors]),
                ca_cert=Path(ca_cert) if ca_cert is not None else None,
                credentials=dict(credentials or {}),
                use_docker_config=use_docker_config,
                retry=retry or RetryPolicy(),
            )
        )
        self.client = RegistryClient(self.transport, registry_mirrors)
        self.store = BlobStore(Path(cache_dir) if cache_dir is not None else default_cache_dir())
        self.concurrency = concurrency
        self.progress = progress
        self.archive_options = archive_options or DockerArchiveOptions()

    async def __aenter__(self) -> Puller:
        await self.transport.__aenter__()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.transport.__aexit__(*exc_info)

    async def resolve(
        self, reference: str | Reference, platform: Platform | str | None = None
    ) -> ResolvedImage:
        """Resolve a reference to one platform's manifest without downloading layers."""
        ref = reference if isinstance(reference, Reference) else Reference.parse(reference)
        return await self.client.resolve(ref, _as_platform(platform))

    async def platforms(self, reference: str | Reference) -> list[Descriptor]:
        """The platform entries of a multi-platform image (empty for a single image)."""
        ref = reference if isinstance(reference, Reference) else Reference.parse(reference)
        _, document = await self.client.fetch_index_or_manifest(ref)
        return document.platforms() if isinstance(document, ImageIndex) else []

    async def pull(
        self,
        reference: str | Reference,
        *,
        platform: Platform | str | None = None,
        output: str | Path | None = None,
        tag: str | None = None,
    ) -> PullResult:
        """Pull one image into a ``docker load``-able archive at ``output``.

        ``tag`` sets the ``name:tag`` written into the archive (default: the
        reference's own tag; none for a digest-only reference).
        """
        ref = reference if isinstance(reference, Reference) else Reference.parse(reference)
        wanted = _as_platform(platform)
        archive_tags(ref, tag)  # validate before any I/O
        out_path = Path(output) if output is not None else Path(ref.default_output_name())
        check_output_path(out_path)
        self.store.ensure()
        resolved = await self.client.resolve(ref, wanted)
        manifest = resolved.manifest
        if not manifest.layers:
            raise InvalidManifestError(f"{ref} has no layers; docker cannot load such an image")
        config_raw = await self.client.fetch_blob_bytes(resolved.source, manifest.config)
        config = parse_config(config_raw)
        if len(config.diff_ids) != len(manifest.layers):
            raise InvalidManifestError(
                f"{ref}: the manifest lists {len(manifest.layers)} layers but the config has "
                f"{len(config.diff_ids)} diff_ids"
            )
        if self.progress is not None:
            self.progress(
                PullStarted(
                    str(ref), manifest.digest, tuple((d.digest, d.size) for d in manifest.layers)
                )
            )
        fetcher = BlobFetcher(self.client, self.store, self.progress)
        paths = await fetch_all(fetcher, resolved.source, manifest.layers, self.concurrency)
        repo_tags = archive_tags(ref, tag)
        if self.progress is not None:
            self.progress(ArchiveWriting(str(out_path)))
        layers = [
            ArchiveLayer(diff_id=diff_id, open=_opener(paths[descriptor.digest]))
            for descriptor, diff_id in zip(manifest.layers, config.diff_ids, strict=True)
        ]
        image = ArchiveImage(config_bytes=config_raw, layers=layers, repo_tags=repo_tags)
        await _write_archive_in_thread(out_path, [image], self.archive_options)
        return PullResult(
            output=out_path,
            reference=str(ref),
            manifest_digest=manifest.digest,
            index_digest=resolved.index.digest if resolved.index else None,
            config_digest=manifest.config.digest,
            layers=tuple(
                LayerResult(d.digest, diff_id, d.size, d.media_type)
                for d, diff_id in zip(manifest.layers, config.diff_ids, strict=True)
            ),
            platform=config.platform,
            repo_tags=repo_tags,
        )


def archive_tags(reference: Reference, tag: str | None) -> tuple[str, ...]:
    """The RepoTags of the archive: ``tag`` if given, else the reference's own tag."""
    if tag is not None:
        named = Reference.parse(tag)
        if named.digest is not None:
            raise UsageError(f"--tag {tag!r}: a name written into an archive cannot hold a digest")
        familiar = named.familiar_tagged()
        return (familiar,) if familiar else ()
    familiar = reference.familiar_tagged()
    return (familiar,) if familiar else ()


def _opener(path: Path) -> Callable[[], BinaryIO]:
    def open_layer() -> BinaryIO:
        return open_decompressed(path)

    return open_layer


async def _write_archive_in_thread(
    output: Path, images: Sequence[ArchiveImage], options: DockerArchiveOptions
) -> None:
    """Write the archive in a worker thread; cancellation stops it promptly and cleanly."""
    stop = threading.Event()
    finished = threading.Event()
    stoppable = [
        ArchiveImage(
            config_bytes=image.config_bytes,
            repo_tags=image.repo_tags,
            layers=[
                ArchiveLayer(layer.diff_id, _stoppable_opener(layer.open, stop))
                for layer in image.layers
            ],
        )
        for image in images
    ]

    def work() -> None:
        try:
            with atomic_output(output) as handle:
                write_docker_archive(handle, stoppable, options)
        finally:
            finished.set()

    try:
        await anyio.to_thread.run_sync(work, abandon_on_cancel=True)
    except BaseException:
        stop.set()
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(finished.wait)
        raise


def _stoppable_opener(
    opener: Callable[[], BinaryIO], stop: threading.Event
) -> Callable[[], BinaryIO]:
    def open_layer() -> BinaryIO:
        return _StoppableReader(opener(), stop)  # type: ignore[return-value]

    return open_layer


async def pull_image(
    reference: str | Reference,
    *,
    platform: Platform | str | None = None,
    output: str | Path | None = None,
    insecure: Iterable[str] = (),
    ca_cert: str | Path | None = None,
    credentials: Credentials | None = None,
    cache_dir: str | Path | None = None,
    concurrency: int = DEFAULT_CONCURRENCY,
    progress: ProgressCallback | None = None,
    tag: str | None = None,
    registry_mirrors: Sequence[str] = (),
) -> PullResult:
    """Pull ``reference`` into a ``docker load``-able archive and return what was written.

    ``credentials`` apply to the image's own registry only.
    """
    ref = reference if isinstance(reference, Reference) else Reference.parse(reference)
    by_host = {ref.registry_host: credentials} if credentials is not None else {}
    async with Puller(
        insecure=insecure,
        ca_cert=ca_cert,
        credentials=by_host,
        cache_dir=cache_dir,
        concurrency=concurrency,
        progress=progress,
        registry_mirrors=registry_mirrors,
    ) as puller:
        try:
            return await puller.pull(ref, platform=platform, output=output, tag=tag)
        except BaseExceptionGroup as group:
            error = first_error(group)
            if isinstance(error, DockerDragError):
                raise error from None
            raise


__all__ = ["LayerResult", "PullResult", "Puller", "pull_image"]
