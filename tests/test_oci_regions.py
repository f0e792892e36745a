"""The ``--format oci`` tar written in regions: each blob file copied into its region as soon
as it is ready, in any order, gives the bytes of the front-to-back writer."""

from __future__ import annotations

import os
import threading
from collections.abc import Collection
from pathlib import Path

import pytest

from dockerdrag.digest import Digest
from dockerdrag.errors import DigestMismatchError
from dockerdrag.oci_archive import (
    BlobCallback,
    OciImage,
    ReadyCallback,
    write_oci_archive,
    write_oci_archive_in_regions,
)
from dockerdrag.store import atomic_output
from tests.support import images as im
from tests.test_oci_archive import single

# Sizes that put members at offsets of every kind: a blob of several direct blocks,
# blobs that end inside a page, one under a page.
LAYER_FILES = [
    {"big.bin": os.urandom((5 << 20) + 4321)},
    {"small.txt": b"x" * 100},
    {"mid.bin": os.urandom(70_001)},
]


def three_layer_image(cache: Path) -> OciImage:
    layers = [im.layer(files, "none") for files in LAYER_FILES]
    return single(cache, im.build_image(layers, media_types="oci"), "three:1")


def in_reverse(order: list[Digest]) -> ReadyCallback:
    """A ``next_ready`` that hands out the largest digest left (the tar's last) first."""

    def next_ready(left: Collection[Digest]) -> Digest:
        digest = max(left)
        order.append(digest)
        return digest

    return next_ready


def verified(digest: Digest) -> bool:
    return True


def not_verified(digest: Digest) -> None:
    return None


@pytest.mark.parametrize("before_blob", [verified, not_verified])
@pytest.mark.parametrize(("copiers", "writers"), [(1, 4), (3, 0)])
def test_blobs_copied_in_any_order_give_the_front_to_back_bytes(
    tmp_path: Path, before_blob: BlobCallback, copiers: int, writers: int
) -> None:
    image = three_layer_image(tmp_path / "cache")
    with open(tmp_path / "sequential.tar", "wb") as out:
        write_oci_archive(out, [image])
    order: list[Digest] = []
    with atomic_output(tmp_path / "regions.tar") as handle:
        write_oci_archive_in_regions(
            handle.regions(writers),
            [image],
            before_blob=before_blob,
            next_ready=in_reverse(order),
            copiers=copiers,
        )
    assert order == sorted(order, reverse=True) and len(order) == 3
    regions = (tmp_path / "regions.tar").read_bytes()
    assert regions == (tmp_path / "sequential.tar").read_bytes()


def test_blobs_are_copied_side_by_side(tmp_path: Path) -> None:
    """With two copiers, a blob whose copy waits (for its download, say) does not hold up
    the next one: the second copier starts it meanwhile (with one, the first copy waits in vain)."""
    image = three_layer_image(tmp_path / "cache")
    first = threading.Event()
    second_started = threading.Event()
    waited: list[bool] = []

    def before_blob(digest: Digest) -> bool:
        if not first.is_set():
            first.set()
            waited.append(second_started.wait(timeout=60))  # a hang guard, not a timing
        else:
            second_started.set()
        return True

    with atomic_output(tmp_path / "regions.tar") as handle:
        write_oci_archive_in_regions(
            handle.regions(writers=0), [image], before_blob=before_blob, copiers=2
        )
    assert waited == [True]
    with open(tmp_path / "sequential.tar", "wb") as out:
        write_oci_archive(out, [image])
    assert (tmp_path / "regions.tar").read_bytes() == (tmp_path / "sequential.tar").read_bytes()


@pytest.mark.parametrize("copiers", [1, 3])
def test_a_rotted_blob_file_leaves_no_archive(tmp_path: Path, copiers: int) -> None:
    image = three_layer_image(tmp_path / "cache")
    rotted = max(image.manifests[0].blob_paths.values(), key=lambda path: path.stat().st_size)
    data = bytearray(rotted.read_bytes())
    data[len(data) // 2] ^= 1
    rotted.write_bytes(bytes(data))
    output = tmp_path / "out.tar"
    with (
        pytest.raises(DigestMismatchError, match="is corrupt"),
        atomic_output(output) as handle,
    ):
        write_oci_archive_in_regions(
            handle.regions(), [image], before_blob=not_verified, copiers=copiers
        )
    assert sorted(path.name for path in tmp_path.iterdir()) == ["cache"]
