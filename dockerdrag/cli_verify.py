"""``dockerdrag verify ARCHIVE``: check a carried archive offline (:mod:`dockerdrag.verify`)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from .cli_parser import (
    Subcommand,
    SubParsers,
    add_logging_options,
    add_progress_option,
    add_quiet_or_json_options,
    stderr_is_terminal,
)
from .config import Settings
from .human_units import format_amount, format_bytes
from .layers import Compression, sniff_compression
from .media_types import INDEX_MEDIA_TYPES
from .safe_text import escape

if TYPE_CHECKING:
    from .verify import VerifiedArchive

__all__ = ["VERIFY", "describe_archive"]

_CLEAR_LINE = "\x1b[2K"
_LAYOUTS = {
    "docker": "docker archive",
    "docker+oci": "docker archive with an OCI layout",
    "oci": "OCI layout",
}


def _declare_verify(subparsers: SubParsers) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "verify",
        help="check an archive's digests, sizes, diff_ids and references, offline",
        description="Verify ARCHIVE without a network and without unpacking it: every "
        "blob's sha256 and size, every layer's diff_id, every reference between "
        "manifest.json, repositories, index.json, manifests and configs. Reads docker "
        "save archives (Docker 20.10+, 25+), every format dockerdrag writes and OCI "
        "layouts (tar or directory). Exit 0, or 6 naming the first broken member.",
    )
    parser.add_argument("archive", metavar="ARCHIVE", help="tar file or OCI layout directory")
    parser.add_argument(
        "--complete",
        action="store_true",
        help="also refuse a sparse layout: an index whose listed manifests are not all "
        "stored (as a pull of some platforms of a multi-platform image writes)",
    )
    add_quiet_or_json_options(parser, "print nothing when it is fine")
    add_progress_option(
        parser,
        "auto: a line redrawn on stderr while reading when it is a terminal, else one "
        "line as it starts (default); tty: always the redrawn line; plain: always one line",
    )
    add_logging_options(parser)
    return parser


def _tar_size(archive: Path) -> int | None:
    """The size of an uncompressed tar file; None for a directory or a compressed tar
    (whose size does not compare with the bytes read out of it)."""
    if not archive.is_file():
        return None
    with open(archive, "rb") as handle:
        if sniff_compression(handle.read(6)) is not Compression.NONE:
            return None
    return archive.stat().st_size


class _Meter:
    """How far the reading got, on stderr: a redrawn line, or one line at the start."""

    def __init__(self, archive: Path, redraw: bool) -> None:
        self._label = escape(str(archive))
        self._redraw = redraw
        self._total = _tar_size(archive)
        self._drawn = False

    def start(self) -> None:
        if not self._redraw:
            size = f" ({format_bytes(self._total)})" if self._total is not None else ""
            print(f"Verifying {self._label}{size}", file=sys.stderr)

    def __call__(self, read: int) -> None:
        if not self._redraw:
            return
        # The archive's size counts tar headers and padding too: never show more read.
        done = read if self._total is None else min(read, self._total)
        amount = format_bytes(done) if self._total is None else format_amount(done, self._total)
        sys.stderr.write(f"\r{_CLEAR_LINE}Verifying {self._label}: {amount}")
        sys.stderr.flush()
        self._drawn = True

    def finish(self) -> None:
        if self._drawn:
            sys.stderr.write(f"\r{_CLEAR_LINE}")
            sys.stderr.flush()


def _index_lines(archive: VerifiedArchive) -> list[str]:
    """One line per ``index.json`` entry: its name, what it is, its digest."""
    from .oci_layout import ANNOTATION_IMAGE_NAME, ANNOTATION_REF_NAME  # only verify loads it

    if archive.index is None:
        return []
    lines = []
    for entry in archive.index.manifests:
        annotations = entry.annotations
        name = (
            annotations.get(ANNOTATION_IMAGE_NAME)
            or annotations.get(ANNOTATION_REF_NAME)
            or "(unnamed)"
        )
        kind = "index" if entry.media_type in INDEX_MEDIA_TYPES else "manifest"
        lines.append(f"  {escape(name)}  {kind}  {entry.digest}")
    return lines


def describe_archive(archive: VerifiedArchive) -> list[str]:
    """The human-readable lines ``dockerdrag verify`` prints (names from the archive
    escaped: they must not drive the terminal)."""
    if archive.images or archive.index is None:
        what = f"{len(archive.images)} image(s)"
    else:
        what = f"{len(archive.index.manifests)} index.json entr(y/ies)"
    lines = [
        f"{archive.path}: OK ({_LAYOUTS[archive.layout]}; {what}, "
        f"{archive.files} files, {archive.total_size} bytes verified)"
    ]
    for image in archive.images:
        names = ", ".join(escape(tag) for tag in image.repo_tags) or "(untagged)"
        lines.append(
            f"  {names}  {escape(str(image.platform))}  {image.config.digest}  "
            f"{len(image.layers)} layer(s)"
        )
    if not archive.images:
        lines += _index_lines(archive)
    if archive.missing:
        lines.append(
            f"  sparse: {len(archive.missing)} manifest(s) listed by a stored index are not "
            "stored (platforms or attestations that were not pulled)"
        )
    return lines


def _meter(args: argparse.Namespace) -> _Meter | None:
    if args.json or args.quiet:
        return None
    redraw = args.progress == "tty" or (args.progress == "auto" and stderr_is_terminal())
    return _Meter(Path(args.archive), redraw)


async def _run_verify(args: argparse.Namespace, _settings: Settings) -> int:
    """Run ``dockerdrag verify``; errors are raised (IntegrityError: exit 6)."""
    # Imported when the command runs, so that other commands do not load it at start-up.
    from .verify import summary_json, verify_archive

    meter = _meter(args)
    if meter is not None:
        meter.start()
    try:
        archive = await verify_archive(args.archive, require_complete=args.complete, progress=meter)
    finally:
        if meter is not None:
            meter.finish()
    if args.json:
        print(json.dumps(summary_json(archive)))
    elif not args.quiet:
        sys.stdout.write("\n".join(describe_archive(archive)) + "\n")
    return 0


VERIFY = Subcommand("verify", _declare_verify, _run_verify)
