"""Big gzip layers decompressed as they arrive (docker format): the size their trailer
claims is asked for first, each blob is followed on disk while it downloads, and every
way that shortcut can go wrong still gives the right archive.

Every pull goes through a :class:`FaultProxy` in front of the real ``docker-registry``.
"""

from __future__ import annotations

import logging
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from dockerdrag import blob_follow, pull_assembly, size_claims
from dockerdrag.download import TransferOptions
from dockerdrag.media_types import MEDIA_TYPE_DOCKER_LAYER_GZIP
from tests.support.fault_proxy import FaultProxy, flip_byte, ignore_range, swap_body, throttle
from tests.support.images import BuiltLayer, PushedImage, layer, push_image, text_layer
from tests.support.registry_server import RegistryServer
from tests.test_transfer import assert_archive, blob_re, pull

pytestmark = pytest.mark.anyio

CHUNKED = TransferOptions(chunk_threshold=1 << 20, chunk_size=256 << 10, small_blob=0)
SLOW = 2_000_000  # bytes a second per request: a blob arrives over a good part of a second


def random_gzip_layer(seed: int, size: int, **kwargs: Any) -> BuiltLayer:
    return layer({"data.bin": random.Random(seed).randbytes(size)}, **kwargs)


@dataclass(frozen=True)
class Images:
    app: PushedImage  # a small gzip layer and two big ones
    mislabelled: PushedImage  # a big uncompressed layer under the gzip media type

    @property
    def big(self) -> BuiltLayer:
        return self.app.layers[1]


_pushed: dict[str, Images] = {}


@pytest.fixture
def images(registry: RegistryServer) -> Images:
    if registry.url not in _pushed:
        app = [
            text_layer("small.txt", "a small layer"),
            random_gzip_layer(11, 2_500_000),
            random_gzip_layer(12, 1_500_000),
        ]
        plain_as_gzip = random_gzip_layer(
            13, 1_500_000, compression="none", media_type=MEDIA_TYPE_DOCKER_LAYER_GZIP
        )
        _pushed[registry.url] = Images(
            app=push_image(registry, "early/app", "v1", app),
            mislabelled=push_image(registry, "early/mislabelled", "v1", [plain_as_gzip]),
        )
    return _pushed[registry.url]


@pytest.fixture
def proxy(registry: RegistryServer) -> Iterator[FaultProxy]:
    with FaultProxy(registry.url) as fault_proxy:
        yield fault_proxy


@pytest.fixture(autouse=True)
def claims_from_one_mib(monkeypatch: pytest.MonkeyPatch) -> None:
    """The test layers are small: ask for the trailer of blobs from 1 MiB on."""
    monkeypatch.setattr(size_claims, "CLAIM_MIN_BLOB", 1 << 20)


def trailer_range(data: BuiltLayer) -> str:
    return f"bytes={data.size - 4}-{data.size - 1}"


def trailer_requests(proxy: FaultProxy, data: BuiltLayer) -> list[int]:
    """The statuses of the requests for ``data``'s last 4 bytes."""
    proxy.wait_idle()
    return [
        r.status
        for r in proxy.requests_for(blob_re(data))
        if r.header("Range") == trailer_range(data)
    ]


@pytest.fixture
def early_reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The byte counts the followers read from blobs not verified yet."""
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


async def test_layers_decoded_as_they_arrive_give_the_sequential_bytes(
    proxy: FaultProxy,
    images: Images,
    tmp_path: Path,
    early_reads: list[int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    proxy.add(throttle(SLOW), path=blob_re(images.big), times=None)
    early = await pull(proxy, images.app, tmp_path / "c1", tmp_path / "early.tar", transfer=CHUNKED)
    assert_archive(early, images.app)
    assert trailer_requests(proxy, images.big) == [206]
    assert sum(early_reads) > 0  # decompressed before the blob was complete
    # The same pull without claims or following: the layers after their blobs, in order.
    monkeypatch.setattr(size_claims, "CLAIM_MIN_BLOB", 1 << 60)
    monkeypatch.setattr(pull_assembly, "renames_open_files", lambda _directory: False)
    early_reads.clear()
    late = await pull(proxy, images.app, tmp_path / "c2", tmp_path / "late.tar", transfer=CHUNKED)
    assert not early_reads
    assert early.output.read_bytes() == late.output.read_bytes()


async def test_a_registry_ignoring_range_for_the_trailer_claims_nothing(
    proxy: FaultProxy, images: Images, tmp_path: Path
) -> None:
    proxy.add(
        ignore_range(), path=blob_re(images.big), range_header=re.escape(trailer_range(images.big))
    )
    result = await pull(proxy, images.app, tmp_path / "c", tmp_path / "x.tar", transfer=CHUNKED)
    assert_archive(result, images.app)
    assert trailer_requests(proxy, images.big) == [200]  # the whole blob, closed unread


async def test_a_trailer_that_lies_still_gives_the_right_archive(
    proxy: FaultProxy, images: Images, tmp_path: Path
) -> None:
    """A claim of 7 bytes: the parallel writer finds more and writes sequentially."""
    proxy.add(
        swap_body(b"\x07\x00\x00\x00"),
        path=blob_re(images.big),
        range_header=re.escape(trailer_range(images.big)),
    )
    result = await pull(proxy, images.app, tmp_path / "c", tmp_path / "x.tar", transfer=CHUNKED)
    assert_archive(result, images.app)
    assert trailer_requests(proxy, images.big) == [206]


async def test_a_layer_labelled_gzip_that_is_not_gzip(
    proxy: FaultProxy, images: Images, tmp_path: Path
) -> None:
    """Its "trailer" is the tar's zero padding: a claim of 0 bytes, found wrong."""
    (plain,) = images.mislabelled.layers
    result = await pull(
        proxy, images.mislabelled, tmp_path / "c", tmp_path / "x.tar", transfer=CHUNKED
    )
    assert_archive(result, images.mislabelled)
    assert trailer_requests(proxy, plain) == [206]


async def test_a_blob_corrupt_under_its_decoder_is_decoded_again_once_verified(
    proxy: FaultProxy,
    images: Images,
    tmp_path: Path,
    early_reads: list[int],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A flipped byte in the first chunk: the follower reads it, the download fails its
    digest and starts over, and the layer is decoded again from the verified blob."""
    # The first rule that matches a request applies: the flip before the throttle.
    proxy.add(flip_byte(1000), path=blob_re(images.big), range_header=r"bytes=0-\d+")
    proxy.add(throttle(SLOW), path=blob_re(images.big), times=None)
    with caplog.at_level(logging.INFO, logger="dockerdrag"):
        result = await pull(proxy, images.app, tmp_path / "c", tmp_path / "x.tar", transfer=CHUNKED)
    assert_archive(result, images.app)
    assert sum(early_reads) > 0
    assert "read again from its verified blob" in caplog.text
