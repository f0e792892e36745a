"""Where the command writes: default names, a directory given with -o, every path check
before any network I/O, and the note that a digest-only pull loads untagged."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import pytest

from dockerdrag import Puller
from tests.support.archive_check import read_docker_archive
from tests.support.command import run_cli
from tests.support.registry_server import RegistryServer

SeededRegistry = tuple[RegistryServer, dict[str, Any]]
# Nothing listens there: a command that tried the network would fail with exit 5.
CLOSED = "127.0.0.1:1"
UNTAGGED_NOTE = "the archive loads untagged"


def test_oci_dir_default_name_has_no_tar(seeded_registry: SeededRegistry, tmp_path: Path) -> None:
    server, images = seeded_registry
    completed = run_cli(
        images["busybox"].reference, "--format", "oci-dir", "--insecure", server.host, cwd=tmp_path
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "test_busybox"
    layout = tmp_path / "test_busybox"
    assert json.loads((layout / "oci-layout").read_text())["imageLayoutVersion"] == "1.0.0"
    assert not list(tmp_path.glob("*.tar"))


@pytest.mark.parametrize("output_format", ["docker", "oci"])
def test_output_directory_gets_the_default_name(
    seeded_registry: SeededRegistry, tmp_path: Path, output_format: str
) -> None:
    server, images = seeded_registry
    (tmp_path / "out").mkdir()
    completed = run_cli(
        images["busybox"].reference,
        "-o",
        "out",
        "--format",
        output_format,
        "--insecure",
        server.host,
        cwd=tmp_path,
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == str(Path("out", "test_busybox.tar"))
    (image,) = read_docker_archive(tmp_path / "out" / "test_busybox.tar")
    assert image.repo_tags == [f"{server.host}/test/busybox:latest"]


def test_library_output_directory_gets_the_default_name(
    seeded_registry: SeededRegistry, tmp_path: Path
) -> None:
    server, images = seeded_registry

    async def pull() -> Path:
        async with Puller(insecure=[server.host], cache_dir=tmp_path / "cache") as puller:
            result = await puller.pull(images["busybox"].reference, output=tmp_path)
        return result.output

    assert anyio.run(pull) == tmp_path / "test_busybox.tar"
    assert (tmp_path / "test_busybox.tar").is_file()


@pytest.mark.parametrize(
    ("output_format", "prepare", "output", "message"),
    [
        ("docker", None, "missing/x.tar", "output directory missing does not exist"),
        ("oci", None, "missing/x.tar", "output directory missing does not exist"),
        ("oci-dir", None, "missing/layout", "output directory missing does not exist"),
        ("oci-dir", "file", "taken", "output path taken exists and is not a directory"),
        ("oci-dir", "full-dir", "taken", "output directory taken exists and is not empty"),
    ],
)
def test_output_checks_come_before_any_network_io(
    tmp_path: Path, output_format: str, prepare: str | None, output: str, message: str
) -> None:
    if prepare == "file":
        (tmp_path / "taken").write_text("mine")
    elif prepare == "full-dir":
        (tmp_path / "taken").mkdir()
        (tmp_path / "taken" / "mine").write_text("mine")
    completed = run_cli(
        f"{CLOSED}/test/busybox",
        "--insecure",
        CLOSED,
        "--format",
        output_format,
        "-o",
        output,
        cwd=tmp_path,
    )
    assert completed.returncode == 7, completed.stderr
    assert completed.stderr.strip() == f"dockerdrag: error: {message}"
    if prepare == "file":
        assert (tmp_path / "taken").read_text() == "mine"


def test_digest_only_pull_says_the_archive_loads_untagged(
    seeded_registry: SeededRegistry, tmp_path: Path
) -> None:
    server, images = seeded_registry
    by_digest = images["busybox"].digest_reference
    completed = run_cli(by_digest, "--insecure", server.host, "-o", "d.tar", cwd=tmp_path)
    assert completed.returncode == 0, completed.stderr
    notes = [line for line in completed.stderr.splitlines() if UNTAGGED_NOTE in line]
    assert len(notes) == 1 and "--tag NAME:TAG" in notes[0], completed.stderr
    (image,) = read_docker_archive(tmp_path / "d.tar")
    assert image.repo_tags is None
    for extra in (["--tag", "named:1"], ["-q"]):
        again = run_cli(by_digest, "--insecure", server.host, "-o", "e.tar", *extra, cwd=tmp_path)
        assert again.returncode == 0, again.stderr
        assert UNTAGGED_NOTE not in again.stderr
    tagged = run_cli(images["busybox"].reference, "--insecure", server.host, cwd=tmp_path)
    assert tagged.returncode == 0 and UNTAGGED_NOTE not in tagged.stderr
