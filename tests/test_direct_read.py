"""A big blob written and read past the page cache: every read sees every byte written.

PartialBlob writes a big blob's whole pages with O_DIRECT and the rest through the page
cache; DirectReads (its prefix hash, the decoder processes) reads whole pages past the
cache into a buffer of its own. Mixed, refused or missing, the bytes come out the same.
"""

from __future__ import annotations

import errno
import hashlib
import io
import itertools
import os
import random
from pathlib import Path

import anyio
import pytest

from dockerdrag import Puller, decoder_processes, direct_read, partial_blob
from dockerdrag.arriving_blob import ArrivingBlobReader
from dockerdrag.blob_body import Block
from dockerdrag.digest import Digest
from dockerdrag.direct_io import PAGE
from dockerdrag.direct_read import DirectFile, DirectReads
from dockerdrag.download import TransferOptions
from dockerdrag.osfiles import reopen_direct
from dockerdrag.partial_blob import PartialBlob
from dockerdrag.store import BlobStore
from tests.support.images import push_image, random_layer
from tests.support.registry_server import RegistryServer

SIZE = 3 << 20


def _blob(seed: int) -> tuple[bytes, Digest]:
    data = random.Random(seed).randbytes(SIZE + 1234)
    return data, _digest(data)


def _digest(data: bytes) -> Digest:
    return Digest(hashlib.sha256(data).hexdigest())


def _direct_available(tmp_path: Path) -> bool:
    probe = tmp_path / "probe"
    probe.write_bytes(b"")
    with open(probe, "rb") as opened:
        fd = reopen_direct(opened.fileno(), reading=True)
    if fd is None:
        return False
    os.close(fd)
    return True


def _write_in_blocks(partial: PartialBlob, data: bytes, seed: int) -> None:
    """The blob in aligned blocks of random sizes (a short one now and then, so later
    blocks start mid-page), in a random order of runs, as parallel chunks write it."""
    rng = random.Random(seed)
    cuts = [0]
    while cuts[-1] < len(data):
        step = rng.choice([1 << 18, 1 << 18, 3 * PAGE, PAGE + 17, 1000])
        if cuts[-1] % PAGE and rng.random() < 0.5:  # back to a page boundary
            step = PAGE - cuts[-1] % PAGE
        cuts.append(min(len(data), cuts[-1] + step))
    pieces = list(itertools.pairwise(cuts))
    rng.shuffle(pieces)
    for start, end in pieces:
        block = Block(end - start, aligned=True)
        block.add(data[start:end])
        partial.write(start, block.view(), inline_hash=False)


@pytest.mark.parametrize("seed", range(4))
def test_a_direct_partial_holds_and_hashes_the_blob(
    tmp_path: Path, seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not _direct_available(tmp_path):
        pytest.skip("this file system refuses O_DIRECT")
    calls: list[str] = []
    real_write, real_read = partial_blob.pwrite_past_cache, direct_read._preadv
    assert real_read is not None

    def direct_write(direct_fd: int | None, fd: int, data: memoryview, offset: int) -> bool:
        calls.append("write")
        return real_write(direct_fd, fd, data, offset)

    def direct_read_into(fd: int, buffers: list[memoryview], offset: int) -> int:
        calls.append("read")
        return real_read(fd, buffers, offset)

    monkeypatch.setattr(partial_blob, "pwrite_past_cache", direct_write)
    monkeypatch.setattr(direct_read, "_preadv", direct_read_into)
    data, digest = _blob(seed)
    store = BlobStore(tmp_path / "cache")
    store.ensure()
    partial = PartialBlob(store, digest, len(data), direct=True)
    partial.open()
    try:
        _write_in_blocks(partial, data, seed)
        partial.hash_upto(len(data))
        partial.hasher.verify()
        assert partial.direct  # no write was refused
    finally:
        partial.close()
    assert store.partial_path(digest).read_bytes() == data
    assert calls.count("write") > 4 and calls.count("read") >= SIZE // direct_read.READ_SIZE


def test_direct_reads_see_bytes_still_in_the_page_cache(tmp_path: Path) -> None:
    """Bytes written through the page cache a moment ago (a block's unaligned tail),
    read at once past it, at every kind of offset and size, up to and past the end."""
    if not _direct_available(tmp_path):
        pytest.skip("this file system refuses O_DIRECT")
    path = tmp_path / "blob"
    data = random.Random(7).randbytes(SIZE + 99)
    rng = random.Random(8)
    with open(path, "wb") as out:
        out.write(data)  # through the page cache, not yet on the disk
        out.flush()
        with DirectReads(path) as reads:
            for _ in range(200):
                offset = rng.choice([0, PAGE, 511, rng.randrange(len(data) + 10)])
                size = rng.choice([1, PAGE, 1 << 18, (1 << 20) - PAGE, rng.randrange(1, 9000)])
                with reads.read(offset, size) as got:
                    assert bytes(got) == data[offset : offset + size]


def test_without_o_direct_reads_go_through_the_page_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(direct_read, "reopen_direct", lambda fd, reading=False: None)
    monkeypatch.setattr(partial_blob, "reopen_direct", lambda fd, reading=False: None)
    data, digest = _blob(11)
    store = BlobStore(tmp_path / "cache")
    store.ensure()
    partial = PartialBlob(store, digest, len(data), direct=True)
    partial.open()
    try:
        _write_in_blocks(partial, data, 11)
        partial.hash_upto(len(data))
        partial.hasher.verify()
    finally:
        partial.close()
    with DirectFile(store.partial_path(digest)) as stream:
        assert stream.read(10) == data[:10]
        stream.seek(PAGE + 3)
        assert stream.read(5000) == data[PAGE + 3 : PAGE + 5003]


def test_direct_writes_and_reads_refused_with_einval_fall_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file system that takes O_DIRECT at open but refuses the reads and writes."""
    if not _direct_available(tmp_path):
        pytest.skip("this file system refuses O_DIRECT")
    refused: list[str] = []
    real_pwrite_past_cache = partial_blob.pwrite_past_cache

    def refuse_read(fd: int, buffers: list[memoryview], offset: int) -> int:
        refused.append("read")
        raise OSError(errno.EINVAL, "Invalid argument")

    def refuse_write(direct_fd: int | None, fd: int, data: memoryview, offset: int) -> bool:
        refused.append("write")
        return real_pwrite_past_cache(None, fd, data, offset) and False

    monkeypatch.setattr(direct_read, "_preadv", refuse_read)
    monkeypatch.setattr(partial_blob, "pwrite_past_cache", refuse_write)
    data, digest = _blob(12)
    store = BlobStore(tmp_path / "cache")
    store.ensure()
    partial = PartialBlob(store, digest, len(data), direct=True)
    partial.open()
    try:
        _write_in_blocks(partial, data, 12)
        partial.hash_upto(len(data))
        partial.hasher.verify()
    finally:
        partial.close()
    assert not partial.direct
    assert refused.count("write") == 1 and refused.count("read") == 1  # then never again
    assert store.partial_path(digest).read_bytes() == data


class _Arrived:
    """A blob that has fully arrived: verified at ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def wait_beyond(self, position: int) -> tuple[Path, int, bool]:
        return self.path, -1, True

    def wait_verified(self) -> Path:
        return self.path


def test_an_arriving_blob_reader_reads_through_its_opener(tmp_path: Path) -> None:
    path = tmp_path / "blob"
    data = random.Random(3).randbytes(SIZE)
    path.write_bytes(data)
    opened: list[Path] = []

    def opener(where: Path) -> io.RawIOBase:
        opened.append(where)
        return DirectFile(where)

    with ArrivingBlobReader(_Arrived(path), "blob", opener) as reader:
        assert reader.read(7) == data[:7]
        reader.rewind()
        buffer = bytearray(1 << 20)
        got = bytearray()
        while count := reader.readinto(buffer):
            got += buffer[:count]
    assert bytes(got) == data
    assert opened and all(where == path for where in opened)


@pytest.mark.parametrize(("fmt", "direct"), [("docker", True), ("oci", False), ("oci-dir", False)])
def test_only_a_pull_decoded_by_processes_writes_past_the_page_cache(
    registry: RegistryServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    fmt: str,
    direct: bool,
) -> None:
    """The docker writer's decoder processes read big blobs past the page cache, so the
    download writes them so; the OCI formats copy or link them through it."""
    if not _direct_available(tmp_path):
        pytest.skip("this file system refuses O_DIRECT")
    monkeypatch.setattr(decoder_processes, "PROCESSES_MIN_BYTES", 0)
    written: list[int] = []
    real_write = partial_blob.pwrite_past_cache

    def direct_write(direct_fd: int | None, fd: int, data: memoryview, offset: int) -> bool:
        written.append(len(data))
        return real_write(direct_fd, fd, data, offset)

    monkeypatch.setattr(partial_blob, "pwrite_past_cache", direct_write)
    layers = [random_layer(41, 3_000_000), random_layer(42, 1_500_000)]
    image = push_image(registry, "direct/read", fmt, layers)
    host = registry.url.split("://", 1)[1]
    output = tmp_path / ("out" if fmt == "oci-dir" else "out.tar")
    options = TransferOptions(chunk_threshold=1 << 20, chunk_size=512 << 10, small_blob=0)

    async def pull() -> None:
        async with Puller(
            insecure=[host],
            cache_dir=tmp_path / "cache",
            use_docker_config=False,
            transfer=options,
        ) as puller:
            await puller.pull(f"{host}/{image.repo}:{image.tag}", output=output, format=fmt)

    anyio.run(pull)
    assert (sum(written) > 4_000_000) if direct else not written
