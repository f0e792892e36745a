"""The uncompressed size of each big gzip layer, asked of the registry before its blob arrives.

A gzip blob ends with ISIZE, the uncompressed size of its last member modulo 2**32
(RFC 1952). One ranged GET of a blob's last 4 bytes tells the docker writer where the
layer will sit in the archive long before the blob is complete, so every layer can be
placed, and decompressed as its bytes arrive, from the start of the pull. The answer is
only a claim: the writer checks it against the bytes it gets and, when it is wrong (a
multi-member gzip, a layer over 4 GiB, a blob that is not gzip), writes the archive
sequentially. Nothing is claimed for small layers (their blobs arrive soon anyway), for
foreign ones, when the registry ignores ``Range`` (its full answer is closed unread) or
when the request fails: the writer then waits for the blob, as without claims.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Protocol

import anyio

from .digest import Digest
from .errors import DockerDragError
from .manifest import Descriptor
from .media_types import MEDIA_TYPE_DOCKER_LAYER_GZIP, MEDIA_TYPE_OCI_LAYER_GZIP
from .range_checks import RangeUnusable, accepted_body
from .reference import Reference
from .registry import RegistryClient

__all__ = ["CLAIM_MIN_BLOB", "claim_trailer_sizes", "worth_claiming"]

log = logging.getLogger("dockerdrag")

CLAIM_MIN_BLOB = 8 << 20
"""Blobs smaller than this (bytes) are not asked for their trailer."""

_TRAILER_ISIZE = 4  # the last 4 bytes of a gzip member: its size modulo 2**32, little-endian
_GZIP_LAYERS = frozenset({MEDIA_TYPE_DOCKER_LAYER_GZIP, MEDIA_TYPE_OCI_LAYER_GZIP})


class ClaimListener(Protocol):
    """Hears the claims (``blob_gate.BlobGate``)."""

    def note_claimed_size(self, digest: Digest, size: int) -> None:
        """The blob ``digest`` claims ``size`` uncompressed bytes."""

    def claims_settled(self) -> None:
        """Every claim asked for was heard or given up."""


def worth_claiming(descriptor: Descriptor) -> bool:
    """Whether the layer's trailer is asked for: a big gzip layer the registry serves."""
    return (
        descriptor.media_type in _GZIP_LAYERS
        and descriptor.size >= CLAIM_MIN_BLOB
        and not descriptor.is_foreign
    )


async def claim_trailer_sizes(
    client: RegistryClient,
    layers: Iterable[tuple[Reference, Descriptor]],
    listener: ClaimListener,
) -> None:
    """Ask for the trailer of every layer :func:`worth_claiming`, all at once; tell
    ``listener`` each size claimed, then that the claims are settled. Never raises for a
    failed request (cancellation propagates)."""
    try:
        async with anyio.create_task_group() as group:
            seen: set[Digest] = set()
            for source, descriptor in layers:
                if descriptor.digest not in seen and worth_claiming(descriptor):
                    seen.add(descriptor.digest)
                    group.start_soon(_claim, client, source, descriptor, listener)
    finally:
        listener.claims_settled()


async def _claim(
    client: RegistryClient, source: Reference, descriptor: Descriptor, listener: ClaimListener
) -> None:
    digest, size = descriptor.digest, descriptor.size
    asked = range(size - _TRAILER_ISIZE, size)
    try:
        async with client.open_blob(source, digest, asked.start, asked.stop) as response:
            body = accepted_body(response.status, response.headers, asked, size, digest)
            if body != asked:
                log.debug("blob %s: the registry ignored Range; no size claim", digest.short)
                return
            trailer = await response.read_all(_TRAILER_ISIZE)
    except (DockerDragError, RangeUnusable) as exc:
        log.debug("blob %s: no size claim from its trailer: %s", digest.short, exc)
        return
    if len(trailer) == _TRAILER_ISIZE:
        listener.note_claimed_size(digest, int.from_bytes(trailer, "little"))
