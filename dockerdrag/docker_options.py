"""The settings of the legacy docker archive writer that vary between daemons.

:class:`DockerArchiveOptions` lives apart from :mod:`dockerdrag.docker_archive` (which
re-exports it) because every :class:`~dockerdrag.pull.Puller` holds one, while only a
pull in the docker format imports the writer.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DockerArchiveOptions"]


@dataclass(frozen=True)
class DockerArchiveOptions:
    """What varies between daemons (format section 5)."""

    epoch_utc_offset_seconds: int = 0
    """The daemon time zone's UTC offset at the Unix epoch."""
    go122_escaping: bool = False
    """Write ``\\b``/``\\f`` as Go >= 1.22 does (no Docker <= 24 did)."""
    header_flavour: str = "20.10"
    """Tar header flavour: ``"20.10"``, ``"23"`` or ``"24"``."""
    now: int | None = None
    """mtime of directories whose ``layer.tar`` is a symlink; None means the current time."""
