"""The ``--format oci-dir`` writer: the OCI layout of :mod:`dockerdrag.oci_archive` as a
directory (``manifest.json`` and ``repositories`` included: harmless there, and the tree
matches the tar's), built in a temp directory beside the target and renamed into place.

Blob files are checked while copied (:mod:`dockerdrag.blob_copy`); files and directories
get the plan's mtimes, and the modes ``open()`` and ``mkdir`` give under the umask.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import tempfile
from collections.abc import Sequence
from pathlib import Path

from .blob_copy import BlobCallback, BlobFile, ChunkCallback, copy_blob_to_file
from .errors import OutputError
from .oci_documents import BLOB_PREFIX, metadata_files
from .oci_layout import LayoutPlan, OciImage, plan_layout
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


def _fill_dir(
    root: Path,
    root_mode_limit: int,
    layout: LayoutPlan,
    on_chunk: ChunkCallback | None,
    before_blob: BlobCallback | None,
) -> None:
    """Write the layout below ``root`` (an empty directory), whose mode gets no bit
    ``root_mode_limit`` lacks."""
    blob_dir = root / BLOB_PREFIX
    blob_dir.mkdir(parents=True)
    for digest in sorted(layout.blobs):
        blob = layout.blobs[digest]
        path = blob_dir / digest.hex
        if blob.data is not None:
            _write_file(path, blob.data, blob.mtime)
            continue
        assert blob.path is not None
        copy_blob_to_file(path, BlobFile(digest, blob.size, blob.path), on_chunk, before_blob)
        os.utime(path, (blob.mtime, blob.mtime))
    for name, data in metadata_files(layout):
        _write_file(root / name, data, 0)
    os.utime(blob_dir, (0, 0))
    os.utime(root / "blobs", (layout.blobs_mtime, layout.blobs_mtime))
    # mkdtemp made the root private while it was written; it gets the mode mkdir gave
    # the directories inside it under the umask, without a bit an empty directory it
    # replaces lacks.
    os.chmod(root, stat.S_IMODE((root / "blobs").stat().st_mode) & root_mode_limit)


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
) -> None:
    """Write ``images`` as an OCI layout directory at ``target`` (``--format oci-dir``).

    The layout is built in a hidden temp directory beside ``target`` and renamed into
    place only when complete; ``target`` must be absent or an empty directory
    (OutputError otherwise). On any error nothing is left behind. Verification and
    errors are as for :func:`dockerdrag.oci_archive.write_oci_archive`.
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
        _fill_dir(temp, replaced_mode, layout, on_chunk, before_blob)
        _move_into_place(temp, target)
    except OSError as exc:
        shutil.rmtree(temp, ignore_errors=True)
        raise OutputError(describe_os_error(exc, f"writing {target}")) from exc
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
