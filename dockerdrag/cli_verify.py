"""``dockerdrag verify ARCHIVE``: check a carried archive offline (:mod:`dockerdrag.verify`)."""

from __future__ import annotations

import argparse
import json
import sys

from .cli_parser import Subcommand, SubParsers, add_json_option, add_logging_options
from .config import Settings
from .manifest import INDEX_MEDIA_TYPES
from .oci_archive import ANNOTATION_IMAGE_NAME, ANNOTATION_REF_NAME
from .safe_text import escape
from .verify import VerifiedArchive, summary_json, verify_archive

__all__ = ["VERIFY", "describe_archive"]

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
    shown = parser.add_mutually_exclusive_group()
    shown.add_argument("-q", "--quiet", action="store_true", help="print nothing when it is fine")
    add_json_option(shown)
    add_logging_options(parser)
    return parser


def _index_lines(archive: VerifiedArchive) -> list[str]:
    """One line per ``index.json`` entry: its name, what it is, its digest."""
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


async def _run_verify(args: argparse.Namespace, _settings: Settings) -> int:
    """Run ``dockerdrag verify``; errors are raised (IntegrityError: exit 6)."""
    archive = await verify_archive(args.archive, require_complete=args.complete)
    if args.json:
        print(json.dumps(summary_json(archive)))
    elif not args.quiet:
        sys.stdout.write("\n".join(describe_archive(archive)) + "\n")
    return 0


VERIFY = Subcommand("verify", _declare_verify, _run_verify)
