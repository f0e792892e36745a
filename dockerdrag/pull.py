"""Pull images into an archive: the public entry points.

:func:`pull_image` / :func:`pull_images` are thin functions over :class:`Puller`,
a reusable client whose pulls share one HTTP session, one token cache and one
blob cache. A pull resolves every reference first (tag -> digest -> platform
manifests -> configs), then fetches all distinct layer blobs under one
concurrency limit while :mod:`assemble` writes the archive in a worker thread.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterable, Sequence
from pathlib import Path
from typing import Literal

import anyio
import anyio.lowlevel

from .assemble import (
    BlobGate,
    PlatformImage,
    ResolvedPull,
    docker_plans,
    docker_writer,
    oci_writer,
    write_order,
)
from .cache_repair import BlobSources, write_repairing
from .cache_use import BlobsInUse
from .client_credentials import ClientCredentials, CredentialsSpec
from .conventions import check_output_name, default_cache_dir
from .digest import Digest
from .docker_archive import DockerArchiveOptions
from .download import (
    DEFAULT_CONCURRENCY,
    BlobFetcher,
    TransferOptions,
    fetch_all,
)
from .errors import (
    DockerDragError,
    InvalidManifestError,
    Remedy,
    Setting,
    UnsupportedFormatError,
    UsageError,
    leaf_error,
)
from .eventloop import require_asyncio
from .events import (
    ArchiveWriting,
    EventStream,
    LayerProgress,
    ProgressCallback,
    ProgressEvent,
    PullStarted,
)
from .image_list import ImageListEntry
from .list_pull import find_tag_move, locked_image, plan_list, resolve_locked
from .lockfile import LockedImage, Lockfile, write_lockfile
from .manifest import (
    Descriptor,
    ImageConfig,
    ImageIndex,
    ImageManifest,
    decode_config,
    image_config,
    parse_config,
)
from .outputs import check_output, output_path
from .platform import Platform, PlatformSpec, check_image_platform, parse_platforms
from .pull_results import (
    ImageInspection,
    LayerResult,
    ListPullResult,
    PullEvent,
    PullFinished,
    PullResult,
)
from .reference import Reference
from .registry import RegistryClient, choose_entries, mirror_host
from .retry import RetryPolicy
from .store import BlobStore, check_output_path
from .transport import Transport, TransportConfig

FORMATS: tuple[str, ...] = ("docker", "oci", "oci-dir")


class _CallProgress:
    """One call's progress callback: its own events, and layer events of its own layers."""

    def __init__(self, callback: ProgressCallback | None) -> None:
        self.callback = callback
        self.digests: set[Digest] = set()

    def __call__(self, event: ProgressEvent) -> None:
        if self.callback is None:
            return
        if isinstance(event, PullStarted):
            self.digests.update(digest for digest, _ in event.layers)
        elif isinstance(event, LayerProgress) and event.digest not in self.digests:
            return
        self.callback(event)


def archive_tags(reference: Reference, tag: str | None) -> tuple[str, ...]:
    """The RepoTags of the archive: ``tag`` if given, else the reference's own tag."""
    if tag is not None:
        named = Reference.parse(tag)
        if named.digest is not None:
            remedy = Remedy(Setting.TAG, tag)
            raise UsageError(
                f"{remedy}: a name written into an archive cannot hold a digest"
            ).suggesting(remedy)
        familiar = named.familiar_tagged()
        return (familiar,) if familiar else ()
    familiar = reference.familiar_tagged()
    return (familiar,) if familiar else ()


def _as_reference(reference: str | Reference) -> Reference:
    return reference if isinstance(reference, Reference) else Reference.parse(reference)


def _check_format(output_format: str) -> None:
    if output_format not in FORMATS:
        raise UnsupportedFormatError(
            f"unknown format {output_format!r}: choose one of {', '.join(FORMATS)}"
        )


class Puller:
    """A reusable client: several pulls share one HTTP session, token cache and blob cache.

    Use as ``async with Puller(...) as puller: await puller.pull("busybox")``; the
    methods are coroutines of an asyncio event loop (see :mod:`dockerdrag.eventloop`).
    Every option is keyword-only; the library reads no ``DOCKERDRAG_*`` variable.

    Parameters:
        ``insecure``: registries (``host[:port]``) that may be reached over plain
            HTTP or with unverified TLS; never implied for any other host.
        ``ca_cert``: a PEM file of extra CA certificates to trust (besides the
            system store and Docker's ``certs.d``).
        ``credentials``: a mapping of registry hosts (``ghcr.io``, ``host:port``,
            ``registry-1.docker.io`` for Docker Hub) to :class:`Credentials`, or one
            :class:`Credentials` for the registry of the images this client pulls
            (bound to the first image's registry; an image from another registry is
            then a :class:`UsageError`). Hosts without explicit credentials use the
            Docker config, as ``docker pull`` does.
        ``use_docker_config``: whether to look credentials up in
            ``$DOCKER_CONFIG/config.json`` (credential helpers included).
        ``registry_mirrors``: Docker Hub mirror URLs (``https://mirror:5000``;
            an ``http://`` URL allows that mirror plain HTTP), tried in order before
            Docker Hub for Docker Hub images, as dockerd's ``registry-mirrors``.
        ``cache_dir``: the blob cache directory (default ``$XDG_CACHE_HOME/dockerdrag``).
        ``concurrency``: the most connections open at once, layers and chunks together.
        ``retry``: how transient failures are retried (:class:`RetryPolicy`).
        ``progress``: a callback receiving every pull's events (:class:`PullStarted`,
            :class:`LayerProgress`, :class:`ArchiveWriting`), on the event loop.
        ``archive_options``: how the docker format's bytes vary between Docker
            versions (:class:`DockerArchiveOptions`; the default is Docker 20.10's).
        ``include_attestations``: keep attestation manifests (SBOM, provenance) in
            the OCI formats.
        ``include_foreign``: fetch foreign (non-distributable) layers from the URLs
            their descriptors name, without credentials; the docker format needs it
            for images that have such layers.
        ``transfer``: when blobs are split into parallel ranged chunks
            (:class:`TransferOptions`).
    """

    def __init__(
        self,
        *,
        insecure: Iterable[str] = (),
        ca_cert: str | Path | None = None,
        credentials: CredentialsSpec = None,
        use_docker_config: bool = True,
        registry_mirrors: Sequence[str] = (),
        cache_dir: str | Path | None = None,
        concurrency: int = DEFAULT_CONCURRENCY,
        retry: RetryPolicy | None = None,
        progress: ProgressCallback | None = None,
        archive_options: DockerArchiveOptions | None = None,
        include_attestations: bool = False,
        include_foreign: bool = False,
        transfer: TransferOptions | None = None,
    ) -> None:
        plain_mirrors = [mirror_host(url)[0] for url in registry_mirrors if mirror_host(url)[1]]
        self.credentials = ClientCredentials(credentials)
        self.transport = Transport(
            TransportConfig(
                insecure_registries=frozenset([*insecure, *plain_mirrors]),
                ca_cert=Path(ca_cert) if ca_cert is not None else None,
                credentials=self.credentials.by_host,
                use_docker_config=use_docker_config,
                retry=retry or RetryPolicy(),
            )
        )
        self.transport.on_retry = self._emit
        self.client = RegistryClient(self.transport, registry_mirrors)
        self.store = BlobStore(Path(cache_dir) if cache_dir is not None else default_cache_dir())
        self.concurrency = concurrency
        self.fetcher = BlobFetcher(
            self.client, self.store, self._emit, concurrency=concurrency, options=transfer
        )
        self.progress = progress
        self._listeners: list[_CallProgress] = []
        self.archive_options = archive_options or DockerArchiveOptions()
        self.include_attestations = include_attestations
        self.include_foreign = include_foreign

    async def __aenter__(self) -> Puller:
        """Open the HTTP session; raises UnsupportedEventLoopError outside asyncio."""
        require_asyncio()
        await self.transport.__aenter__()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        try:
            await self.transport.__aexit__(*exc_info)
        finally:
            self.store.close()

    def _emit(self, event: ProgressEvent) -> None:
        """Deliver a blob event to the client-wide callback and every running call."""
        if self.progress is not None:
            self.progress(event)
        for listener in list(self._listeners):
            listener(event)

    async def platforms(self, reference: str | Reference) -> list[Descriptor]:
        """The platform entries of a multi-platform image (empty for a single image).

        ``reference``: the image (``busybox``, ``ghcr.io/org/app:1``, a
        :class:`Reference`). Attestation entries are left out.
        """
        ref = _as_reference(reference)
        self.credentials.bind(ref)
        _, document = await self.client.fetch_index_or_manifest(ref)
        return document.platforms() if isinstance(document, ImageIndex) else []

    async def inspect(
        self, reference: str | Reference, *, platform: Platform | str | None = None
    ) -> ImageInspection:
        """Describe an image (manifest, platforms, config, layers) without pulling layers.

        ``reference``: the image. ``platform``: for a multi-platform image, the
        platform whose manifest and config are read (as for :meth:`pull`); without
        it only the index is described (unless it offers exactly one platform).
        """
        ref = _as_reference(reference)
        self.credentials.bind(ref)
        wanted = Platform.parse(platform) if isinstance(platform, str) else platform
        self.store.ensure()  # the config is read through the blob cache
        source, document = await self.client.fetch_index_or_manifest(ref)
        if isinstance(document, ImageManifest):
            image = await self._with_config(ref, source, document)
            return ImageInspection(
                str(ref),
                document.digest,
                document.media_type,
                document.raw,
                (),
                image.manifest,
                image.config,
            )
        offered = tuple(document.platforms())
        if wanted is None and len(offered) != 1:
            return ImageInspection(
                str(ref), document.digest, document.media_type, document.raw, offered
            )
        (entry, *_) = choose_entries(ref, document, [wanted] if wanted else None)
        manifest = await self.client.fetch_manifest(source, str(entry.digest))
        if not isinstance(manifest, ImageManifest):
            raise InvalidManifestError(f"index entry {entry.digest} of {ref} is not an image")
        image = await self._with_config(ref, source, manifest)
        return ImageInspection(
            str(ref),
            document.digest,
            document.media_type,
            document.raw,
            offered,
            image.manifest,
            image.config,
        )

    @contextlib.asynccontextmanager
    async def pull_events(
        self,
        reference: str | Reference,
        *,
        platform: PlatformSpec = None,
        output: str | Path | None = None,
        tag: str | None = None,
        format: str = "docker",
    ) -> AsyncIterator[EventStream[PullEvent]]:
        """Pull like :meth:`pull`, handing out the progress as an async iterator of events.

        ::

            async with puller.pull_events("busybox", output="bb.tar") as events:
                async for event in events:
                    ...  # PullStarted, LayerProgress, ArchiveWriting, then PullFinished

        The iteration ends with :class:`PullFinished` (holding the result) or raises
        the pull's error. Leaving the block early cancels the pull. ``reference``,
        ``platform``, ``output``, ``tag`` and ``format`` are :meth:`pull`'s; pending
        ``downloading`` updates of a layer are merged, so a slow consumer costs no memory.
        """
        stream: EventStream[PullEvent] = EventStream()

        async def run() -> None:
            try:
                result = await self.pull(
                    reference,
                    platform=platform,
                    output=output,
                    tag=tag,
                    format=format,
                    progress=stream.push,
                )
            except Exception as exc:
                stream.finish(leaf_error(exc))
                return
            stream.push(PullFinished((result,)))
            stream.finish()

        try:
            async with anyio.create_task_group() as group:
                group.start_soon(run)
                try:
                    yield stream
                finally:
                    group.cancel_scope.cancel()
        except BaseExceptionGroup as group_error:
            # Only the block inside ``async with`` can raise here: hand its error back as is.
            if len(group_error.exceptions) == 1:
                raise group_error.exceptions[0] from None
            raise

    async def pull(
        self,
        reference: str | Reference,
        *,
        platform: PlatformSpec = None,
        output: str | Path | None = None,
        tag: str | None = None,
        format: str = "docker",
        progress: ProgressCallback | None = None,
    ) -> PullResult:
        """Pull one image into an archive and return what was written.

        Parameters:
            ``reference``: the image: ``busybox``, ``busybox:1.36``,
                ``ghcr.io/org/app:1``, ``app@sha256:…`` (Docker's grammar), or a
                :class:`Reference`.
            ``platform``: which image of a multi-platform index to pull: a
                :class:`Platform` or ``"os/arch[/variant]"`` (``"linux/arm64"``;
                ``"arm64"`` or ``"arm/v7"`` alone mean ``linux/arm64``, ``linux/arm/v7``).
                With ``format="oci"``/``"oci-dir"`` also several (a sequence or a
                comma-separated string) or ``"all"``. ``None``: an index offering
                several platforms raises :class:`PlatformRequiredError` (listing them);
                a single-platform image is pulled whatever its platform. Given, a
                single-platform image for another platform raises
                :class:`PlatformNotFoundError` before any layer is fetched.
            ``output``: the archive's path; default: the repository with ``/`` turned
                into ``_`` in the current directory (``library_busybox.tar``; without
                ``.tar`` for ``oci-dir``); an existing directory gets the archive
                inside it under that name (not for ``oci-dir``).
            ``tag``: the ``name:tag`` written into the archive (default: the
                reference's own tag; none for a digest-only reference, which then
                loads untagged, as ``docker save IMAGE@DIGEST`` does).
            ``format``: ``"docker"`` (the legacy ``docker save`` archive, layers
                decompressed), ``"oci"`` (an OCI layout and ``manifest.json`` in one
                tar, layers as pulled) or ``"oci-dir"`` (the OCI layout as a directory,
                which must not exist or be empty).
            ``progress``: a callback receiving this pull's events (besides the
                client's ``progress``).

        Raises a :class:`DockerDragError` subclass; nothing is left at ``output``
        then, and the blobs already verified stay in the cache.
        """
        ref = _as_reference(reference)
        out = output_path(ref, output, format)
        tags = [tag] if tag is not None else None
        (result,) = await self.pull_many(
            [ref], platform=platform, output=out, tags=tags, format=format, progress=progress
        )
        return result

    async def pull_many(
        self,
        references: Sequence[str | Reference],
        *,
        output: str | Path,
        platform: PlatformSpec = None,
        tags: Sequence[str | None] | None = None,
        format: str = "docker",
        progress: ProgressCallback | None = None,
    ) -> list[PullResult]:
        """Pull several images into ONE archive; each blob is stored once.

        Parameters:
            ``references``: the images, in the order ``manifest.json`` lists them.
            ``output``: the archive's path (required: a bundle has no default name).
            ``platform``: for every reference, which image of a multi-platform index to pull: a
                :class:`Platform` or ``"os/arch[/variant]"`` (``"linux/arm64"``;
                ``"arm64"`` or ``"arm/v7"`` alone mean ``linux/arm64``, ``linux/arm/v7``).
                With ``format="oci"``/``"oci-dir"`` also several (a sequence or a
                comma-separated string) or ``"all"``. ``None``: an index offering
                several platforms raises :class:`PlatformRequiredError` (listing them);
                a single-platform image is pulled whatever its platform. Given, a
                single-platform image for another platform raises
                :class:`PlatformNotFoundError` before any layer is fetched.
            ``tags``: the ``name:tag`` written for each image (parallel to
                ``references``; ``None`` in it, or no ``tags``: the reference's own).
            ``format``: ``"docker"`` (the legacy ``docker save`` archive, layers
                decompressed), ``"oci"`` (an OCI layout and ``manifest.json`` in one
                tar, layers as pulled) or ``"oci-dir"`` (the OCI layout as a directory,
                which must not exist or be empty).
            ``progress``: a callback receiving this call's events (besides the
                client's ``progress``).
        """
        listener = _CallProgress(progress)
        self._listeners.append(listener)
        try:
            return await self._pull_many(references, output, platform, tags, format, listener)
        finally:
            self._listeners.remove(listener)

    async def _pull_many(
        self,
        references: Sequence[str | Reference],
        output: str | Path,
        platform: PlatformSpec,
        tags: Sequence[str | None] | None,
        format: str,
        listener: _CallProgress,
    ) -> list[PullResult]:
        _check_format(format)
        refs = [_as_reference(r) for r in references]
        if not refs:
            raise UsageError("no image given")
        for ref in refs:
            self.credentials.bind(ref)
        overrides = list(tags) if tags is not None else [None] * len(refs)
        if len(overrides) != len(refs):
            raise UsageError(f"tags holds {len(overrides)} names for {len(refs)} images")
        repo_tags = [archive_tags(ref, t) for ref, t in zip(refs, overrides, strict=True)]
        wanted = parse_platforms(platform)
        if format == "docker" and (wanted == "all" or (wanted is not None and len(wanted) > 1)):
            remedy = Remedy(Setting.FORMAT, "oci")
            raise UsageError(f"several platforms need {remedy} or 'oci-dir'").suggesting(remedy)
        out_path = Path(output)
        self._prepare_output(out_path, format)
        resolved = [
            await self._resolve(ref, wanted, names)
            for ref, names in zip(refs, repo_tags, strict=True)
        ]
        return await self._assemble(resolved, out_path, format, listener)

    async def pull_list(
        self,
        entries: Sequence[ImageListEntry] | None = None,
        *,
        output: str | Path,
        platform: str | None = None,
        format: str = "docker",
        locked: Lockfile | None = None,
        lock_output: str | Path | None = None,
        progress: ProgressCallback | None = None,
    ) -> ListPullResult:
        """Pull an image list into ONE archive (each blob stored once) and lock it.

        ``entries`` come from :func:`~dockerdrag.image_list.read_image_list` (or are
        built by hand); ``platform`` is the default of lines naming none. Every line
        is checked before any network I/O. The result's ``lock`` records what each
        line resolved to; ``lock_output`` (e.g. ``default_lock_path(output)``) is where
        it is written, atomically, once the archive is complete.

        With ``locked`` (:func:`~dockerdrag.lockfile.read_lockfile`) exactly the locked
        digests are pulled, without resolving any tag; ``entries`` may then be
        ``None`` (the lock's own list) or must name the same images with the same
        platforms and tags. A tag that moved since is logged as a warning, sent to
        ``progress`` as a :class:`~dockerdrag.events.TagMoved` and listed in
        ``moved_tags``; the locked digest is pulled all the same.
        """
        _check_format(format)
        plan = plan_list(entries, platform, format, locked)
        for item in plan:
            self.credentials.bind(item.reference)
        out_path = Path(output)
        if lock_output is not None:
            check_output_name(Path(lock_output))
            check_output_path(Path(lock_output))
        self._prepare_output(out_path, format)
        listener = _CallProgress(progress)
        self._listeners.append(listener)
        try:
            moves = [move for item in plan if (move := await find_tag_move(self.client, item))]
            for move in moves:
                self._emit_call(move, listener)
            resolved = [
                await self._resolve(
                    item.reference,
                    item.wanted,
                    archive_tags(item.reference, item.entry.tag),
                    item.pin,
                )
                for item in plan
            ]
            results = await self._assemble(resolved, out_path, format, listener)
        finally:
            self._listeners.remove(listener)
        lock = Lockfile(tuple(locked_image(i, r) for i, r in zip(plan, resolved, strict=True)))
        if lock_output is not None:
            write_lockfile(lock_output, lock)
        return ListPullResult(tuple(results), lock, tuple(moves))

    def _prepare_output(self, out_path: Path, output_format: str) -> None:
        """Fail before any network I/O if the archive cannot be written; create the cache."""
        check_output(out_path, output_format)
        self.store.ensure()

    async def _assemble(
        self,
        resolved: Sequence[ResolvedPull],
        out_path: Path,
        format: str,
        listener: _CallProgress,
    ) -> list[PullResult]:
        """Fetch the layers of ``resolved`` and write them into one archive at ``out_path``."""
        skipped = self._skipped_foreign_layers(resolved, format)
        gate = BlobGate(self.store, resolved, skipped)
        plans = docker_plans(resolved, self.archive_options) if format == "docker" else None
        order = write_order(resolved, plans)
        if plans is not None:
            writer = docker_writer(out_path, resolved, gate, plans, self.archive_options)
        else:
            writer = oci_writer(out_path, resolved, gate, format, self.include_attestations)
        sources = _blob_sources(resolved)
        try:
            # The archive is written while layers still download: the writer waits
            # for each blob as it reaches it, and blobs are fetched in that order.
            with BlobsInUse(self.store.root, sources, read_only=self.store.read_only):
                async with anyio.create_task_group() as group:
                    group.start_soon(self._fetch_layers, resolved, listener, order, gate, out_path)
                    await write_repairing(writer, gate, self.fetcher, sources)
        except BaseExceptionGroup as group_error:
            raise leaf_error(group_error) from None
        return [_result(item, out_path, format) for item in resolved]

    def _skipped_foreign_layers(
        self, resolved: Sequence[ResolvedPull], output_format: str
    ) -> frozenset[Digest]:
        """Foreign layers (with ``urls``) not to fetch: all of them unless asked to.

        The docker format needs every layer's bytes, so there they must be asked for.
        """
        foreign = {
            layer.digest
            for item in resolved
            for image in item.images
            for layer in image.manifest.layers
            if layer.is_foreign and layer.urls
        }
        if not foreign or self.include_foreign:
            return frozenset()
        if output_format == "docker":
            include, oci = Remedy(Setting.INCLUDE_FOREIGN), Remedy(Setting.FORMAT, "oci")
            raise UsageError(
                f"the image has {len(foreign)} foreign layer(s) hosted outside the registry; "
                f"pass {include} to fetch them from their URLs (without credentials), "
                f"or use {oci} to keep them as references"
            ).suggesting(include, oci)
        return frozenset(foreign)

    # ------------------------------------------------------------------ resolving

    async def _resolve(
        self,
        ref: Reference,
        wanted: list[Platform] | Literal["all"] | None,
        repo_tags: tuple[str, ...],
        pin: LockedImage | None = None,
    ) -> ResolvedPull:
        """Resolve ``ref`` (exactly the digests of ``pin``, when pinned by a lock file)."""
        if pin is None:
            resolution = await self.client.resolve(ref, wanted, self.include_attestations)
        else:
            resolution = await resolve_locked(self.client, ref, pin)
        index = resolution.index
        platform_images = {entry.digest for entry in index.platforms()} if index else None
        images = tuple(
            [
                await self._with_config(
                    ref,
                    resolution.source,
                    manifest,
                    stored_only=platform_images is not None
                    and manifest.digest not in platform_images,
                )
                for manifest in resolution.manifests
            ]
        )
        if resolution.index is None and isinstance(wanted, list):
            check_image_platform(str(ref), wanted, images[0].config.platform)
        return ResolvedPull(ref, resolution.source, resolution.index, images, repo_tags)

    async def _with_config(
        self,
        ref: Reference,
        source: Reference,
        manifest: ImageManifest,
        *,
        stored_only: bool = False,
    ) -> PlatformImage:
        """The manifest with its config; ``stored_only`` for an index entry that is not a
        platform image (an attestation, an artifact): stored, never loaded by docker."""
        config_raw = await self.fetcher.fetch_bytes(source, manifest.config)
        if stored_only or _is_attestation_manifest(manifest):
            return PlatformImage(manifest, config_raw, _attestation_config(config_raw), None)
        if not manifest.layers:
            raise InvalidManifestError(f"{ref} has no layers; docker cannot load such an image")
        decoded = decode_config(config_raw)
        config = image_config(decoded)
        if len(config.diff_ids) != len(manifest.layers):
            raise InvalidManifestError(
                f"{ref}: the manifest lists {len(manifest.layers)} layers but the config has "
                f"{len(config.diff_ids)} diff_ids"
            )
        return PlatformImage(manifest, config_raw, config, decoded)

    # ------------------------------------------------------------------ fetching

    def _emit_call(self, event: ProgressEvent, listener: _CallProgress) -> None:
        """Deliver one call's own event to the client-wide callback and that call's."""
        if self.progress is not None:
            self.progress(event)
        listener(event)

    async def _fetch_layers(
        self,
        resolved: Sequence[ResolvedPull],
        listener: _CallProgress,
        order: Sequence[Digest],
        gate: BlobGate,
        output: Path,
    ) -> None:
        """Fetch every layer blob (in ``order``), then announce the archive's completion."""
        by_source: dict[Reference, list[Descriptor]] = {}
        for item in resolved:
            for image in item.images:
                layers = tuple((d.digest, d.size) for d in image.manifest.layers)
                started = PullStarted(str(item.reference), image.manifest.digest, layers)
                self._emit_call(started, listener)
                wanted = [d for d in image.manifest.layers if d.digest in gate.paths]
                by_source.setdefault(item.source, []).extend(wanted)
        rank = {digest: position for position, digest in enumerate(order)}
        seen: set[Digest] = set()
        for source, descriptors in by_source.items():
            fresh = [d for d in descriptors if d.digest not in seen]
            seen.update(d.digest for d in fresh)
            fresh.sort(key=lambda d: rank.get(d.digest, len(rank)))
            await fetch_all(self.fetcher, source, fresh, self.concurrency, gate.mark_ready)
        self._emit_call(ArchiveWriting(str(output)), listener)


def _blob_sources(resolved: Sequence[ResolvedPull]) -> BlobSources:
    """Each layer blob of the pull with the repository it is fetched from."""
    return {
        layer.digest: (item.source, layer)
        for item in resolved
        for image in item.images
        for layer in image.manifest.layers
    }


def _is_attestation_manifest(manifest: ImageManifest) -> bool:
    return any(layer.media_type.startswith("application/vnd.in-toto") for layer in manifest.layers)


def _attestation_config(raw: bytes) -> ImageConfig:
    """A config record for an attestation manifest (stored, never loaded by docker)."""
    try:
        return parse_config(raw)
    except DockerDragError:
        return ImageConfig(raw=raw, digest=Digest.of(raw), diff_ids=(), platform=_UNKNOWN)


_UNKNOWN = Platform("unknown", "unknown")


def _result(item: ResolvedPull, output: Path, output_format: str) -> PullResult:
    primary = item.images[0]
    manifest = primary.manifest
    return PullResult(
        output=output,
        reference=str(item.reference),
        manifest_digest=manifest.digest,
        index_digest=item.index.digest if item.index else None,
        config_digest=manifest.config.digest,
        layers=tuple(
            LayerResult(d.digest, diff_id, d.size, d.media_type)
            for d, diff_id in zip(manifest.layers, primary.config.diff_ids, strict=True)
        ),
        platform=primary.config.platform,
        repo_tags=item.repo_tags,
        format=output_format,
        platforms=tuple(
            image.config.platform for image in item.images if image.decoded is not None
        ),
    )


async def pull_image(
    reference: str | Reference,
    *,
    platform: PlatformSpec = None,
    output: str | Path | None = None,
    format: str = "docker",
    tag: str | None = None,
    insecure: Iterable[str] = (),
    ca_cert: str | Path | None = None,
    credentials: CredentialsSpec = None,
    cache_dir: str | Path | None = None,
    concurrency: int = DEFAULT_CONCURRENCY,
    progress: ProgressCallback | None = None,
    registry_mirrors: Sequence[str] = (),
    include_foreign: bool = False,
) -> PullResult:
    """Pull ``reference`` into a ``docker load``-able archive and return what was written.

    A one-call :class:`Puller`. Parameters:
        ``reference``, ``platform``, ``output``, ``format``, ``tag``: as for
            :meth:`Puller.pull` (``output`` defaults to ``library_busybox.tar`` in the
            current directory, or in ``output`` when that is a directory).
        ``insecure``, ``ca_cert``, ``cache_dir``, ``concurrency``, ``progress``,
            ``registry_mirrors``, ``include_foreign``: as for :class:`Puller`.
        ``credentials``: as for :class:`Puller`: one :class:`Credentials` for the
            registry of the image, or a mapping of registry hosts
            (``registry-1.docker.io``, ``host:port``) to credentials.

    Needs an asyncio event loop (``asyncio.run``, or anyio's asyncio backend);
    anything else raises :class:`UnsupportedEventLoopError`. Errors are
    :class:`DockerDragError` subclasses; nothing is left at ``output`` then.
    """
    ref = _as_reference(reference)
    (result,) = await pull_images(
        [ref],
        output=output_path(ref, output, format),
        platform=platform,
        format=format,
        tags=[tag],
        insecure=insecure,
        ca_cert=ca_cert,
        credentials=credentials,
        cache_dir=cache_dir,
        concurrency=concurrency,
        progress=progress,
        registry_mirrors=registry_mirrors,
        include_foreign=include_foreign,
    )
    return result


async def pull_images(
    references: Sequence[str | Reference],
    *,
    output: str | Path,
    platform: PlatformSpec = None,
    format: str = "docker",
    tags: Sequence[str | None] | None = None,
    insecure: Iterable[str] = (),
    ca_cert: str | Path | None = None,
    credentials: CredentialsSpec = None,
    cache_dir: str | Path | None = None,
    concurrency: int = DEFAULT_CONCURRENCY,
    progress: ProgressCallback | None = None,
    registry_mirrors: Sequence[str] = (),
    include_foreign: bool = False,
) -> list[PullResult]:
    """Pull several images into one archive (a bundle ``docker load`` loads at once).

    A one-call :class:`Puller`. Parameters:
        ``references``, ``output``, ``platform``, ``format``, ``tags``: as for
            :meth:`Puller.pull_many`.
        ``insecure``, ``ca_cert``, ``cache_dir``, ``concurrency``, ``progress``,
            ``registry_mirrors``, ``include_foreign``: as for :class:`Puller`.
        ``credentials``: as for :class:`Puller`: one :class:`Credentials` for the
            registry of the images (all on one registry), or a mapping of registry hosts
            (``registry-1.docker.io``, ``host:port``) to credentials.

    Needs an asyncio event loop (``asyncio.run``, or anyio's asyncio backend);
    anything else raises :class:`UnsupportedEventLoopError`. Errors are
    :class:`DockerDragError` subclasses; nothing is left at ``output`` then.
    """
    async with Puller(
        insecure=insecure,
        ca_cert=ca_cert,
        credentials=credentials,
        cache_dir=cache_dir,
        concurrency=concurrency,
        progress=progress,
        registry_mirrors=registry_mirrors,
        include_foreign=include_foreign,
    ) as puller:
        try:
            return await puller.pull_many(
                references, output=output, platform=platform, tags=tags, format=format
            )
        except BaseExceptionGroup as group:
            raise leaf_error(group) from None


__all__ = [
    "DEFAULT_CONCURRENCY",
    "ImageInspection",
    "LayerResult",
    "ListPullResult",
    "PullEvent",
    "PullFinished",
    "PullResult",
    "Puller",
    "pull_image",
    "pull_images",
]
