"""The low-speed limit (issue 14): a body that trickles is cut, retried, and then fails.

A server that sends headers and then a byte every few seconds is never silent long
enough for the read timeout; the limit ends it within its window plus the retries.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import anyio
import pytest

from dockerdrag import NetworkError, Puller, RetryPolicy, TransferOptions
from dockerdrag.cli_session import merge_options
from dockerdrag.config import load_settings
from dockerdrag.errors import UsageError
from dockerdrag.low_speed import LowSpeedLimit, SpeedWatch
from tests.support.archive_check import read_docker_archive
from tests.support.command import run_cli
from tests.support.fault_proxy import FaultProxy, throttle
from tests.support.images import PushedImage, push_image, text_layer
from tests.support.registry_server import RegistryServer

ONE_BYTE_EVERY_3_SECONDS = throttle(1 / 3)


@pytest.fixture
def image(registry: RegistryServer) -> PushedImage:
    return push_image(registry, "slow/trickle", "v1", [text_layer("a.txt", "a" * 5000)])


# --------------------------------------------------------------------------- the watch


@pytest.mark.anyio
async def test_a_read_that_outlasts_a_short_window_is_cut() -> None:
    started = time.monotonic()
    too_slow = r"blob x .*low-speed limit \(100 bytes/s over 0.2 s\)"
    with (
        pytest.raises(NetworkError, match=too_slow),
        SpeedWatch(LowSpeedLimit(100, 0.2), "blob x") as watch,
    ):
        watch.note(10)
        await anyio.sleep(30)  # a read that brings nothing
    assert time.monotonic() - started < 20  # did not wait for the read


@pytest.mark.anyio
async def test_a_steady_body_passes_window_after_window() -> None:
    with SpeedWatch(LowSpeedLimit(100, 0.05), "blob x") as watch:
        for _ in range(30):  # about 1000 bytes/s for several windows
            await anyio.sleep(0.01)
            watch.note(10)


@pytest.mark.anyio
async def test_no_limit_watches_nothing() -> None:
    with SpeedWatch(None, "blob x") as watch:
        await anyio.sleep(0.05)
        watch.note(0)


def test_limits_are_checked() -> None:
    with pytest.raises(ValueError):
        LowSpeedLimit(0, 1.0)
    with pytest.raises(ValueError):
        LowSpeedLimit(1, 0.0)


# --------------------------------------------------------------------------- a pull


@pytest.mark.anyio
async def test_a_trickling_blob_fails_within_the_window_and_retries(
    registry: RegistryServer, image: PushedImage, tmp_path: Path
) -> None:
    blob = f"/blobs/{image.layer_digests[0]}"
    with FaultProxy(registry.url) as proxy:
        proxy.add(ONE_BYTE_EVERY_3_SECONDS, path=blob, times=None)
        options = TransferOptions(low_speed=LowSpeedLimit(100, 1.0))
        async with Puller(
            insecure=[proxy.host],
            cache_dir=tmp_path / "cache",
            use_docker_config=False,
            retry=RetryPolicy(attempts=2, base_delay=0.01),
            transfer=options,
        ) as puller:
            with anyio.fail_after(60), pytest.raises(NetworkError) as info:  # not hung
                await puller.pull(f"{proxy.host}/slow/trickle:v1", output=tmp_path / "x.tar")
        assert len(proxy.requests_for(blob)) == 2  # the request, then one retry
    assert "low-speed limit (100 bytes/s over 1 s)" in str(info.value)
    assert not (tmp_path / "x.tar").exists()


def test_the_command_takes_the_limit_from_options_and_environment(
    registry: RegistryServer, image: PushedImage, tmp_path: Path
) -> None:
    blob = f"/blobs/{image.layer_digests[0]}"
    with FaultProxy(registry.url) as proxy:
        proxy.add(ONE_BYTE_EVERY_3_SECONDS, path=blob, times=1)  # then served at full speed
        env = {
            **os.environ,
            "XDG_CACHE_HOME": str(tmp_path / "cache"),
            "DOCKER_CONFIG": str(tmp_path),
            "DOCKERDRAG_LOW_SPEED_TIME": "1",
        }
        arguments = ["pull", f"{proxy.host}/slow/trickle:v1", "--insecure", proxy.host]
        completed = run_cli(
            *arguments, "--low-speed-limit", "100", "-o", "x.tar", "-q", cwd=tmp_path, env=env
        )
        assert completed.returncode == 0, completed.stderr
        assert len(proxy.requests_for(blob)) == 2  # cut after a second, then fetched again
    (archived,) = read_docker_archive(tmp_path / "x.tar")
    assert archived.diff_ids == image.diff_ids


def arguments(**given: object) -> argparse.Namespace:
    return argparse.Namespace(insecure=(), low_speed_limit=None, low_speed_time=None, **given)


def test_option_environment_and_default_merge() -> None:
    assert merge_options(arguments(), load_settings({})).low_speed == LowSpeedLimit()
    environment = load_settings(
        {"DOCKERDRAG_LOW_SPEED_LIMIT": "10", "DOCKERDRAG_LOW_SPEED_TIME": "2.5"}
    )
    assert merge_options(arguments(), environment).low_speed == LowSpeedLimit(10, 2.5)
    given = argparse.Namespace(insecure=(), low_speed_limit=20, low_speed_time=None)
    assert merge_options(given, environment).low_speed == LowSpeedLimit(20, 2.5)
    off = argparse.Namespace(insecure=(), low_speed_limit=0, low_speed_time=None)
    assert merge_options(off, environment).low_speed is None


@pytest.mark.parametrize(
    "environ",
    [{"DOCKERDRAG_LOW_SPEED_LIMIT": "-1"}, {"DOCKERDRAG_LOW_SPEED_TIME": "nan"}],
    ids=["negative-limit", "nan-time"],
)
def test_bad_environment_values_are_usage_errors(environ: dict[str, str]) -> None:
    (name,) = environ
    with pytest.raises(UsageError, match=name):
        load_settings(environ)
