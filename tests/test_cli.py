"""The command line, driven as a user would: subprocesses, exit codes, what is printed."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.support.archive_check import read_docker_archive
from tests.support.command import assert_clean_failure, run_cli
from tests.support.images import PushedImage, push_image, text_layer
from tests.support.registry_server import RegistryServer

SeededRegistry = tuple[RegistryServer, dict[str, Any]]


def test_default_output_name_like_the_original_script(
    seeded_registry: SeededRegistry, tmp_path: Path
) -> None:
    server, images = seeded_registry
    completed = run_cli(images["busybox"].reference, "--insecure", server.host, cwd=tmp_path)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "test_busybox.tar"
    (image,) = read_docker_archive(tmp_path / "test_busybox.tar")
    assert image.repo_tags == [f"{server.host}/test/busybox:latest"]
    assert "Pull complete" in completed.stderr


def test_pull_subcommand_with_output(seeded_registry: SeededRegistry, tmp_path: Path) -> None:
    server, images = seeded_registry
    completed = run_cli(
        "pull",
        images["busybox"].reference,
        "--insecure",
        server.host,
        "-o",
        "x.tar",
        "-q",
        cwd=tmp_path,
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "x.tar" and completed.stderr == ""
    assert (tmp_path / "x.tar").exists()


def test_docker_hub_names_through_a_mirror(registry: RegistryServer, tmp_path: Path) -> None:
    """`hello-world` means docker.io/library/hello-world; served here by a local mirror."""
    pushed = push_image(registry, "library/hello-world", "latest", [text_layer("hello", "hi\n")])
    completed = run_cli("hello-world", "--registry-mirror", f"http://{registry.host}", cwd=tmp_path)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "library_hello-world.tar"
    (image,) = read_docker_archive(tmp_path / "library_hello-world.tar")
    assert image.repo_tags == ["hello-world:latest"]
    assert image.config == pushed.config


def test_multiarch_without_platform_lists_and_fails(
    seeded_registry: SeededRegistry, tmp_path: Path
) -> None:
    server, images = seeded_registry
    index = images["multiarch"]
    completed = run_cli(index.reference, "--insecure", server.host, cwd=tmp_path)
    assert completed.returncode == 4
    amd64 = index.image("linux", "amd64")
    assert re.search(
        rf"^--platform linux/amd64 +# os: linux, architecture: amd64 \(digest: {amd64.digest}\)$",
        completed.stderr,
        re.MULTILINE,
    )
    assert re.search(
        r"^--platform linux/arm64/v8 +# os: linux, architecture: arm64, variant: v8 \(digest: ",
        completed.stderr,
        re.MULTILINE,
    )
    assert "unknown" not in completed.stderr
    assert list(tmp_path.glob("*.tar")) == []


@pytest.mark.parametrize("how", [["--list-platforms"], ["platforms"]])
def test_list_platforms(seeded_registry: SeededRegistry, tmp_path: Path, how: list[str]) -> None:
    server, images = seeded_registry
    index = images["multiarch"]
    args = [*how, index.reference] if how == ["platforms"] else [index.reference, *how]
    completed = run_cli(*args, "--insecure", server.host, cwd=tmp_path)
    assert completed.returncode == 0, completed.stderr
    lines = completed.stdout.strip().splitlines()
    assert [line.split()[1] for line in lines] == ["linux/amd64", "linux/arm64/v8", "linux/arm/v7"]


def test_platform_choice(seeded_registry: SeededRegistry, tmp_path: Path) -> None:
    server, images = seeded_registry
    index = images["multiarch"]
    completed = run_cli(
        index.reference,
        "--platform",
        "linux/arm64/v8",
        "--insecure",
        server.host,
        "-o",
        "a.tar",
        cwd=tmp_path,
    )
    assert completed.returncode == 0, completed.stderr
    (image,) = read_docker_archive(tmp_path / "a.tar")
    assert image.config == index.image("linux", "arm64", "v8").config


def test_unknown_tag_exit_4(registry: RegistryServer, tmp_path: Path) -> None:
    completed = run_cli(
        f"{registry.host}/test/busybox:nope", "--insecure", registry.host, cwd=tmp_path
    )
    assert_clean_failure(completed, 4)
    assert "nope" in completed.stderr
    assert len(completed.stderr.strip().splitlines()) == 1


def test_unknown_platform_exit_4(seeded_registry: SeededRegistry, tmp_path: Path) -> None:
    server, images = seeded_registry
    completed = run_cli(
        images["multiarch"].reference,
        "--platform",
        "linux/s390x",
        "--insecure",
        server.host,
        cwd=tmp_path,
    )
    assert_clean_failure(completed, 4)
    assert "linux/arm/v7" in completed.stderr


@pytest.mark.parametrize("reference", ["library/UPPER", "a//b", "x@sha256:123"])
def test_malformed_reference_exit_2(tmp_path: Path, reference: str) -> None:
    completed = run_cli(reference, cwd=tmp_path)
    assert_clean_failure(completed, 2)


def test_bad_platform_exit_2(tmp_path: Path) -> None:
    completed = run_cli("busybox", "--platform", "linux//x", cwd=tmp_path)
    assert_clean_failure(completed, 2)


def test_plain_http_registry_without_insecure_is_a_tls_error(
    registry: RegistryServer, tmp_path: Path
) -> None:
    completed = run_cli(f"{registry.host}/test/busybox", cwd=tmp_path)
    assert_clean_failure(completed, 5)
    assert f"--insecure {registry.host}" in completed.stderr


def test_output_directory_missing_exit_7(registry: RegistryServer, tmp_path: Path) -> None:
    completed = run_cli(
        f"{registry.host}/test/busybox",
        "--insecure",
        registry.host,
        "-o",
        "missing/x.tar",
        cwd=tmp_path,
    )
    assert_clean_failure(completed, 7)


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    assert run_cli("--no-such-option", "x", cwd=tmp_path).returncode == 2
    assert run_cli("busybox", "--concurrency", "0", cwd=tmp_path).returncode == 2


@pytest.mark.parametrize("args", [[], ["-v"]])
def test_bare_command_prints_the_top_level_usage(tmp_path: Path, args: list[str]) -> None:
    completed = run_cli(*args, cwd=tmp_path)
    assert completed.returncode == 2 and completed.stdout == ""
    assert completed.stderr.startswith("usage: dockerdrag [-h] [--version] COMMAND")
    for command in ("pull", "inspect", "platforms", "help"):
        assert re.search(rf"^    {command} ", completed.stderr, re.MULTILINE), command
    assert "IMAGE" not in completed.stderr.splitlines()[0]


def test_help_command(tmp_path: Path) -> None:
    """`dockerdrag help` is the top-level help and `help COMMAND` a command's: no pull."""
    top = run_cli("help", cwd=tmp_path)
    assert top.returncode == 0, top.stderr
    assert top.stdout == run_cli("--help", cwd=tmp_path).stdout
    assert "COMMAND" in top.stdout and not list(tmp_path.glob("*.tar"))
    for command in ("pull", "inspect", "platforms"):
        shown = run_cli("help", command, cwd=tmp_path)
        assert shown.returncode == 0, shown.stderr
        assert shown.stdout == run_cli(command, "--help", cwd=tmp_path).stdout
        assert shown.stdout.startswith(f"usage: dockerdrag {command} ")
    unknown = run_cli("help", "nosuch", cwd=tmp_path)
    assert unknown.returncode == 2 and "invalid choice: 'nosuch'" in unknown.stderr


def test_version_and_help(tmp_path: Path) -> None:
    version = run_cli("--version", cwd=tmp_path)
    assert version.returncode == 0 and version.stdout.startswith("dockerdrag ")
    helptext = run_cli("pull", "--help", cwd=tmp_path)
    assert helptext.returncode == 0
    for option in (
        "--platform",
        "--output",
        "--insecure",
        "--ca-cert",
        "--concurrency",
        "examples:",
    ):
        assert option in helptext.stdout


def test_console_script_is_installed(seeded_registry: SeededRegistry, tmp_path: Path) -> None:
    server, images = seeded_registry
    pushed: PushedImage = images["busybox"]
    completed = subprocess.run(
        ["dockerdrag", pushed.reference, "--insecure", server.host, "-o", "c.tar", "-q"],
        cwd=tmp_path,
        env={**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr
    assert (tmp_path / "c.tar").exists()


@pytest.mark.parametrize("how", [["platforms"], ["--list-platforms"], ["platforms", "--json"]])
def test_platforms_names_the_platform_of_a_single_platform_image(
    seeded_registry: SeededRegistry, tmp_path: Path, how: list[str]
) -> None:
    server, images = seeded_registry
    busybox = images["busybox"]
    args = [*how, busybox.reference] if how[0] == "platforms" else [busybox.reference, *how]
    completed = run_cli(*args, "--insecure", server.host, cwd=tmp_path)
    assert completed.returncode == 0, completed.stderr
    if "--json" in how:
        (entry,) = json.loads(completed.stdout)
        assert entry["platform"] == "linux/amd64"
        assert entry["digest"] == busybox.manifest_digest
        return
    assert completed.stdout == (
        f"--platform linux/amd64       # os: linux, architecture: amd64 "
        f"(digest: {busybox.manifest_digest})\n"
    )
    assert "single-platform image" in completed.stderr


def test_digest_pull_prints_the_digest_once(
    seeded_registry: SeededRegistry, tmp_path: Path
) -> None:
    server, images = seeded_registry
    busybox = images["busybox"]
    by_digest = run_cli(
        busybox.digest_reference, "--insecure", server.host, "--progress", "plain", cwd=tmp_path
    )
    assert by_digest.returncode == 0, by_digest.stderr
    (pulling,) = [line for line in by_digest.stderr.splitlines() if line.startswith("Pulling")]
    assert pulling == f"Pulling {busybox.digest_reference}"
    by_tag = run_cli(
        busybox.reference, "--insecure", server.host, "--progress", "plain", cwd=tmp_path
    )
    assert f"Pulling {busybox.reference} ({busybox.manifest_digest})" in by_tag.stderr
