"""The ``--format oci-dir`` writer: the OCI layout of :mod:`dockerdrag.oci_archive` as a
directory (``manifest.json`` and ``repositories`` included: harmless there, and the tree
matches the tar's), built in a temp directory beside the target and renamed into place.

Blob files are checked while copied or linked (:mod:`dockerdrag.blob_copy`), in the order
they are ready; files and directories get the plan's mtimes, and the modes ``open()``
and ``mkdir`` give under the umask (a blob file is linked only if it has that mode).
Every file and directory of the layout is fsynced before it is renamed into place, and
the rename after it (its parent directory), so a crash after the pull reported success
leaves the whole layout on the disk.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .blob_copy import (
    BlobCallback,
    BlobFile,
    ChunkCallback,
    ReadyCallback,
    copy_blob_to_file,
    link_blob_file,
)
from .digest import Digest
from .errors import OutputError
from .oci_documents import BLOB_PREFIX, metadata_files
from .oci_layout import LayoutPlan, OciImage, PlannedBlob, plan_layout
from .osfiles import fsync_dir, move_dir_into_place
from .outputs import check_layout_dir
from .store import describe_os_error

__all__ = ["write_oci_dir"]


def _write_file(path: Path, data: bytes, mtime: int) -> None:
    """Write and fsync one file, then set its mtime."""
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.utime(path, (mtime, mtime))


@dataclass(frozen=True)
class _BlobFileCopy:
    """How blob files go into the layout: see :func:`write_oci_dir`."""

    on_chunk: ChunkCallback | None
    before_blob: BlobCallback | None
    next_ready: ReadyCallback | None
    link: bool

    def place(self, path: Path, blob: PlannedBlob, link_mode: int) -> None:
        """The blob file at ``path`` with the plan's mtime: linked where
        :func:`link_blob_file` finds it safe, else copied."""
        assert blob.path is not None
        source = BlobFile(blob.digest, blob.size, blob.path)
        copy = (link_mode, blob.mtime, self.on_chunk, self.before_blob)
        if self.link and link_blob_file(path, source, *copy):
            return
        copy_blob_to_file(path, source, self.on_chunk, self.before_blob)
        os.utime(path, (blob.mtime, blob.mtime))


def _fill_dir(root: Path, root_mode_limit: int, layout: LayoutPlan, copy: _BlobFileCopy) -> None:
    """Write the layout below ``root`` (an empty directory), whose mode gets no bit
    ``root_mode_limit`` lacks: the files whose bytes are at hand, then the blob files in
    the order they are ready, each fsynced, then its directories fsynced."""
    blob_dir = root / BLOB_PREFIX
    blob_dir.mkdir(parents=True)
    for name, data in metadata_files(layout):
        _write_file(root / name, data, 0)
    in_files: dict[Digest, PlannedBlob] = {}
    for digest, blob in layout.blobs.items():
        if blob.data is None:
            in_files[digest] = blob
        else:
            _write_file(blob_dir / digest.hex, blob.data, blob.mtime)
    # The bits open() gave a file this process created: a linked file must have them.
    link_mode = stat.S_IMODE((root / "oci-layout").stat().st_mode)
    while in_files:
        next_ready = copy.next_ready
        digest = next_ready(in_files.keys()) if next_ready is not None else min(in_files)
        copy.place(blob_dir / digest.hex, in_files.pop(digest), link_mode)
    os.utime(blob_dir, (0, 0))
    os.utime(root / "blobs", (layout.blobs_mtime, layout.blobs_mtime))
    # mkdtemp made the root private while it was written; it gets the mode mkdir gave
    # the directories inside it under the umask, without a bit an empty directory it
    # replaces lacks.
    os.chmod(root, stat.S_IMODE((root / "blobs").stat().st_mode) & root_mode_limit)
    # Every name in the layout is on the disk before the layout gets its own.
    for directory in (blob_dir, root / "blobs", root):
        fsync_dir(directory)


def _move_into_place(temp: Path, target: Path) -> None:
    """Rename the finished ``temp`` onto ``target`` (absent or an empty directory)."""
    try:
        move_dir_into_place(temp, target)
    except OSError as exc:
        if exc.errno in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR, errno.EISDIR):
            raise OutputError(f"output directory {target} exists and is not empty") from exc
        raise
    fsync_dir(target.parent if str(target.parent) else Path("."))


def write_oci_dir(
    target: Path | str,
    images: Sequence[OciImage],
    *,
    include_attestations: bool = False,
    on_chunk: ChunkCallback | None = None,
    before_blob: BlobCallback | None = None,
    next_ready: ReadyCallback | None = None,
    link_blob_files: bool = False,
) -> None:
    """Write ``images`` as an OCI layout directory at ``target`` (``--format oci-dir``).

    The layout is built in a hidden temp directory beside ``target`` and renamed into
    place only when complete; ``target`` must be absent or an empty directory
    (OutputError otherwise). On any error nothing is left behind. Verification and
    errors are as for :func:`dockerdrag.oci_archive.write_oci_archive`.
    ``next_ready`` picks the next blob file to place among those left (by default, in
    digest order). With ``link_blob_files`` a blob file becomes a hard link to the file
    given for it where that is safe (:func:`dockerdrag.blob_copy.link_blob_file`: this
    user's file, with the mode a new file gets, on the same file system, not linked
    elsewhere with another mtime): the layout then shares that file with where it came
    from (a pull: the blob cache, which never writes into a blob file it committed nor
    changes its mtime).
    """
    target = Path(target)
    layout = plan_layout(images, include_attestations)
    check_layout_dir(target)
    parent = target.parent if str(target.parent) else Path(".")
    try:
        temp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial", dir=parent))
    except OSError as exc:
        raise OutputError(describe_os_error(exc, f"creating a directory in {parent}")) from exc
    try:
        replaced_mode = stat.S_IMODE(target.stat().st_mode) if target.is_dir() else 0o777
        copy = _BlobFileCopy(on_chunk, before_blob, next_ready, link_blob_files)
        _fill_dir(temp, replaced_mode, layout, copy)
        _move_into_place(temp, target)
    except OSError as exc:
        shutil.rmtree(temp, ignore_errors=True)
        raise OutputError(describe_os_error(exc, f"writing {target}")) from exc
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
