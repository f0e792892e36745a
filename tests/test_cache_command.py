"""``dockerdrag cache``: what the cache holds; ``cache prune``, also while a pull runs
(in another process)."""

from __future__ import annotations

import hashlib
import json
import os
import random
import subprocess
import sys
import tarfile
import time
from pathlib import Path

from dockerdrag.cache_admin import prune
from tests.support.command import run_cli
from tests.support.fault_proxy import FaultProxy, throttle
from tests.support.images import PushedImage, layer, push_image
from tests.support.registry_server import RegistryServer


def _env(tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "DOCKERDRAG_CACHE_DIR": str(tmp_path / "cache"),
        "DOCKER_CONFIG": str(tmp_path),
    }


def _cache(tmp_path: Path, *args: str) -> dict[str, int]:
    completed = run_cli("cache", *args, "--json", cwd=tmp_path, env=_env(tmp_path))
    assert completed.returncode == 0, completed.stderr
    found: dict[str, int] = json.loads(completed.stdout)
    return found


def _two_layer_image(registry: RegistryServer) -> PushedImage:
    noise = random.Random(14).randbytes(400_000)  # incompressible: ~4 s at 100 kB/s
    return push_image(
        registry, "test/prune", "latest", [layer({"big": noise}), layer({"small": b"small\n"})]
    )


def test_cache_shows_and_prunes(registry: RegistryServer, tmp_path: Path) -> None:
    pushed = _two_layer_image(registry)
    pulled = run_cli(
        pushed.reference, "--insecure", registry.host, "-q", cwd=tmp_path, env=_env(tmp_path)
    )
    assert pulled.returncode == 0, pulled.stderr
    blobs = tmp_path / "cache" / "blobs" / "sha256"
    (blobs / f"{'a' * 64}.partial").write_bytes(b"x" * 1000)
    shown = run_cli("cache", cwd=tmp_path, env=_env(tmp_path))
    assert shown.returncode == 0, shown.stderr
    assert f"Cache:     {tmp_path / 'cache'}" in shown.stdout
    summary = _cache(tmp_path)
    assert (summary["blobs"], summary["partials"], summary["partial_bytes"]) == (3, 1, 1000)

    assert _cache(tmp_path, "prune", "--partials")["partials"] == 1
    assert _cache(tmp_path)["partials"] == 0
    assert _cache(tmp_path, "prune", "--unused-for", "1")["blobs"] == 0  # all fresh
    small = blobs / pushed.layer_digests[1].split(":")[1]
    long_ago = time.time() - 3 * 86400
    os.utime(small, (long_ago, long_ago))
    assert _cache(tmp_path, "prune", "--unused-for", "2")["blobs"] == 1
    assert not small.exists()
    assert _cache(tmp_path, "prune")["blobs"] == 2
    assert _cache(tmp_path)["blobs"] == 0
    assert list((tmp_path / "cache" / "locks").iterdir()) == []


def test_prune_while_a_pull_runs(registry: RegistryServer, tmp_path: Path) -> None:
    """The pull writes the oci format (blobs in digest order): the throttled layer sorts
    first, so the other one waits, fetched and unwritten, while the prune runs."""
    pushed = _two_layer_image(registry)
    slow, fast = sorted(pushed.layer_digests)
    with FaultProxy(registry.url) as proxy:
        proxy.add(throttle(100_000), path=rf"/blobs/{slow}$", times=None)
        pull = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "dockerdrag",
                pushed.reference.replace(registry.host, proxy.host),
                "--insecure",
                proxy.host,
                "--format",
                "oci",
                "-o",
                "out.tar",
                "-q",
            ],
            cwd=tmp_path,
            env=_env(tmp_path),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        blobs = tmp_path / "cache" / "blobs" / "sha256"
        deadline = time.monotonic() + 60
        while not (
            (blobs / fast.split(":")[1]).exists()
            and (blobs / f"{slow.split(':')[1]}.partial").exists()
        ):
            assert pull.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        # This process prunes (the command itself is tested above): no start-up time
        # during which the pull could finish.
        pruned = prune(tmp_path / "cache")
        assert pull.poll() is None, "the pull ended before the prune did: nothing was tested"
        _stdout, stderr = pull.communicate(timeout=120)
    assert pull.returncode == 0, stderr
    assert pruned.kept_in_use >= 1  # the fetched, unwritten layer (and the config)
    with tarfile.open(tmp_path / "out.tar") as archive:
        names = archive.getnames()
    assert f"blobs/sha256/{fast.split(':')[1]}" in names
    assert f"blobs/sha256/{slow.split(':')[1]}" in names
    # Nothing corrupt is left behind: a pull from what the cache holds has the same blobs.
    again = run_cli(
        pushed.reference,
        "--insecure",
        registry.host,
        "--format",
        "oci",
        "-o",
        "again.tar",
        "-q",
        cwd=tmp_path,
        env=_env(tmp_path),
    )
    assert again.returncode == 0, again.stderr
    assert _blobs(tmp_path / "again.tar") == _blobs(tmp_path / "out.tar")


def _blobs(archive_path: Path) -> dict[str, bytes]:
    """The archive's blobs by name, each checked against its digest."""
    found = {}
    with tarfile.open(archive_path) as archive:
        for member in archive.getmembers():
            if member.isfile() and member.name.startswith("blobs/sha256/"):
                handle = archive.extractfile(member)
                assert handle is not None
                data = handle.read()
                assert hashlib.sha256(data).hexdigest() == member.name.rsplit("/", 1)[1]
                found[member.name] = data
    return found
