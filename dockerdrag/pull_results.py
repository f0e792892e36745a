"""What pulls and inspections return: the result value types of :mod:`dockerdrag.pull`.

:class:`PullResult` (with its :class:`LayerResult` per layer) for each pulled image,
:class:`ListPullResult` for an image-list pull, :class:`PullFinished` as the last
event of :meth:`~dockerdrag.pull.Puller.pull_events`, and :class:`ImageInspection`
for :meth:`~dockerdrag.pull.Puller.inspect`. Plain frozen dataclasses: they hold
no connection or file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .digest import Digest
from .events import ProgressEvent, TagMoved
from .image_config import ImageConfig
from .lockfile import Lockfile
from .manifest import Descriptor, ImageManifest
from .platform import Platform


@dataclass(frozen=True)
class LayerResult:
    """One layer of a pulled image."""

    digest: Digest
    diff_id: Digest
    size: int
    media_type: str


@dataclass(frozen=True)
class PullResult:
    """What a pull produced for one image (several share ``output`` in a bundle)."""

    output: Path
    reference: str
    manifest_digest: Digest
    index_digest: Digest | None
    config_digest: Digest
    layers: tuple[LayerResult, ...]
    platform: Platform
    repo_tags: tuple[str, ...]
    format: str = "docker"
    platforms: tuple[Platform, ...] = ()

    @property
    def image_id(self) -> str:
        """The image ID Docker shows after loading: the config digest."""
        return str(self.config_digest)


@dataclass(frozen=True)
class PullFinished:
    """The last event of :meth:`Puller.pull_events`: the archive is written."""

    results: tuple[PullResult, ...]

    @property
    def result(self) -> PullResult:
        """The result of the (first) image."""
        return self.results[0]


PullEvent = ProgressEvent | PullFinished


@dataclass(frozen=True)
class ListPullResult:
    """What :meth:`Puller.pull_list` produced: one archive, its lock, moved tags."""

    results: tuple[PullResult, ...]  # one per line of the list, in its order
    lock: Lockfile
    moved_tags: tuple[TagMoved, ...] = ()


@dataclass(frozen=True)
class ImageInspection:
    """What :meth:`Puller.inspect` found, without downloading any layer.

    ``digest``, ``media_type`` and ``raw`` describe the document the reference
    names (an index for a multi-platform image). ``platforms`` lists an index's
    entries. ``manifest`` and ``config`` are those of the chosen platform's image;
    both are ``None`` for a multi-platform image when no platform was chosen.
    """

    reference: str
    digest: Digest
    media_type: str
    raw: bytes = field(repr=False)
    platforms: tuple[Descriptor, ...] = ()
    manifest: ImageManifest | None = None
    config: ImageConfig | None = None

    @property
    def layers(self) -> tuple[LayerResult, ...]:
        """The chosen image's layers with their diff_ids (empty without an image)."""
        if self.manifest is None or self.config is None:
            return ()
        pairs = zip(self.manifest.layers, self.config.diff_ids, strict=False)
        return tuple(LayerResult(d.digest, diff_id, d.size, d.media_type) for d, diff_id in pairs)

    @property
    def size(self) -> int:
        """Bytes a pull downloads: the compressed layers (0 without an image)."""
        return sum(layer.size for layer in self.layers)


__all__ = [
    "ImageInspection",
    "LayerResult",
    "ListPullResult",
    "PullEvent",
    "PullFinished",
    "PullResult",
]
