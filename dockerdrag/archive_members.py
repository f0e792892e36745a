"""An image archive's files, found without unpacking it: a tar's member table or a directory.

:func:`open_members` takes a tar file (``docker save``, ``--format docker``/``oci``) or a
directory (``--format oci-dir``, any OCI image layout) and tells, for each file name, where
its bytes lie: a tar member's data is a region of the tar file, so a blob can be hashed or
sent straight from it. Symbolic and hard links inside a tar are followed (the legacy docker
format stores a repeated layer as a symlink); a name never reaches outside the archive.
"""

from __future__ import annotations

import os
import posixpath
import stat
import tarfile
from dataclasses import dataclass
from pathlib import Path

from .errors import InvalidManifestError, UsageError
from .store import describe_os_error

__all__ = ["ArchiveMembers", "Member", "open_members"]

_MAX_LINK_HOPS = 16


@dataclass(frozen=True)
class Member:
    """``size`` bytes at ``offset`` of the file ``path``: one file of an archive."""

    name: str
    path: Path
    offset: int
    size: int


def _normalise(name: str) -> str | None:
    """An archive-relative name (``./a//b`` -> ``a/b``), or None if it leaves the archive."""
    cleaned = posixpath.normpath("/" + name.replace("\\", "/")).lstrip("/")
    if not cleaned or cleaned == "." or cleaned.startswith(".."):
        return None
    if ".." in posixpath.normpath(name).split("/"):
        return None
    return cleaned


class ArchiveMembers:
    """The files of one archive, by name (see :func:`open_members`)."""

    def __init__(self, source: Path, table: dict[str, Member] | None) -> None:
        self.source = source
        self._table = table  # None: a directory, looked up on the file system

    @property
    def is_directory(self) -> bool:
        """Whether the archive is a directory (an OCI layout) rather than a tar."""
        return self._table is None

    def get(self, name: str) -> Member | None:
        """The file ``name`` (relative, ``/``-separated), or None if the archive lacks it."""
        cleaned = _normalise(name)
        if cleaned is None:
            return None
        if self._table is not None:
            return self._table.get(cleaned)
        path = self.source.joinpath(*cleaned.split("/"))
        try:
            info = path.stat()
            inside = path.resolve().is_relative_to(self.source.resolve())
        except OSError:
            return None
        if not stat.S_ISREG(info.st_mode) or not inside:
            return None
        return Member(cleaned, path, 0, info.st_size)

    def require(self, name: str, what: str) -> Member:
        """The file ``name``; InvalidManifestError naming ``what`` if it is missing."""
        member = self.get(name)
        if member is None:
            raise InvalidManifestError(f"{self.source}: {what} ({name[:200]!r}) is missing")
        return member

    def read(self, name: str, what: str, limit: int) -> bytes:
        """The whole file ``name`` (at most ``limit`` bytes, else InvalidManifestError)."""
        member = self.require(name, what)
        if member.size > limit:
            raise InvalidManifestError(
                f"{self.source}: {what} is {member.size} bytes, more than the {limit} allowed"
            )
        try:
            with member.path.open("rb") as handle:
                handle.seek(member.offset)
                data = handle.read(member.size)
        except OSError as exc:
            raise UsageError(describe_os_error(exc, f"cannot read {self.source}")) from exc
        if len(data) != member.size:
            raise InvalidManifestError(f"{self.source}: {what} is cut short")
        return data


def _resolve_links(
    files: dict[str, Member], links: dict[str, tuple[str, bool]]
) -> dict[str, Member]:
    """Each link's name mapped to the file it points to (dangling ones are left out)."""
    for name in links:
        current, hops = name, 0
        while current in links and hops < _MAX_LINK_HOPS:
            target, symbolic = links[current]
            base = posixpath.dirname(current) if symbolic else ""
            joined = _normalise(posixpath.join(base, target))
            if joined is None:
                break
            current, hops = joined, hops + 1
        found = files.get(current)
        if found is not None:
            files.setdefault(name, Member(name, found.path, found.offset, found.size))
    return files


def _tar_members(path: Path) -> dict[str, Member]:
    files: dict[str, Member] = {}
    links: dict[str, tuple[str, bool]] = {}
    try:
        with tarfile.open(path, "r:") as archive:
            for info in archive:
                name = _normalise(info.name)
                if name is None:
                    continue
                if info.isreg():
                    files[name] = Member(name, path, info.offset_data, info.size)
                elif info.issym() or info.islnk():
                    links[name] = (info.linkname, info.issym())
    except tarfile.TarError as exc:
        raise InvalidManifestError(f"{path} is not a readable tar archive: {exc}") from exc
    except OSError as exc:
        raise UsageError(describe_os_error(exc, f"cannot read {path}")) from exc
    return _resolve_links(files, links)


def open_members(path: str | os.PathLike[str]) -> ArchiveMembers:
    """The files of the tar archive or directory at ``path`` (UsageError if neither)."""
    source = Path(path)
    if source.is_dir():
        return ArchiveMembers(source, None)
    if not source.is_file():
        raise UsageError(f"{source}: no such archive file or directory")
    return ArchiveMembers(source, _tar_members(source))
