"""Resolved images written into one archive while their layers download.

:class:`ArchiveAssembler` picks the writer for the format (the docker writer with its
plans, or the OCI one), fetches every distinct layer blob in the order the writer reads
them (for the docker format, the order its decoders read them in) under one concurrency
limit, runs the writer at the same time (repairing a corrupt cached blob once), and
returns a :class:`~dockerdrag.pull_results.PullResult` per image.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import anyio

from .assemble import (
    ResolvedPull,
    docker_plans,
    docker_writer,
    import_docker_writer_ahead,
    layers_to_fetch,
    oci_writer,
    write_order,
)
from .blob_gate import BlobGate
from .cache_repair import BlobSources, write_repairing
from .cache_use import BlobsInUse
from .decode_order import decoder_ranks
from .digest import Digest
from .docker_options import DockerArchiveOptions
from .download import BlobFetcher, fetch_all
from .errors import Remedy, Setting, UsageError, leaf_error
from .events import ArchiveWriting, ProgressCallback, PullStarted
from .manifest import Descriptor
from .osfiles import renames_open_files
from .outputs import check_output
from .pull_results import LayerResult, PullResult
from .reference import Reference
from .size_claims import CLAIM_MIN_BLOB, claim_trailer_sizes, worth_claiming
from .store import BlobStore


class ArchiveAssembler(NamedTuple):
    """Writes archives from blobs ``fetcher`` brings into ``store``.

    The fetcher's connection limit bounds the layer downloads; ``archive_options``: the
    docker format's bytes; ``include_attestations``: keep attestation manifests in the OCI
    formats; ``include_foreign``: fetch foreign layers from their URLs.
    """

    store: BlobStore
    fetcher: BlobFetcher
    archive_options: DockerArchiveOptions
    include_attestations: bool
    include_foreign: bool

    def prepare(self, out_path: Path, output_format: str) -> None:
        """Fail before any network I/O if the archive cannot be written; create the cache;
        for the docker format, start importing its writer while the images resolve."""
        check_output(out_path, output_format)
        self.store.ensure()
        if output_format == "docker":
            import_docker_writer_ahead()

    async def assemble(
        self,
        resolved: Sequence[ResolvedPull],
        out_path: Path,
        output_format: str,
        emit: ProgressCallback,
    ) -> list[PullResult]:
        """Fetch the layers of ``resolved`` and write them into one archive at ``out_path``;
        ``emit`` delivers the call's own events (``PullStarted``, ``ArchiveWriting``)."""
        skipped = self._skipped_foreign_layers(resolved, output_format)
        gate = BlobGate(self.store, layers_to_fetch(resolved, skipped))
        plans = docker_plans(resolved, self.archive_options) if output_format == "docker" else None
        order = write_order(resolved, plans)
        # The docker writer may decompress a layer as it arrives, the oci tar copy it: the
        # downloads tell the gate how far each blob has come (one writer at a time listens).
        follow = (
            (plans is not None or output_format == "oci")
            and self.fetcher.on_prefix is None
            and not self.store.read_only
            and renames_open_files(self.store.blob_dir)
        )
        if plans is not None:
            writer = docker_writer(out_path, resolved, gate, plans, self.archive_options, follow)
        else:
            writer = oci_writer(
                out_path, resolved, gate, output_format, self.include_attestations, follow
            )
        sources = _blob_sources(resolved)
        if follow:
            self.fetcher.on_prefix = gate.note_prefix
        # The layout links each blob and fsyncs it: the disk writes it as it is hashed.
        durable = output_format == "oci-dir"
        self.fetcher.write_back_pulls += durable
        try:
            # The archive is written while layers still download: the writer waits
            # for each blob as it reaches it, and blobs are fetched in that order.
            with BlobsInUse(self.store.root, sources, read_only=self.store.read_only):
                async with anyio.create_task_group() as group:
                    if plans is not None:
                        gate.expect_claims()
                        claimed = self._claimable(sources)
                        group.start_soon(claim_trailer_sizes, self.fetcher.client, claimed, gate)
                    ranks = _decoder_ranks(resolved, order) if plans is not None else None
                    group.start_soon(
                        self._fetch_layers,
                        resolved,
                        order,
                        ranks,
                        gate,
                        out_path,
                        emit,
                    )
                    await write_repairing(writer, gate, self.fetcher, sources)
        except BaseExceptionGroup as group_error:
            raise leaf_error(group_error) from None
        finally:
            if follow:
                self.fetcher.on_prefix = None
            self.fetcher.write_back_pulls -= durable
        return [_pull_result(item, out_path, output_format) for item in resolved]

    def _claimable(self, sources: BlobSources) -> list[tuple[Reference, Descriptor]]:
        """The layers whose size the registry may be asked for: not in the cache, and not
        over the size limit (such a blob is refused before any request)."""
        limit = self.fetcher.options.max_blob_size
        return [
            (source, layer)
            for source, layer in sources.values()
            if layer.size <= limit and not self.store.has(layer.digest, layer.size)
        ]

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

    async def _fetch_layers(
        self,
        resolved: Sequence[ResolvedPull],
        order: Sequence[Digest],
        ranks: Mapping[Digest, int] | None,
        gate: BlobGate,
        output: Path,
        emit: ProgressCallback,
    ) -> None:
        """Fetch every layer blob (in ``order``; by ``ranks`` if given, see
        :func:`~dockerdrag.download.fetch_all`), then announce the archive's completion."""
        blobs: list[tuple[Reference, Descriptor]] = []
        for item in resolved:
            for image in item.images:
                layers = tuple((d.digest, d.size) for d in image.manifest.layers)
                emit(PullStarted(str(item.reference), image.manifest.digest, layers))
                blobs += [(item.source, d) for d in image.manifest.layers if d.digest in gate.paths]
        rank = {digest: position for position, digest in enumerate(order)}
        blobs.sort(key=lambda blob: rank.get(blob[1].digest, len(rank)))
        await fetch_all(self.fetcher, blobs, on_ready=gate.mark_ready, ranks=ranks)
        emit(ArchiveWriting(str(output)))


def _decoder_ranks(
    resolved: Sequence[ResolvedPull], order: Sequence[Digest]
) -> dict[Digest, int] | None:
    """The download ranks of the docker format's layers: where each blob's first byte
    falls in the run of the decoder that will read it (:mod:`~dockerdrag.decode_order`).
    None (the write order) unless every layer can be placed in the archive before its
    blob arrives (it claims its size, :mod:`~dockerdrag.size_claims`, or is small): the
    writer would otherwise wait for the layers one by one in the write order."""
    layers = {
        layer.digest: layer
        for item in resolved
        for image in item.images[:1]
        for layer in image.manifest.layers
    }
    if not all(worth_claiming(d) or d.size < CLAIM_MIN_BLOB for d in layers.values()):
        return None
    return decoder_ranks([(digest, layers[digest].size) for digest in order if digest in layers])


def _blob_sources(resolved: Sequence[ResolvedPull]) -> BlobSources:
    """Each layer blob of the pull with the repository it is fetched from."""
    return {
        layer.digest: (item.source, layer)
        for item in resolved
        for image in item.images
        for layer in image.manifest.layers
    }


def _pull_result(item: ResolvedPull, output: Path, output_format: str) -> PullResult:
    """What the pull wrote for ``item``: its primary image, and every platform it holds."""
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


__all__ = ["ArchiveAssembler"]
