"""Pull images into an archive: the public entry points.

:func:`pull_image` / :func:`pull_images` are thin functions over :class:`Puller`,
a reusable client whose pulls share one HTTP session, one token cache and one
blob cache. :class:`Puller` owns those and their lifetime, and hands each job to
its own module: a pull's arguments are checked before any I/O (:mod:`pull_plan`),
every reference is resolved first (tag -> digest -> platform manifests -> configs,
:mod:`pull_resolve`), then all distinct layer blobs are fetched under one
concurrency limit while the archive is written in a worker thread
(:mod:`pull_assembly`). Who hears which event is :mod:`call_progress`'s job; the
results are :mod:`pull_results`' values; each parameter's documentation is written
once, in :mod:`parameter_docs`, and put into every docstring here that needs it.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import AsyncIterator, Iterable, Sequence
from pathlib import Path

from .call_progress import ProgressRouter
from .client_credentials import ClientCredentials, CredentialsSpec
from .conventions import default_cache_dir
from .docker_options import DockerArchiveOptions
from .download import DEFAULT_CONCURRENCY, BlobFetcher, TransferOptions
from .errors import leaf_error
from .eventloop import require_asyncio
from .events import EventStream, ProgressCallback
from .image_list import ImageListEntry
from .lockfile import Lockfile
from .manifest import Descriptor
from .outputs import check_file_output, output_path
from .parameter_docs import (
    BUNDLE_OUTPUT,
    CALL_PROGRESS,
    INSPECT_PLATFORM,
    LIST_PLATFORM,
    documented,
)
from .platform import Platform, PlatformSpec
from .pull_assembly import ArchiveAssembler
from .pull_plan import FORMATS as FORMATS
from .pull_plan import archive_tags as archive_tags
from .pull_plan import as_reference, plan_images
from .pull_resolve import ImageResolver, ResolveRequest
from .pull_results import ImageInspection as ImageInspection
from .pull_results import LayerResult as LayerResult
from .pull_results import ListPullResult as ListPullResult
from .pull_results import PullEvent as PullEvent
from .pull_results import PullFinished as PullFinished
from .pull_results import PullResult as PullResult
from .reference import Reference
from .registry import RegistryClient, mirror_host
from .retry import RetryPolicy
from .store import BlobStore
from .transport import Transport, TransportConfig


@documented()
class Puller:
    """A reusable client: several pulls share one HTTP session, token cache and blob cache.

    Use as ``async with Puller(...) as puller: await puller.pull("busybox")``; the
    methods are coroutines of an asyncio event loop (see :mod:`dockerdrag.eventloop`).
    Every option is keyword-only; the library reads no ``DOCKERDRAG_*`` variable.
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
        self._progress = ProgressRouter(progress)
        self.transport.on_retry = self._progress.emit
        self.client = RegistryClient(self.transport, registry_mirrors)
        self.store = BlobStore(Path(cache_dir) if cache_dir is not None else default_cache_dir())
        self.fetcher = BlobFetcher(
            self.client, self.store, self._progress.emit, concurrency=concurrency, options=transfer
        )
        self._resolver = ImageResolver(self.client, self.fetcher, include_attestations)
        self._assembler = ArchiveAssembler(
            self.store,
            self.fetcher,
            archive_options=archive_options or DockerArchiveOptions(),
            include_attestations=include_attestations,
            include_foreign=include_foreign,
        )

    async def __aenter__(self) -> Puller:
        """Open the HTTP session; raises UnsupportedEventLoopError outside asyncio."""
        require_asyncio()
        await self.transport.__aenter__()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        try:
            await self.transport.__aexit__(*exc_info)
        finally:
            self.fetcher.close()
            self.store.close()

    @documented()
    async def platforms(self, reference: str | Reference) -> list[Descriptor]:
        """The platform entries of a multi-platform image (empty for a single image);
        attestation entries are left out."""
        from .pull_inspect import image_platforms  # here: a pull does not inspect

        ref = as_reference(reference)
        self.credentials.bind(ref)
        return await image_platforms(self.client, ref)

    @documented(platform=INSPECT_PLATFORM)
    async def inspect(
        self, reference: str | Reference, *, platform: Platform | str | None = None
    ) -> ImageInspection:
        """Describe an image (manifest, platforms, config, layers) without pulling layers."""
        from .pull_inspect import inspect_image  # here: a pull does not inspect

        ref = as_reference(reference)
        self.credentials.bind(ref)
        wanted = Platform.parse(platform) if isinstance(platform, str) else platform
        self.store.ensure()  # the config is read through the blob cache
        return await inspect_image(self._resolver, ref, wanted)

    @contextlib.asynccontextmanager
    @documented()
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
        the pull's error. Leaving the block early cancels the pull. Pending
        ``downloading`` updates of a layer are merged, so a slow consumer costs no memory.
        """
        from .pull_stream import pull_event_stream  # here: only this API hands events out

        run = functools.partial(
            self.pull, reference, platform=platform, output=output, tag=tag, format=format
        )
        async with pull_event_stream(run) as stream:
            yield stream

    @documented(progress=CALL_PROGRESS)
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

        Raises a :class:`DockerDragError` subclass; nothing is left at ``output``
        then, and the blobs already verified stay in the cache.
        """
        ref = as_reference(reference)
        out = output_path(ref, output, format)
        tags = [tag] if tag is not None else None
        (result,) = await self.pull_many(
            [ref], platform=platform, output=out, tags=tags, format=format, progress=progress
        )
        return result

    @documented(output=BUNDLE_OUTPUT, progress=CALL_PROGRESS)
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
        """Pull several images into ONE archive; each blob is stored once."""
        with self._progress.call(progress) as emit:
            plan = plan_images(references, platform, tags, format, self.credentials)
            out_path = Path(output)
            self._assembler.prepare(out_path, format)
            resolved = await self._resolver.resolve_all(
                [
                    ResolveRequest(ref, plan.wanted, names)
                    for ref, names in zip(plan.references, plan.repo_tags, strict=True)
                ]
            )
            return await self._assembler.assemble(resolved, out_path, format, emit)

    @documented(output=BUNDLE_OUTPUT, platform=LIST_PLATFORM, progress=CALL_PROGRESS)
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

        Every line is checked before any network I/O; the result's ``lock`` records what
        each line resolved to. With ``locked``, a tag that moved since is logged as a
        warning, sent to ``progress`` as a :class:`~dockerdrag.events.TagMoved` and listed
        in ``moved_tags``; the locked digest is pulled all the same.
        """
        # Imported here: only a list pull plans and runs an image list.
        from .list_pull import plan_list
        from .list_pull_run import run_list_pull

        plan = plan_list(entries, platform, format, locked)
        self.credentials.bind(*(item.reference for item in plan))
        if lock_output is not None:
            check_file_output(Path(lock_output))
        out_path = Path(output)
        self._assembler.prepare(out_path, format)
        with self._progress.call(progress) as emit:
            return await run_list_pull(
                plan,
                self._resolver,
                self._assembler,
                output=out_path,
                output_format=format,
                lock_output=lock_output,
                emit=emit,
            )


@documented()
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

    A one-call :class:`Puller`. Needs an asyncio event loop (``asyncio.run``, or anyio's
    asyncio backend); anything else raises :class:`UnsupportedEventLoopError`. Errors are
    :class:`DockerDragError` subclasses; nothing is left at ``output`` then.
    """
    ref = as_reference(reference)
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


@documented(output=BUNDLE_OUTPUT)
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

    A one-call :class:`Puller`. Needs an asyncio event loop (``asyncio.run``, or anyio's
    asyncio backend); anything else raises :class:`UnsupportedEventLoopError`. Errors are
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


__all__ = ["DEFAULT_CONCURRENCY", "Puller", "pull_image", "pull_images"]
