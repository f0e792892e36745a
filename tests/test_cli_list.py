"""``dockerdrag pull -f LIST`` and ``--locked FILE``, driven as a user would."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.support.archive_check import read_docker_archive
from tests.support.command import cli_env, run_cli
from tests.support.images import push_image, text_layer
from tests.support.registry_server import RegistryServer

SeededRegistry = tuple[RegistryServer, dict[str, Any]]
CLOSED_PORT_HOST = "127.0.0.1:9"


def test_list_into_a_bundle_and_its_lock_then_locked_after_the_tag_moved(
    seeded_registry: SeededRegistry, tmp_path: Path
) -> None:
    server, images = seeded_registry
    repo = f"cli-lists/{uuid.uuid4().hex[:12]}"
    old = push_image(server, repo, "1", [text_layer("v.txt", "one\n")])
    (tmp_path / "images.txt").write_text(
        f"# for the far side\n{old.reference}\n"
        f"{images['multiarch'].reference} --platform linux/arm/v7  # a dummy image\n"
    )
    insecure = ("--insecure", server.host)
    first = run_cli("pull", "-f", "images.txt", "-o", "bundle.tar", *insecure, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert first.stdout == "bundle.tar\n"
    assert "Lock file: bundle.lock.json" in first.stderr
    lock = json.loads((tmp_path / "bundle.lock.json").read_text())
    assert [i["reference"] for i in lock["images"]] == [
        old.reference,
        images["multiarch"].reference,
    ]
    assert [i["platform"] for i in lock["images"]] == [None, "linux/arm/v7"]
    assert len(read_docker_archive(tmp_path / "bundle.tar")) == 2

    new = push_image(server, repo, "1", [text_layer("v.txt", "two\n")])
    again = run_cli(
        "--locked", "bundle.lock.json", "-o", "again.tar", "--lock", "again.json", *insecure,
        cwd=tmp_path,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert (
        f"dockerdrag: warning: lock file image 1: {old.reference} moved since the lock file: "
        f"locked {old.manifest_digest}, now {new.manifest_digest}; pulling the locked "
        f"{old.manifest_digest}\n"
    ) in again.stderr
    assert again.stderr.count("moved since the lock file") == 1
    assert (tmp_path / "again.tar").read_bytes() == (tmp_path / "bundle.tar").read_bytes()
    assert (tmp_path / "again.json").read_bytes() == (tmp_path / "bundle.lock.json").read_bytes()

    as_json = run_cli(
        "--locked", "bundle.lock.json", "-o", "j.tar", "--json", *insecure, cwd=tmp_path
    )
    assert as_json.returncode == 0, as_json.stderr
    events = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert events[0] == {
        "event": "tag_moved",
        "reference": old.reference,
        "locked": old.manifest_digest,
        "current": new.manifest_digest,
    }
    assert events[-1]["event"] == "done"


def test_the_default_platform_applies_to_list_lines_not_to_a_lock_alone(
    seeded_registry: SeededRegistry, tmp_path: Path
) -> None:
    server, images = seeded_registry
    (tmp_path / "l.txt").write_text(f"{images['multiarch'].reference}\n")
    insecure = ("--insecure", server.host)
    listed = run_cli(
        "-f",
        "l.txt",
        "-o",
        "b.tar",
        *insecure,
        cwd=tmp_path,
        env=cli_env(tmp_path, DOCKERDRAG_PLATFORM="linux/arm/v7"),
    )
    assert listed.returncode == 0, listed.stderr
    (locked,) = json.loads((tmp_path / "b.lock.json").read_text())["images"]
    assert locked["platform"] == "linux/arm/v7"
    # The lock records each line's platform: the environment's default does not apply...
    again = run_cli(
        "--locked",
        "b.lock.json",
        "-o",
        "c.tar",
        *insecure,
        cwd=tmp_path,
        env=cli_env(tmp_path, DOCKERDRAG_PLATFORM="s390x"),
    )
    assert again.returncode == 0, again.stderr
    assert (tmp_path / "c.tar").read_bytes() == (tmp_path / "b.tar").read_bytes()
    # ...and an explicit one is refused.
    refused = run_cli(
        "--locked", "b.lock.json", "-o", "d.tar", "--platform", "linux/amd64", cwd=tmp_path
    )
    assert refused.returncode == 2
    assert "the lock file records each image's platform" in refused.stderr


def test_list_pull_with_json_reports_every_line(
    seeded_registry: SeededRegistry, tmp_path: Path
) -> None:
    server, images = seeded_registry
    names = ("busybox", "multilayer")
    (tmp_path / "l.txt").write_text("".join(f"{images[n].reference}\n" for n in names))
    completed = run_cli(
        "-f", "l.txt", "-o", "b.tar", "--format", "oci", "--json", "--insecure", server.host,
        cwd=tmp_path,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr
    done = json.loads(completed.stdout.splitlines()[-1])
    assert done["event"] == "done"
    assert [r["manifest_digest"] for r in done["results"]] == [
        images[n].manifest_digest for n in names
    ]
    assert (tmp_path / "b.lock.json").exists()


def test_a_malformed_list_is_a_usage_error_before_any_network_io(tmp_path: Path) -> None:
    (tmp_path / "images.txt").write_text(
        f"{CLOSED_PORT_HOST}/fine:1\n{CLOSED_PORT_HOST}/fine:2 --platfrom linux/amd64\n"
    )
    completed = run_cli(
        "pull", "-f", "images.txt", "-o", "b.tar", "--insecure", CLOSED_PORT_HOST, cwd=tmp_path
    )
    assert completed.returncode == 2, completed.stderr
    assert completed.stderr == (
        "dockerdrag: error: images.txt:2: unexpected '--platfrom' (after the image a line "
        "takes --platform P and --tag NAME:TAG)\n"
    )
    assert not (tmp_path / "b.tar").exists() and not (tmp_path / "b.lock.json").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["busybox", "-f", "l.txt", "-o", "b.tar"], "as arguments or in a list"),
        (["-f", "l.txt"], "name it with -o"),
        (["-f", "l.txt", "-o", "b.tar", "--tag", "x:1"], "--tag goes on the image's line"),
        (["busybox", "--lock", "x.json"], "--lock goes with -f"),
        (["-f", "missing.txt", "-o", "b.tar"], "cannot read image list missing.txt"),
        (["--locked", "l.txt", "-o", "b.tar"], "lock file l.txt is not JSON"),
        (["-o", "b.tar"], "give an IMAGE to pull, or a list of them with -f LIST"),
    ],
)
def test_list_option_mistakes_are_usage_errors(
    tmp_path: Path, args: list[str], message: str
) -> None:
    (tmp_path / "l.txt").write_text(f"{CLOSED_PORT_HOST}/a\n")
    completed = run_cli("pull", *args, cwd=tmp_path)
    assert completed.returncode == 2, completed.stderr
    assert completed.stderr.startswith("dockerdrag: error: ")
    assert message in completed.stderr
