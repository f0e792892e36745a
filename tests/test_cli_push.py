"""``dockerdrag push``, driven as a user would: what it prints and how it exits."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from tests.support import pusher
from tests.support.command import run_cli
from tests.support.images import SeededImages
from tests.support.oci_layout import write_random_layout
from tests.support.registry_server import RegistryServer

SeededRegistry = tuple[RegistryServer, SeededImages]
Factory = Callable[..., RegistryServer]


def pulled(server: RegistryServer, reference: str, cwd: Path, *format_args: str) -> str:
    completed = run_cli(
        "pull", reference, "--insecure", server.host, "-o", "a.tar", "-q", *format_args, cwd=cwd
    )
    assert completed.returncode == 0, completed.stderr
    return "a.tar"


def test_push_prints_what_went_where(
    seeded_registry: SeededRegistry, registry_factory: Factory, tmp_path: Path
) -> None:
    server, images = seeded_registry
    target = registry_factory(auth="basic")
    assert target.username and target.password and target.ca_pem_path
    archive = pulled(server, images["busybox"].reference, tmp_path)
    completed = run_cli(
        "push",
        archive,
        f"{target.host}/team",
        "--ca-cert",
        str(target.ca_pem_path),
        "--username",
        target.username,
        "--password-stdin",
        cwd=tmp_path,
        stdin=target.password + "\n",
    )
    assert completed.returncode == 0, completed.stderr
    reference = f"{target.host}/team/test/busybox:latest"
    digest = pusher.get_manifest(target, "team/test/busybox", "latest").digest
    assert completed.stdout == f"{reference}@{digest}\n"
    assert f"Pushing {server.host}/test/busybox:latest -> {reference}" in completed.stderr
    assert "manifest written by dockerdrag" in completed.stderr  # a legacy docker archive
    assert "Pushed (" in completed.stderr
    assert target.password not in completed.stdout + completed.stderr


def test_push_json_events(
    seeded_registry: SeededRegistry, registry_factory: Factory, tmp_path: Path
) -> None:
    server, images = seeded_registry
    target = registry_factory()
    archive = pulled(server, images["busybox_oci"].reference, tmp_path, "--format", "oci")
    completed = run_cli(
        "push", archive, f"{target.host}/j", "--insecure", target.host, "--json", cwd=tmp_path
    )
    assert completed.returncode == 0, completed.stderr
    events = [json.loads(line) for line in completed.stdout.splitlines()]
    assert events[0]["event"] == "start"
    assert events[0]["reference"] == f"{target.host}/j/test/busybox-oci:latest"
    assert {e["status"] for e in events if e["event"] == "layer"} >= {"waiting", "complete"}
    (manifest,) = [e for e in events if e["event"] == "manifest"]
    assert manifest["digest"] == images["busybox_oci"].manifest_digest
    assert manifest["rewritten"] is False
    assert events[-1]["event"] == "done" and events[-1]["uploaded"] == 2


def test_push_usage_and_integrity_errors(
    seeded_registry: SeededRegistry, registry_factory: Factory, tmp_path: Path
) -> None:
    server, images = seeded_registry
    target = registry_factory()
    archive = pulled(server, images["busybox"].reference, tmp_path)
    tagged = run_cli("push", archive, f"{target.host}/x:1", "--insecure", target.host, cwd=tmp_path)
    assert tagged.returncode == 2 and "must be a repository" in tagged.stderr
    nowhere = run_cli("push", archive, cwd=tmp_path)
    assert nowhere.returncode == 2 and "destination" in nowhere.stderr
    unknown = run_cli(
        "push", archive, "--image", "nope:1=" + f"{target.host}/x:1", "--json", cwd=tmp_path
    )
    assert unknown.returncode == 2
    assert json.loads(unknown.stdout.splitlines()[-1])["type"] == "UsageError"
    (tmp_path / "junk.tar").write_bytes(b"not a tar" * 100)
    junk = run_cli("push", "junk.tar", f"{target.host}/x", "--insecure", target.host, cwd=tmp_path)
    assert junk.returncode == 6 and "Traceback" not in junk.stderr
    renamed = run_cli(
        "push",
        archive,
        "--image",
        f"{server.host}/test/busybox:latest={target.host}/prod/bb:stable",
        "--insecure",
        target.host,
        "-q",
        cwd=tmp_path,
    )
    assert renamed.returncode == 0, renamed.stderr
    assert renamed.stdout.startswith(f"{target.host}/prod/bb:stable@sha256:")
    assert renamed.stderr == ""


def test_memory_stays_flat_while_a_large_layer_is_pushed(
    registry_factory: Factory, tmp_path: Path
) -> None:
    """A 100 MiB layer sent in one request: the push's peak RSS stays far below it."""
    size = 100 << 20
    layer = write_random_layout(tmp_path / "layout", size)
    target = registry_factory()
    measure = (
        "import resource, subprocess, sys\n"
        "done = subprocess.run([sys.executable, '-m', 'dockerdrag', *sys.argv[1:]])\n"
        "print(done.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    )
    args = ["push", "layout", f"{target.host}/flat", "--insecure", target.host, "-q"]
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / ".xdg-cache")}
    done = subprocess.run(
        [sys.executable, "-c", measure, *args, "--chunk-size", "128"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=300,
        check=True,
    )
    returncode, max_rss_kib = map(int, done.stdout.split()[-2:])
    assert returncode == 0, done.stderr
    assert pusher.blob_exists(target, "flat", layer)
    assert max_rss_kib < 90 * 1024, max_rss_kib  # the layer is 100 MiB, in one PATCH
