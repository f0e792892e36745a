"""The ``--format oci`` tar copies a blob into its region while the blob downloads (when no
other blob is ready), and a download that starts over under the copy still gives the
right archive: the region is copied again from the verified blob.

Every pull goes through a :class:`FaultProxy` in front of the real ``docker-registry``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from dockerdrag import blob_follow, pull_assembly
from dockerdrag.assemble import _ArrivingReader
from dockerdrag.blob_gate import BlobGate
from dockerdrag.digest import Digest
from dockerdrag.download import TransferOptions
from dockerdrag.pull_results import PullResult
from dockerdrag.store import BlobStore
from tests.support.fault_proxy import FaultProxy, flip_byte, throttle
from tests.support.images import (
    PushedImage,
    push_image,
    random_layer,
    text_layer,
)
from tests.support.registry_server import RegistryServer
from tests.test_transfer import blob_re
from tests.test_transfer import pull as pull_through

pytestmark = pytest.mark.anyio

CHUNKED = TransferOptions(chunk_threshold=1 << 20, chunk_size=256 << 10, small_blob=0)
SLOW = 2_000_000  # bytes a second per request: the big blob arrives over about a second

_pushed: dict[str, PushedImage] = {}


@pytest.fixture
def image(registry: RegistryServer) -> PushedImage:
    if registry.url not in _pushed:
        layers = [
            text_layer("small.txt", "a small layer"),
            random_layer(21, 2_500_000),
            random_layer(22, 1_000_000),
        ]
        _pushed[registry.url] = push_image(registry, "follow/oci", "v1", layers)
    return _pushed[registry.url]


@pytest.fixture
def early_reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The byte counts read from blobs not verified yet."""
    counts: list[int] = []
    real = blob_follow.GrowingBlobReader.readinto

    def readinto(self: blob_follow.GrowingBlobReader, buffer: Any) -> int:
        verified = self._verified
        count = real(self, buffer)
        if not verified and not self._verified:
            counts.append(count)
        return count

    monkeypatch.setattr(blob_follow.GrowingBlobReader, "readinto", readinto)
    return counts


async def pull_oci(proxy: FaultProxy, image: PushedImage, cache: Path, output: Path) -> PullResult:
    return await pull_through(proxy, image, cache, output, transfer=CHUNKED, output_format="oci")


async def without_following(
    proxy: FaultProxy, image: PushedImage, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> bytes:
    """The tar of a pull that copies every blob once it is verified."""
    with monkeypatch.context() as patch:
        patch.setattr(pull_assembly, "renames_open_files", lambda _directory: False)
        late = await pull_oci(proxy, image, tmp_path / "late-cache", tmp_path / "late.tar")
    return late.output.read_bytes()


async def test_blobs_copied_as_they_arrive_give_the_same_tar(
    proxy: FaultProxy,
    image: PushedImage,
    tmp_path: Path,
    early_reads: list[int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    proxy.add(throttle(SLOW), path=blob_re(image.layers[1]), times=None)
    early = await pull_oci(proxy, image, tmp_path / "cache", tmp_path / "early.tar")
    assert sum(early_reads) > 0  # copied before the blob was complete
    early_reads.clear()
    assert early.output.read_bytes() == await without_following(proxy, image, tmp_path, monkeypatch)
    assert not early_reads


async def test_a_download_started_over_under_its_copy_is_copied_again(
    proxy: FaultProxy,
    image: PushedImage,
    tmp_path: Path,
    early_reads: list[int],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A flipped byte in the first chunk: the copy reads it, the download fails its digest
    and starts over, and the region is copied again from the verified blob."""
    big = image.layers[1]
    # The first rule that matches a request applies: the flip before the throttle.
    proxy.add(flip_byte(1000), path=blob_re(big), range_header=r"bytes=0-\d*")
    proxy.add(throttle(SLOW), path=blob_re(big), times=None)
    with caplog.at_level(logging.INFO, logger="dockerdrag"):
        result = await pull_oci(proxy, image, tmp_path / "cache", tmp_path / "x.tar")
    assert sum(early_reads) > 0
    assert "started over under its copy into the archive" in caplog.text
    proxy.reset()
    assert result.output.read_bytes() == await without_following(
        proxy, image, tmp_path, monkeypatch
    )


def test_a_download_started_over_behind_the_reader_is_noticed(tmp_path: Path) -> None:
    """The download starts over and grows past the reader before it looks again: the reader
    finds nothing wrong with the bytes, the gate's count of restarts does."""
    gate = BlobGate(BlobStore(tmp_path / "cache"), [])
    digest = Digest.of(b"the blob")
    partial = tmp_path / "blob.partial"
    partial.write_bytes(b"a" * 8)
    gate.paths[digest] = tmp_path / "blob"
    gate.note_prefix(digest, partial, 8)
    reader = _ArrivingReader(gate, digest)
    try:
        assert reader.read(4) == b"aaaa"
        assert reader.intact()
        gate.note_prefix(digest, partial, 0)  # started over...
        gate.note_prefix(digest, partial, 8)  # ...and past the reader again
        assert reader.read(4) == b"aaaa"
        assert not reader.intact()
    finally:
        reader.close()
