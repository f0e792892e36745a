"""Typed progress events, delivered to a callback as a pull proceeds."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from .digest import Digest


class LayerPhase(StrEnum):
    """Where one blob is in its life, as ``docker pull`` shows it."""

    WAITING = "waiting"
    DOWNLOADING = "downloading"
    VERIFYING = "verifying"
    COMPLETE = "complete"
    EXISTS = "exists"


@dataclass(frozen=True)
class LayerProgress:
    """One blob's progress: ``done`` of ``total`` bytes are verified on disk."""

    digest: Digest
    phase: LayerPhase
    done: int
    total: int


@dataclass(frozen=True)
class PullStarted:
    """The image was resolved and its blobs are about to be fetched."""

    reference: str
    manifest_digest: Digest
    layers: tuple[tuple[Digest, int], ...]


@dataclass(frozen=True)
class ArchiveWriting:
    """All blobs are verified; the archive is being written."""

    output: str


ProgressEvent = LayerProgress | PullStarted | ArchiveWriting
ProgressCallback = Callable[[ProgressEvent], None]
