"""The parallel docker archive writer: the sequential writer's bytes, or an honest False.

Every golden fixture is written through it; synthetic layers cover sizes across
several blocks, blobs whose announced size is wrong or absent, a diff_id mismatch,
and file systems that refuse O_DIRECT.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import random
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import pytest
import zstandard

from dockerdrag.digest import Digest
from dockerdrag.direct_io import DIRECT_BLOCK
from dockerdrag.direct_regions import DirectOutput, DirectRegionFile
from dockerdrag.docker_archive import (
    ArchiveImage,
    ArchiveLayer,
    DockerArchiveOptions,
    write_docker_archive,
)
from dockerdrag.docker_parallel import write_docker_archive_in_parallel
from dockerdrag.errors import DiffIDMismatchError
from dockerdrag.layers import announced_size, open_decompressed
from tests.test_direct_io import refuse_direct_writes
from tests.test_docker_archive import (
    FIXTURES,
    IMAGE_FIXTURES,
    assert_same_bytes,
    fixture_image,
    symlink_mtime,
)

CONFIG = (
    '{"architecture":"amd64","config":{},"created":"2024-01-02T03:04:05Z","os":"linux",'
    '"rootfs":{"type":"layers","diff_ids":[%s]}}'
)


def write_both_ways(
    path: Path, images: Sequence[ArchiveImage], options: DockerArchiveOptions
) -> bool:
    """As the pull does: in parallel if it can, else sequentially; whether it could."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with DirectOutput(fd) as out:
            parallel = write_docker_archive_in_parallel(out.regions(), images, options)
            if not parallel:
                assert os.fstat(fd).st_size == 0  # nothing kept
                write_docker_archive(out.sequential(), images, options)
            out.finish()
    finally:
        os.close(fd)
    return parallel


def sequential_bytes(images: Sequence[ArchiveImage], options: DockerArchiveOptions) -> bytes:
    out = io.BytesIO()
    write_docker_archive(out, images, options)
    return out.getvalue()


@pytest.mark.parametrize("name", IMAGE_FIXTURES)
def test_every_fixture_is_reproduced_in_parallel(tmp_path: Path, name: str) -> None:
    expected = FIXTURES / name / "docker-save.tar"
    now = symlink_mtime(expected) if name == "duplayer" else None
    image = fixture_image(name, announce=True)
    assert write_both_ways(tmp_path / "x.tar", [image], DockerArchiveOptions(now=now))
    assert_same_bytes((tmp_path / "x.tar").read_bytes(), expected.read_bytes())


def test_several_images_with_shared_layers(tmp_path: Path) -> None:
    expected = FIXTURES / "_multi-image" / "save-multi-single-shared.run1.tar"
    names = ["multi", "single", "shared"]
    images = [fixture_image(name, announce=True) for name in names]
    options = DockerArchiveOptions(now=symlink_mtime(expected))
    write_both_ways(tmp_path / "x.tar", images, options)
    assert (tmp_path / "x.tar").read_bytes() == sequential_bytes(images, options)


# --- synthetic layers ---------------------------------------------------------------


def gzip_members(data: bytes, members: int) -> bytes:
    step = -(-len(data) // members) or 1
    return b"".join(gzip.compress(data[i : i + step], 1) for i in range(0, len(data), step))


def synthetic_image(tmp_path: Path, layers: list[tuple[int, str]], seed: int = 1) -> ArchiveImage:
    """Layers of ``size`` bytes (half random, half zeros) stored as ``kind`` blobs."""
    rng = random.Random(seed)
    built = []
    for index, (size, kind) in enumerate(layers):
        data = rng.randbytes(size // 2) + bytes(size - size // 2)
        if kind == "gzip":
            blob = gzip.compress(data, 1)
        elif kind == "gzip-3-members":
            blob = gzip_members(data, 3)
        elif kind == "zstd":
            blob = zstandard.ZstdCompressor().compress(data)
        else:
            blob = data
        path = tmp_path / f"layer{index}"
        path.write_bytes(blob)
        built.append(
            ArchiveLayer(
                Digest(hashlib.sha256(data).hexdigest()),
                lambda p=path: open_decompressed(p),
                lambda p=path: announced_size(p),
            )
        )
    diff_ids = ",".join(f'"sha256:{layer.diff_id.hex}"' for layer in built)
    return ArchiveImage.of((CONFIG % diff_ids).encode(), built, ["example.com/x:y"])


SIZES = [0, 1, 511, 512, 4095, 4097, DIRECT_BLOCK - 700, DIRECT_BLOCK, 3 * DIRECT_BLOCK + 4097]


@pytest.mark.parametrize("kind", ["gzip", "none"])
def test_layers_of_every_awkward_size_land_exactly(tmp_path: Path, kind: str) -> None:
    image = synthetic_image(tmp_path, [(size, kind) for size in SIZES])
    options = DockerArchiveOptions(now=0)
    assert write_both_ways(tmp_path / "x.tar", [image], options)
    assert_same_bytes((tmp_path / "x.tar").read_bytes(), sequential_bytes([image], options))


@pytest.mark.parametrize("kind", ["gzip-3-members", "zstd"])
def test_a_layer_announcing_a_wrong_size_or_none_is_written_sequentially(
    tmp_path: Path, kind: str
) -> None:
    # The odd layer sits between ordinary ones: those may already be written in parallel.
    layers = [(700_000, "gzip"), (900_000, kind), (300_000, "gzip")]
    image = synthetic_image(tmp_path, layers, seed=2)
    options = DockerArchiveOptions(now=0)
    assert not write_both_ways(tmp_path / "x.tar", [image], options)
    assert_same_bytes((tmp_path / "x.tar").read_bytes(), sequential_bytes([image], options))


def test_a_diff_id_mismatch_raises(tmp_path: Path) -> None:
    image = synthetic_image(tmp_path, [(100_000, "gzip"), (200_000, "gzip")])
    wrong = ArchiveLayer(Digest("0" * 64), image.layers[1].open, image.layers[1].announced_size)
    diff_ids = f'"sha256:{image.layers[0].diff_id.hex}","sha256:{"0" * 64}"'
    bad = ArchiveImage.of((CONFIG % diff_ids).encode(), [image.layers[0], wrong], ["x:y"])
    fd = os.open(tmp_path / "x.tar", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        with DirectRegionFile(fd) as out, pytest.raises(DiffIDMismatchError, match="layer 1"):
            write_docker_archive_in_parallel(out, [bad], DockerArchiveOptions(now=0))
    finally:
        os.close(fd)


def test_pages_refused_by_o_direct_are_written_buffered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    direct_fds = refuse_direct_writes(monkeypatch)
    image = synthetic_image(tmp_path, [(2 * DIRECT_BLOCK + 5, "gzip"), (DIRECT_BLOCK, "none")])
    options = DockerArchiveOptions(now=0)
    assert write_both_ways(tmp_path / "x.tar", [image], options)
    assert direct_fds  # O_DIRECT was offered, and refused at the first write
    assert_same_bytes((tmp_path / "x.tar").read_bytes(), sequential_bytes([image], options))


def test_a_failing_decoder_interrupts_the_wait_for_the_next_blob(tmp_path: Path) -> None:
    image = synthetic_image(tmp_path, [(300_000, "gzip"), (200_000, "gzip")])
    first, second = image.layers
    interrupt = threading.Event()

    def blob_that_never_comes() -> int | None:
        # Like BlobGate.wait: ends only when told to stop (here: by the failing decoder).
        if not interrupt.wait(30):
            raise AssertionError("the wait for the second blob was not interrupted")
        raise RuntimeError("stopped waiting")

    diff_ids = f'"sha256:{"0" * 64}","sha256:{second.diff_id.hex}"'
    wrong_first = ArchiveLayer(Digest("0" * 64), first.open, first.announced_size)
    waiting_second = ArchiveLayer(second.diff_id, second.open, blob_that_never_comes)
    bad = ArchiveImage.of((CONFIG % diff_ids).encode(), [wrong_first, waiting_second], ["x:y"])
    fd = os.open(tmp_path / "x.tar", os.O_RDWR | os.O_CREAT, 0o600)
    started = time.monotonic()
    try:
        with DirectRegionFile(fd) as out, pytest.raises(DiffIDMismatchError, match="layer 0"):
            write_docker_archive_in_parallel(out, [bad], DockerArchiveOptions(now=0), interrupt)
    finally:
        os.close(fd)
    assert interrupt.is_set()
    assert time.monotonic() - started < 10
