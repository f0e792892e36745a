"""Two processes, one cache: a pull waiting on another's blob lock says so, keeps
waiting while that process lives and works, takes over when it dies, and fails
clearly when it has stopped showing signs of life. Two pulls of one process: the
second is handed the lock as the first releases it, never polls the lock file.

The two-process tests take 5-10 s each: the first pull must hold a layer's lock past the
3 s after which the second says it is waiting (the layer goes through a throttling proxy).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest

from dockerdrag import OutputError, Puller, store
from dockerdrag.blob_lock import HeldLock, LockWait, take_blob_lock
from dockerdrag.osfiles import ProcessLock
from tests.support.archive_check import read_docker_archive
from tests.support.command import cli_command, cli_env
from tests.support.fault_proxy import FaultProxy, throttle
from tests.support.registry_server import RegistryServer

SeededRegistry = tuple[RegistryServer, dict[str, Any]]
WAITING = "waiting for another dockerdrag process"


class _Pull:
    """``python -m dockerdrag`` in the background, its stderr collected line by line."""

    def __init__(self, args: list[str], cwd: Path, cache: Path) -> None:
        env = cli_env(cwd, DOCKERDRAG_CACHE_DIR=str(cache))
        self.process = subprocess.Popen(
            cli_command(*args),
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line)

    def wait_for_line(self, text: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not any(text in line for line in self.lines):
            assert self.process.poll() is None or self._reader.is_alive(), self.lines
            assert time.monotonic() < deadline, f"no {text!r} in {self.lines}"
            time.sleep(0.05)

    def finish(self, timeout: float = 120) -> int:
        code = self.process.wait(timeout)
        self._reader.join(10)
        return code

    @property
    def stderr(self) -> str:
        return "".join(self.lines)


def _wait_for_partial(cache: Path, hex_digest: str) -> None:
    partial = cache / "blobs" / "sha256" / f"{hex_digest}.partial"
    deadline = time.monotonic() + 60
    while not (partial.exists() and partial.stat().st_size > 0):
        assert time.monotonic() < deadline, "the first pull never started the layer"
        time.sleep(0.05)


@contextmanager
def _slow_first_pull(
    registry: RegistryServer, pushed: Any, tmp_path: Path, cache: Path
) -> Iterator[tuple[_Pull, str]]:
    """A pull of ``pushed`` through a proxy that sends its layer at 120 kB/s, under way."""
    layer_hex = pushed.layer_digests[0].split(":")[1]
    with FaultProxy(registry.url) as proxy:
        proxy.add(throttle(120_000), path=rf"/blobs/sha256:{layer_hex}$", times=None)
        reference = pushed.reference.replace(registry.host, proxy.host)
        first = _Pull(
            [reference, "--insecure", proxy.host, "-o", "first.tar", "--progress", "plain"],
            tmp_path,
            cache,
        )
        try:
            _wait_for_partial(cache, layer_hex)
            yield first, layer_hex
        finally:
            if first.process.poll() is None:
                first.process.kill()
            first.finish()


def test_second_pull_waits_for_the_first(seeded_registry: SeededRegistry, tmp_path: Path) -> None:
    registry, images = seeded_registry
    pushed = images["busybox"]  # one layer of about 1 MB: some 8 s through the proxy
    cache = tmp_path / "cache"
    with _slow_first_pull(registry, pushed, tmp_path, cache) as (first, layer_hex):
        second = _Pull(
            [pushed.reference, "--insecure", registry.host, "-o", "second.tar"], tmp_path, cache
        )
        assert second.finish() == 0, second.stderr
        assert first.finish() == 0, first.stderr
    assert f"{WAITING} to finish blob {layer_hex[:12]}" in second.stderr
    (first_image,) = read_docker_archive(tmp_path / "first.tar")
    (second_image,) = read_docker_archive(tmp_path / "second.tar")
    assert second_image.config == first_image.config


def test_second_pull_takes_over_when_the_first_dies(
    seeded_registry: SeededRegistry, tmp_path: Path
) -> None:
    registry, images = seeded_registry
    pushed = images["busybox"]
    cache = tmp_path / "cache"
    with _slow_first_pull(registry, pushed, tmp_path, cache) as (first, _layer_hex):
        second = _Pull(
            [pushed.reference, "--insecure", registry.host, "-o", "second.tar"], tmp_path, cache
        )
        second.wait_for_line(WAITING)
        first.process.send_signal(signal.SIGKILL)
        assert second.finish() == 0, second.stderr
    read_docker_archive(tmp_path / "second.tar")


@pytest.mark.anyio
async def test_a_holder_that_shows_no_sign_of_life_is_an_error(
    seeded_registry: SeededRegistry, tmp_path: Path
) -> None:
    """A process that holds the lock, alive but stuck (no heartbeat, no partial growing)."""
    registry, images = seeded_registry
    pushed = images["busybox"]
    cache = tmp_path / "cache"
    layer_hex = pushed.layer_digests[0].split(":")[1]
    (cache / "locks").mkdir(parents=True)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from dockerdrag.osfiles import ProcessLock; "
            "lock = ProcessLock(sys.argv[1]); assert lock.try_acquire(); "
            "print('held', flush=True); time.sleep(120)",
            str(cache / "locks" / f"{layer_hex}.lock"),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        async with Puller(insecure=[registry.host], cache_dir=cache) as puller:
            puller.store.lock_wait = LockWait(notice_seconds=0.2, stall_seconds=1.5)
            with pytest.raises(OutputError, match=r"no sign of life for 1\.5 s") as raised:
                await puller.pull(pushed.reference, output=tmp_path / "x.tar")
        assert layer_hex[:12] in str(raised.value)
        assert str(cache) in str(raised.value)
    finally:
        holder.kill()
        holder.wait()
    assert not (tmp_path / "x.tar").exists()


@pytest.mark.anyio
async def test_two_pullers_of_one_process_hand_a_blob_lock_over_without_polling(
    seeded_registry: SeededRegistry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two Pullers on one cache pull one image at once: for every blob, the first to
    take its lock holds it until the other is waiting for it; the waiting one is
    handed the lock at release, never finding the lock file held (a poll)."""
    registry, images = seeded_registry
    pushed = images["busybox"]
    cache = tmp_path / "cache"
    arrivals: dict[Path, int] = {}
    second_arrived: dict[Path, anyio.Event] = {}
    order: list[str] = []
    refused: list[str] = []
    real_try_acquire = ProcessLock.try_acquire

    def try_acquire(lock: ProcessLock) -> bool:
        taken = real_try_acquire(lock)
        if not taken:
            refused.append("lock file held")
        return taken

    async def take(lock_path: Path, *args: Any) -> HeldLock:
        arrivals[lock_path] = turn = arrivals.get(lock_path, 0) + 1
        arrived = second_arrived.setdefault(lock_path, anyio.Event())
        if turn == 2:
            arrived.set()  # no await until this pull waits in line (or polls)
        held = await take_blob_lock(lock_path, *args)
        order.append(f"{lock_path.name} taken by pull {turn}")
        if turn == 1:
            with anyio.fail_after(60):  # generous: only "it did not hang"
                await arrived.wait()
        return held

    monkeypatch.setattr(ProcessLock, "try_acquire", try_acquire)
    monkeypatch.setattr(store, "take_blob_lock", take)
    async with (
        Puller(insecure=[registry.host], cache_dir=cache) as first,
        Puller(insecure=[registry.host], cache_dir=cache) as second,
    ):

        async def pull(puller: Puller, name: str) -> None:
            await puller.pull(pushed.reference, output=tmp_path / name)

        async with anyio.create_task_group() as group:
            group.start_soon(pull, first, "first.tar")
            group.start_soon(pull, second, "second.tar")
    assert set(arrivals.values()) == {2}, arrivals
    assert len(arrivals) >= 2  # the config and the layer at least
    for lock_path in arrivals:
        mine = [line for line in order if line.startswith(lock_path.name)]
        assert mine == [f"{lock_path.name} taken by pull 1", f"{lock_path.name} taken by pull 2"]
    assert refused == []
    (first_image,) = read_docker_archive(tmp_path / "first.tar")
    (second_image,) = read_docker_archive(tmp_path / "second.tar")
    assert second_image.config == first_image.config
