"""Big gzip layers decompressed as they arrive (docker format): the size their trailer
claims is asked for first, each blob is followed on disk while it downloads, and every
way that shortcut can go wrong still gives the right archive.

Every pull goes through a :class:`FaultProxy` in front of the real ``docker-registry``.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import anyio
import pytest

from dockerdrag import blob_gate, docker_parallel, pull_assembly, size_claims
from dockerdrag.digest import Digest
from dockerdrag.download import TransferOptions
from dockerdrag.errors import OutputError
from dockerdrag.media_types import MEDIA_TYPE_DOCKER_LAYER_GZIP
from tests.support.command import assert_nothing_left_at
from tests.support.fault_proxy import FaultProxy, flip_byte, ignore_range, swap_body, throttle
from tests.support.images import (
    BuiltLayer,
    PushedImage,
    push_image,
    random_layer,
    text_layer,
)
from tests.support.registry_server import RegistryServer
from tests.test_decoder_processes import worker_pids
from tests.test_transfer import assert_archive, blob_file, blob_re, pull

pytestmark = pytest.mark.anyio

CHUNKED = TransferOptions(
    chunk_threshold=1 << 20, chunk_size=256 << 10, small_blob=0, whole_blobs=False
)
WHOLE = TransferOptions(chunk_threshold=1 << 20, small_blob=0)  # split only while slow
SLOW = 2_000_000  # bytes a second per request: a blob arrives over a good part of a second


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
            random_layer(11, 2_500_000),
            random_layer(12, 1_500_000),
        ]
        plain_as_gzip = random_layer(
            13, 1_500_000, compression="none", media_type=MEDIA_TYPE_DOCKER_LAYER_GZIP
        )
        _pushed[registry.url] = Images(
            app=push_image(registry, "early/app", "v1", app),
            mislabelled=push_image(registry, "early/mislabelled", "v1", [plain_as_gzip]),
        )
    return _pushed[registry.url]


@pytest.fixture(autouse=True, params=["threads", "processes"])
def decoders(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test with decoder threads, and with decoder processes where they run (the
    test images are far smaller than what a pull starts processes for)."""
    if request.param == "processes":
        if sys.platform != "linux":
            pytest.skip("decoder processes: Linux")
        monkeypatch.setattr(docker_parallel, "PROCESSES_MIN_BYTES", 0)
    else:
        monkeypatch.setattr(docker_parallel, "processes_available", lambda: False)
    return str(request.param)


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
    """How far blobs not verified yet had arrived each time a follower (a decoder thread
    or a decoder process, through the gate) asked: what it could read early."""
    ends: list[int] = []
    real = blob_gate.BlobGate.wait_beyond

    def wait_beyond(
        self: blob_gate.BlobGate, digest: Digest, position: int
    ) -> tuple[Path, int, bool]:
        path, end, verified = real(self, digest, position)
        if not verified:
            ends.append(end)
        return path, end, verified

    monkeypatch.setattr(blob_gate.BlobGate, "wait_beyond", wait_beyond)
    return ends


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


@pytest.mark.parametrize("transfer", [CHUNKED, WHOLE], ids=["chunks", "whole"])
async def test_a_blob_corrupt_under_its_decoder_is_decoded_again_once_verified(
    proxy: FaultProxy,
    images: Images,
    tmp_path: Path,
    early_reads: list[int],
    caplog: pytest.LogCaptureFixture,
    transfer: TransferOptions,
    decoders: str,
) -> None:
    """A flipped byte in the blob's first request (its first chunk, or the whole blob):
    the follower reads it, the download fails its digest and starts over, and the layer
    is decoded again from the verified blob. (A decoder process hears of a blob's prefix a
    MiB at a time: here it may first hear of the whole blob, split as it came slowly,
    from the download that started over, and then it reads no corrupt byte.)"""
    # The first rule that matches a request applies: the flip before the throttle.
    proxy.add(flip_byte(1000), path=blob_re(images.big), range_header=r"bytes=0-\d*")
    proxy.add(throttle(SLOW), path=blob_re(images.big), times=None)
    with caplog.at_level(logging.INFO, logger="dockerdrag"):
        result = await pull(
            proxy, images.app, tmp_path / "c", tmp_path / "x.tar", transfer=transfer
        )
    assert_archive(result, images.app)
    assert sum(early_reads) > 0
    assert "content digest mismatch" in caplog.text
    if transfer is CHUNKED or decoders == "threads":
        assert "read again from its verified blob" in caplog.text


async def _pull_killing_a_decoder(
    proxy: FaultProxy, images: Images, tmp_path: Path, kill: Callable[[], None]
) -> None:
    """Pull the app image, its big blob slow, and call ``kill`` once its decoder processes
    run and the big blob is on its way (then the pull must fail)."""
    partial = blob_file(tmp_path / "c", images.big, ".partial")
    proxy.add(throttle(1_000_000), path=blob_re(images.big), times=None)

    async def kill_when_decoding() -> None:
        while not (partial.exists() and partial.stat().st_size >= 300_000 and worker_pids()):
            await anyio.sleep(0.02)
        kill()

    try:
        async with anyio.create_task_group() as group:
            group.start_soon(kill_when_decoding)
            await pull(proxy, images.app, tmp_path / "c", tmp_path / "x.tar")
    except BaseExceptionGroup as group:
        (error,) = group.exceptions  # the pull's
        raise error from None


async def test_a_killed_decoder_process_fails_the_pull_clearly_and_leaves_no_output(
    proxy: FaultProxy, images: Images, tmp_path: Path, decoders: str
) -> None:
    if decoders != "processes":
        pytest.skip("decoder threads: nothing to kill")
    workers: set[int] = set()

    def kill() -> None:  # the one following the big blob among them
        workers.update(worker_pids())
        for pid in workers:
            os.kill(pid, signal.SIGKILL)

    with pytest.raises(OutputError, match="decoder process ended unexpectedly"):
        await _pull_killing_a_decoder(proxy, images, tmp_path, kill)
    assert len(workers) == 2
    assert not worker_pids()
    assert_nothing_left_at(tmp_path / "x.tar")
    assert blob_file(tmp_path / "c", images.app.layers[0]).exists()  # verified blobs kept


async def test_a_cancelled_pull_leaves_no_decoder_process(
    proxy: FaultProxy, images: Images, tmp_path: Path, decoders: str
) -> None:
    if decoders != "processes":
        pytest.skip("decoder threads: nothing to kill")
    workers: set[int] = set()
    with anyio.CancelScope() as scope:

        def cancel() -> None:
            workers.update(worker_pids())
            scope.cancel()

        await _pull_killing_a_decoder(proxy, images, tmp_path, cancel)
    assert scope.cancelled_caught
    assert len(workers) == 2
    assert not worker_pids()
    assert not any(Path(f"/proc/{pid}").exists() for pid in workers)
    assert_nothing_left_at(tmp_path / "x.tar")


async def test_decoder_processes_that_cannot_start_leave_the_layers_to_threads(
    proxy: FaultProxy,
    images: Images,
    tmp_path: Path,
    decoders: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    if decoders != "processes":
        pytest.skip("decoder threads: no process to start")
    monkeypatch.setattr(sys, "executable", str(tmp_path / "no-such-python"))
    with caplog.at_level(logging.INFO, logger="dockerdrag"):
        result = await pull(proxy, images.app, tmp_path / "c", tmp_path / "x.tar")
    assert_archive(result, images.app)
    assert "layers decoded by threads: cannot start a decoder process" in caplog.text
