"""Every script in examples/ runs against the local registry, as a reader would run it;
each that pulls takes ``--platform`` and pulls a multi-platform image with it (the
platform asked for is the one written)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.support.archive_check import read_docker_archive
from tests.support.images import (
    PushedImage,
    PushedIndex,
    busybox_index,
    push_image,
    push_index,
    text_layer,
)
from tests.support.registry_server import RegistryServer

SeededRegistry = tuple[RegistryServer, dict[str, Any]]
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run_example(
    name: str, *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "XDG_CACHE_HOME": str(cwd / "cache"), "DOCKER_CONFIG": str(cwd)}
    environment.update(env or {})
    completed = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "Traceback" not in completed.stderr, completed.stderr
    return completed


def test_every_example_is_tested() -> None:
    source = Path(__file__).read_text()
    for script in EXAMPLES.glob("*.py"):
        assert f'"{script.name}"' in source, f"{script.name} has no test"
        text = script.read_text()
        pulls = any(name in text for name in ("Puller", "pull_image", "pull_images"))
        if pulls:  # an example that pulls can pull a multi-platform image
            assert '"--platform"' in text, f"{script.name} pulls but takes no --platform"


def test_pull_concurrently(seeded_registry: SeededRegistry, tmp_path: Path) -> None:
    server, images = seeded_registry
    refs = [images["multiarch"].reference, images["multilayer"].reference]
    completed = run_example(
        "pull_concurrently.py",
        "out",
        *refs,
        "--platform",
        "linux/amd64",
        "--insecure",
        server.host,
        cwd=tmp_path,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    expected = {
        "multiarch": images["multiarch"].image("linux", "amd64").config,
        "multilayer": images["multilayer"].config,
    }
    for name, config in expected.items():
        (image,) = read_docker_archive(tmp_path / "out" / f"test_{name}.tar")
        assert image.config == config


def test_bundle(seeded_registry: SeededRegistry, tmp_path: Path) -> None:
    server, images = seeded_registry
    names = ("multiarch", "multilayer")
    completed = run_example(
        "bundle.py",
        "bundle.tar",
        *[images[name].reference for name in names],
        "--platform",
        "linux/amd64",
        "--insecure",
        server.host,
        cwd=tmp_path,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    archived = read_docker_archive(tmp_path / "bundle.tar")
    expected = [images["multiarch"].image("linux", "amd64").config, images["multilayer"].config]
    assert [image.config for image in archived] == expected
    assert "docker load -i bundle.tar" in completed.stdout


def test_bundle_reports_errors_with_the_exit_code(registry: RegistryServer, tmp_path: Path) -> None:
    completed = run_example(
        "bundle.py",
        "b.tar",
        f"{registry.host}/test/none:x",
        "--insecure",
        registry.host,
        cwd=tmp_path,
    )
    assert completed.returncode == 4
    assert completed.stdout.startswith("error: ")


def test_progress_callback(seeded_registry: SeededRegistry, tmp_path: Path) -> None:
    server, images = seeded_registry
    index: PushedIndex = images["multiarch"]
    pushed = index.image("linux", "arm64", "v8")
    completed = run_example(
        "progress_callback.py",
        index.reference,
        "m.tar",
        "--platform",
        "linux/arm64",
        "--insecure",
        server.host,
        cwd=tmp_path,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    lines = completed.stdout.splitlines()
    assert lines[0].startswith(f"pulling {index.reference}: 1 layers")
    for digest in set(pushed.layer_digests):
        assert f"layer {digest[7:19]}: complete" in completed.stdout
    assert "100%" in lines
    assert lines[-1].startswith(f"done: m.tar ({pushed.image_id})")


def test_progress_events(seeded_registry: SeededRegistry, tmp_path: Path) -> None:
    server, images = seeded_registry
    index: PushedIndex = images["multiarch"]
    completed = run_example(
        "progress_events.py",
        index.reference,
        "b.tar",
        "--platform",
        "arm/v7",
        "--insecure",
        server.host,
        cwd=tmp_path,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    messages = [json.loads(line) for line in completed.stdout.splitlines()]
    assert messages[0] == {"type": "start", "layers": 1}
    assert messages[-1] == {"type": "finished", "output": "b.tar"}
    assert {"layer"} <= {m["type"] for m in messages}
    (image,) = read_docker_archive(tmp_path / "b.tar")
    assert image.config == index.image("linux", "arm", "v7").config


def test_private_registry_with_login_and_ca(
    basic_auth_registry: RegistryServer, tmp_path: Path
) -> None:
    server = basic_auth_registry
    assert server.username and server.password and server.ca_pem_path
    index = push_index(server, "test/private", "v1", busybox_index("oci"))
    pushed = index.image("linux", "arm64", "v8")
    args = [index.reference, "p.tar", "--username", server.username, "--platform", "linux/arm64"]
    completed = run_example(
        "private_registry.py",
        *args,
        "--ca-cert",
        str(server.ca_pem_path),
        cwd=tmp_path,
        env={"REGISTRY_PASSWORD": server.password},
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert f"{index.reference}: {index.digest}" in completed.stdout
    assert server.password not in completed.stdout + completed.stderr
    (image,) = read_docker_archive(tmp_path / "p.tar")
    assert image.config == pushed.config
    refused = run_example(
        "private_registry.py",
        *args,
        "--ca-cert",
        str(server.ca_pem_path),
        cwd=tmp_path,
        env={"REGISTRY_PASSWORD": "not-the-password"},
    )
    assert refused.returncode == 3, refused.stdout
    untrusted = run_example(
        "private_registry.py", *args, cwd=tmp_path, env={"REGISTRY_PASSWORD": server.password}
    )
    assert untrusted.returncode == 5, untrusted.stdout


def test_verify_archive(tmp_path: Path) -> None:
    fixture = Path(__file__).resolve().parent / "fixtures" / "docker-save-20.10" / "multi"
    good = fixture / "docker-save.tar"
    completed = run_example("verify_archive.py", str(good), cwd=tmp_path)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert f"{good}: '127.0.0.1:5101/fid/multi:latest' sha256:ffa30e79" in completed.stdout
    assert completed.stdout.splitlines()[-1].startswith(f"{good}: OK, 12 files")
    damaged = tmp_path / "damaged.tar"
    data = bytearray(good.read_bytes())
    data[len(data) // 2] ^= 0x01
    damaged.write_bytes(bytes(data))
    refused = run_example("verify_archive.py", str(good), str(damaged), cwd=tmp_path)
    assert refused.returncode == 6, refused.stdout
    assert refused.stdout.startswith("damaged: ")


def test_locked_bundle(registry: RegistryServer, tmp_path: Path) -> None:
    repo = f"examples/locked-{tmp_path.name[-12:].lower()}"
    old = push_image(registry, repo, "1", [text_layer("v.txt", "one\n")])
    (tmp_path / "images.txt").write_text(f"# the one image\n{old.reference}\n")
    insecure = ("--insecure", registry.host)
    first = run_example(
        "locked_bundle.py", "b.tar", "--list", "images.txt", *insecure, cwd=tmp_path
    )
    assert first.returncode == 0, first.stdout + first.stderr
    assert f"{old.reference}: {old.manifest_digest} (1 layers)" in first.stdout
    assert "wrote b.tar and b.lock.json" in first.stdout
    new = push_image(registry, repo, "1", [text_layer("v.txt", "two\n")])
    again = run_example(
        "locked_bundle.py", "again.tar", "--locked", "b.lock.json", *insecure, cwd=tmp_path
    )
    assert again.returncode == 0, again.stdout + again.stderr
    assert (
        f"{old.reference} moved to {new.manifest_digest}; kept the locked {old.manifest_digest}"
    ) in again.stdout
    assert (tmp_path / "again.tar").read_bytes() == (tmp_path / "b.tar").read_bytes()
    assert (tmp_path / "again.lock.json").read_bytes() == (tmp_path / "b.lock.json").read_bytes()


def test_locked_bundle_with_a_platform(seeded_registry: SeededRegistry, tmp_path: Path) -> None:
    server, images = seeded_registry
    index: PushedIndex = images["multiarch"]
    (tmp_path / "images.txt").write_text(f"{index.reference}\n")
    completed = run_example(
        "locked_bundle.py",
        "m.tar",
        "--list",
        "images.txt",
        "--platform",
        "linux/arm64",
        "--insecure",
        server.host,
        cwd=tmp_path,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    (image,) = read_docker_archive(tmp_path / "m.tar")
    assert image.config == index.image("linux", "arm64", "v8").config


def test_push_archive(
    seeded_registry: SeededRegistry, registry_factory: Callable[..., RegistryServer], tmp_path: Path
) -> None:
    server, images = seeded_registry
    target = registry_factory()
    pushed: PushedImage = images["busybox"]
    bundle = run_example(
        "bundle.py", "bb.tar", pushed.reference, "--insecure", server.host, cwd=tmp_path
    )
    assert bundle.returncode == 0, bundle.stdout + bundle.stderr
    completed = run_example(
        "push_archive.py", "bb.tar", f"{target.host}/air", "--insecure", target.host, cwd=tmp_path
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    lines = completed.stdout.splitlines()
    assert lines[0] == f"pushing {server.host}/test/busybox:latest -> " + (
        f"{target.host}/air/test/busybox:latest: 2 blobs"
    )
    assert f"blob {pushed.config_digest[7:19]}: complete" in lines
    assert "(a new manifest)" in lines[-2]
    assert lines[-1] == "done: 1 image(s), 2 blobs uploaded, 0 already there, 0 mounted"
    again = run_example(
        "push_archive.py", "bb.tar", f"{target.host}/air", "--insecure", target.host, cwd=tmp_path
    )
    assert again.stdout.splitlines()[-1].endswith("0 blobs uploaded, 2 already there, 0 mounted")
    failed = run_example(
        "push_archive.py",
        "missing.tar",
        f"{target.host}/air",
        "--insecure",
        target.host,
        cwd=tmp_path,
    )
    assert failed.returncode == 4 and failed.stdout.startswith("error: no such archive")
