"""Where a pull writes: the default output name, a directory given as output, the checks.

Every check here runs before any network I/O, so a mistyped path costs nothing.
An archive (``docker``, ``oci``) goes to a file; when the path given is an existing
directory, into it under the default name, as ``cp`` does. An ``oci-dir`` layout is
itself a directory, so its path is taken as given: it must not exist or be empty.
"""

from __future__ import annotations

import os
from pathlib import Path

from .conventions import check_output_name
from .errors import OutputError
from .reference import Reference
from .store import check_output_path

LAYOUT_DIR_FORMAT = "oci-dir"


def default_output_name(reference: Reference, output_format: str) -> str:
    """``library_busybox.tar`` (as the original docker-drag), ``library_busybox`` for oci-dir."""
    name = reference.default_output_name()
    return name.removesuffix(".tar") if output_format == LAYOUT_DIR_FORMAT else name


def output_path(reference: Reference, output: str | Path | None, output_format: str) -> Path:
    """Where one image's pull writes: ``output``, or the default name in the current
    directory, or in ``output`` when that is an existing directory (archives only)."""
    name = default_output_name(reference, output_format)
    if output is None:
        return Path(name)
    path = Path(output)
    if output_format != LAYOUT_DIR_FORMAT and path.is_dir():
        return path / name
    return path


def check_layout_dir(target: Path) -> None:
    """Refuse a layout directory target that exists as anything but an empty directory."""
    parent = target.parent if str(target.parent) else Path(".")
    if not parent.is_dir():
        raise OutputError(f"output directory {parent} does not exist")
    if target.is_symlink() or (target.exists() and not target.is_dir()):
        raise OutputError(f"output path {target} exists and is not a directory")
    if target.is_dir() and any(target.iterdir()):
        raise OutputError(f"output directory {target} exists and is not empty")
    if not os.access(parent, os.W_OK):
        raise OutputError(f"output directory {parent} is not writable")


def check_file_output(path: Path) -> None:
    """Fail, before any download, if a file (an archive, a lock file) cannot be written
    at ``path``."""
    check_output_name(path)
    check_output_path(path)


def check_output(path: Path, output_format: str) -> None:
    """Fail, before any download, if a pull in ``output_format`` cannot write ``path``."""
    if output_format == LAYOUT_DIR_FORMAT:
        check_output_name(path)
        check_layout_dir(path)
    else:
        check_file_output(path)


__all__ = [
    "check_file_output",
    "check_layout_dir",
    "check_output",
    "default_output_name",
    "output_path",
]
