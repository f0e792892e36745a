"""Whole pulls on emulated macOS and Windows (tests/support/platform_profiles.py).

Each pull runs the ``dockerdrag`` command in a subprocess that first takes away what
the profile's OS lacks (``sys.platform`` stays ``linux``), so every fallback of
:mod:`dockerdrag.osfiles` runs: named temp files, seek-and-write positional I/O
from several threads, ``msvcrt`` locks, chmod by path, renames that never replace,
open files that cannot be removed or renamed. In each profile: every format gives the
bytes a plain Linux pull gives, a pull killed mid-layer resumes, Ctrl-C leaves no temp
file, two processes share one cache, and the cache can be pruned.

About 50 s in all: each case starts several dockerdrag processes (a second each).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from dockerdrag.digest import Digest
from dockerdrag.pull import FORMATS
from tests.support.fault_proxy import FaultProxy, throttle
from tests.support.images import BuiltLayer, PushedImage, layer, push_image
from tests.support.registry_server import RegistryServer

ROOT = Path(__file__).resolve().parent.parent
PROFILES = ("macos", "windows")
LAUNCHER = ROOT / "tests" / "support" / "platform_profiles.py"
BIG = 3_000_000


def random_layer(seed: int, size: int) -> BuiltLayer:
    return layer({"data.bin": random.Random(seed).randbytes(size)}, compression="gzip")


_pushed: dict[str, PushedImage] = {}


@pytest.fixture
def image(registry: RegistryServer) -> PushedImage:
    """Three gzip layers (the docker archive is written in parallel regions), one big."""
    if registry.url not in _pushed:
        layers = [
            random_layer(11, 200_000),
            random_layer(12, BIG),
            layer({"etc/hello": b"hello\n"}, compression="gzip"),
        ]
        _pushed[registry.url] = push_image(registry, "profiles/app", "v1", layers)
    return _pushed[registry.url]


def command(
    profile: str | None,
    host: str,
    image: PushedImage,
    cache: Path,
    output: Path,
    fmt: str = "docker",
) -> list[str]:
    """The dockerdrag command line, run under ``profile`` (None: plain Linux)."""
    start = [sys.executable, "-m", "dockerdrag"]
    if profile is not None:
        start = [sys.executable, str(LAUNCHER), profile]
    return [
        *start,
        "pull",
        f"{host}/{image.repo}:{image.tag}",
        "-o",
        str(output),
        "--format",
        fmt,
        "--cache-dir",
        str(cache),
        "--insecure",
        host,
        "-q",
    ]


def environment() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "DOCKER_CONFIG": "/nonexistent"}


def run(args: list[str]) -> None:
    completed = subprocess.run(
        args, env=environment(), capture_output=True, text=True, timeout=120, check=False
    )
    assert completed.returncode == 0, completed.stderr


def snapshot(path: Path) -> dict[str, tuple[bytes, int, int]]:
    """Bytes and mode of ``path``; and of everything below it, with their mtimes."""
    entries = sorted(path.rglob("*")) if path.is_dir() else []
    snap = {".": (b"" if path.is_dir() else path.read_bytes(), path.stat().st_mode, 0)}
    for entry in entries:
        data = b"" if entry.is_dir() else entry.read_bytes()
        snap[str(entry.relative_to(path))] = (data, entry.stat().st_mode, entry.stat().st_mtime_ns)
    return snap


def blob_partial(cache: Path, data: BuiltLayer) -> Path:
    return cache / "blobs" / "sha256" / f"{Digest.parse(data.digest).hex}.partial"


def served(proxy: FaultProxy, data: BuiltLayer) -> int:
    proxy.wait_idle()
    return proxy.bytes_served(rf"/blobs/{data.digest}$")


_linux_pulls: dict[tuple[str, str], dict[str, tuple[bytes, int, int]]] = {}


def linux_pull(host: str, image: PushedImage, fmt: str, directory: Path) -> dict[str, Any]:
    """The snapshot of a plain Linux pull of ``image`` in ``fmt`` (pulled once per registry)."""
    if (host, fmt) not in _linux_pulls:
        output = directory / f"linux-{fmt}"
        run(command(None, host, image, directory / "linux-cache", output, fmt))
        _linux_pulls[host, fmt] = snapshot(output)
    return _linux_pulls[host, fmt]


@pytest.mark.parametrize("profile", PROFILES)
def test_every_format_gives_the_bytes_of_a_linux_pull(
    registry: RegistryServer, image: PushedImage, tmp_path: Path, profile: str
) -> None:
    host = registry.url.split("://", 1)[1]
    for fmt in FORMATS:
        emulated = tmp_path / f"{profile}-{fmt}"
        run(command(profile, host, image, tmp_path / "cache", emulated, fmt))
        assert snapshot(emulated) == linux_pull(host, image, fmt, tmp_path), fmt
    names = sorted(p.name for p in tmp_path.iterdir())
    assert not [name for name in names if name.startswith(".")], names  # no temp left


def wait_until_a_mib_is_kept(partial: Path, process: subprocess.Popen[bytes]) -> None:
    """Until ``partial`` holds 1 MiB of the layer (the pull still running; at most 60 s)."""
    deadline = time.monotonic() + 60
    while not (partial.exists() and partial.stat().st_size >= 1 << 20):
        assert time.monotonic() < deadline and process.poll() is None
        time.sleep(0.02)


@pytest.mark.parametrize("profile", PROFILES)
def test_a_pull_killed_mid_layer_resumes(
    proxy: FaultProxy, image: PushedImage, tmp_path: Path, profile: str
) -> None:
    cache, output = tmp_path / "cache", tmp_path / "x.tar"
    big = image.layers[1]
    partial = blob_partial(cache, big)
    proxy.add(throttle(1_500_000), path=rf"/blobs/{big.digest}$", times=None)
    process = subprocess.Popen(
        command(profile, proxy.host, image, cache, output),
        env=environment(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until_a_mib_is_kept(partial, process)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    kept = partial.stat().st_size
    assert 0 < kept < big.size
    assert not output.exists()
    proxy.reset()
    run(command(profile, proxy.host, image, cache, output))
    assert served(proxy, big) == big.size - kept
    linux = linux_pull(proxy.host, image, "docker", tmp_path)  # same host: same RepoTags
    assert snapshot(output) == linux


@pytest.mark.parametrize("profile", PROFILES)
def test_ctrl_c_keeps_the_blobs_and_leaves_no_temp_file(
    proxy: FaultProxy, image: PushedImage, tmp_path: Path, profile: str
) -> None:
    """Without O_TMPFILE the archive's temp file has a name: Ctrl-C must remove it."""
    cache, output = tmp_path / "cache", tmp_path / "x.tar"
    big = image.layers[1]
    partial = blob_partial(cache, big)
    proxy.add(throttle(1_500_000), path=rf"/blobs/{big.digest}$", times=None)
    process = subprocess.Popen(
        command(profile, proxy.host, image, cache, output),
        env=environment(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        # A shell's background job ignores SIGINT and its children inherit that.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        wait_until_a_mib_is_kept(partial, process)
        temps = [p.name for p in tmp_path.iterdir() if p.name.startswith(".x.tar.")]
        assert len(temps) == 1  # the archive is being written beside the output meanwhile
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 130, err.decode()
    assert partial.stat().st_size >= 1 << 20
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache"]


@pytest.mark.parametrize("profile", PROFILES)
def test_two_processes_share_one_cache(
    proxy: FaultProxy, image: PushedImage, tmp_path: Path, profile: str
) -> None:
    big = image.layers[1]
    proxy.add(throttle(3_000_000), path=rf"/blobs/{big.digest}$", times=None)
    cache = tmp_path / "cache"
    processes = [
        subprocess.Popen(
            command(profile, proxy.host, image, cache, tmp_path / f"{name}.tar"),
            env=environment(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for name in ("a", "b")
    ]
    for process in processes:
        _, err = process.communicate(timeout=120)
        assert process.returncode == 0, err.decode()
    assert (tmp_path / "a.tar").read_bytes() == (tmp_path / "b.tar").read_bytes()
    assert served(proxy, big) == big.size  # the lock made the second process wait


def test_without_isal_gzip_layers_give_the_same_bytes(
    registry: RegistryServer, image: PushedImage, tmp_path: Path
) -> None:
    """Windows ARM64 (and 32-bit Windows) get no isal wheel: zlib decompresses instead."""
    probe = (
        "import sys; sys.path.insert(0, sys.argv[1]); import platform_profiles\n"
        "platform_profiles.install('windows-arm64')\n"
        "from dockerdrag import layers; print(layers._gzip.__name__)"
    )
    used = subprocess.run(
        [sys.executable, "-c", probe, str(LAUNCHER.parent)],
        env=environment(),
        capture_output=True,
        text=True,
        check=True,
    )
    assert used.stdout.strip() == "gzip"  # the standard library's, over zlib
    host = registry.url.split("://", 1)[1]
    output = tmp_path / "arm64.tar"
    run(command("windows-arm64", host, image, tmp_path / "cache", output))
    assert snapshot(output) == linux_pull(host, image, "docker", tmp_path)


@pytest.mark.parametrize("profile", PROFILES)
def test_the_cache_is_pruned(
    registry: RegistryServer, image: PushedImage, tmp_path: Path, profile: str
) -> None:
    """Pruning removes lock files it holds: on Windows an open file cannot be removed."""
    host = registry.url.split("://", 1)[1]
    cache = tmp_path / "cache"
    run(command(profile, host, image, cache, tmp_path / "x.tar"))
    assert list((cache / "blobs" / "sha256").iterdir())
    launcher = [sys.executable, str(LAUNCHER), profile]
    run([*launcher, "cache", "prune", "--cache-dir", str(cache)])
    assert not list((cache / "blobs" / "sha256").iterdir())
