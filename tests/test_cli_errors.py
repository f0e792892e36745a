"""Errors in Docker's words, through the command as a user runs it: a refused anonymous
pull (a misspelled repository on a Hub-style registry) and an image for another platform."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.archive_check import read_docker_archive
from tests.support.command import run_cli
from tests.support.images import push_image, text_layer
from tests.support.registry_server import RegistryServer, start_registry
from tests.support.token_server import TokenPolicy

PUBLIC = "library/hello-world"


def hub_grant(account: str | None, kind: str, name: str, actions: list[str]) -> list[str]:
    """Docker Hub's rule: a token for any repository name, holding no access at all to a
    repository that does not exist (or that this account may not see)."""
    if account == "pusher":
        return actions
    return [a for a in actions if a == "pull"] if name == PUBLIC else []


@pytest.fixture(scope="module")
def hub_registry(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[RegistryServer, str]]:
    """A token-auth registry with anonymous pulls of PUBLIC; ``(server, reference)``."""
    policy = TokenPolicy(
        users={"pusher": "pw-pusher", "bob": "pw-bob"}, allow_anonymous=True, grant=hub_grant
    )
    server = start_registry(
        tmp_path_factory.mktemp("hub"),
        auth="token",
        tls=True,
        username="pusher",
        password="pw-pusher",
        token_policy=policy,
    )
    try:
        pushed = push_image(server, PUBLIC, "latest", [text_layer("hello", "hi\n")])
        yield server, pushed.reference
    finally:
        server.stop()


def test_anonymous_pull_of_a_misspelled_repository_says_what_docker_says(
    hub_registry: tuple[RegistryServer, str], tmp_path: Path
) -> None:
    server, public = hub_registry
    ca = ["--ca-cert", str(server.ca_pem_path)]
    found = run_cli(public, *ca, "-o", "ok.tar", cwd=tmp_path)
    assert found.returncode == 0, found.stderr
    completed = run_cli(f"{server.host}/library/helo-world", *ca, cwd=tmp_path)
    assert completed.returncode == 4, completed.stderr
    assert completed.stderr.strip() == (
        f"dockerdrag: error: pull access denied for library/helo-world on {server.host}: the "
        f"repository does not exist or may require 'docker login {server.host}' (or --username "
        "and --password-stdin)"
    )
    assert not list(tmp_path.glob("*helo*"))


@pytest.mark.parametrize(
    ("user", "password", "said"),
    [("bob", "pw-bob", "granted no access"), ("bob", "wrong-pw", "refused user 'bob'")],
)
def test_refused_credentials_exit_3(
    hub_registry: tuple[RegistryServer, str],
    tmp_path: Path,
    user: str,
    password: str,
    said: str,
) -> None:
    server, _ = hub_registry
    completed = run_cli(
        f"{server.host}/library/helo-world",
        "--ca-cert",
        str(server.ca_pem_path),
        "-u",
        user,
        "--password-stdin",
        cwd=tmp_path,
        stdin=password + "\n",
    )
    assert completed.returncode == 3, completed.stderr
    assert said in completed.stderr and "pull access denied" not in completed.stderr
    assert password not in completed.stderr


def test_single_platform_image_for_another_platform_exits_4_before_any_layer(
    seeded_registry: tuple[RegistryServer, dict[str, Any]], tmp_path: Path
) -> None:
    server, images = seeded_registry
    busybox = images["busybox"]  # linux/amd64 only
    completed = run_cli(
        busybox.reference, "--insecure", server.host, "--platform", "linux/arm64", cwd=tmp_path
    )
    assert completed.returncode == 4, completed.stderr
    assert completed.stderr.strip() == (
        f"dockerdrag: error: image {server.host}/test/busybox:latest was found but does not "
        "match the specified platform: wanted linux/arm64, actual: linux/amd64 (a "
        "single-platform image; --platform linux/amd64 pulls it)"
    )
    blobs = tmp_path / ".xdg-cache" / "dockerdrag" / "blobs" / "sha256"
    layer_hex = {layer.digest.removeprefix("sha256:") for layer in busybox.layers}
    assert not {path.name.split(".")[0] for path in blobs.iterdir()} & layer_hex
    assert not list(tmp_path.glob("*.tar"))
    for matching in (["--platform", "linux/amd64"], ["--platform", "amd64"], []):
        pulled = run_cli(busybox.reference, "--insecure", server.host, *matching, cwd=tmp_path)
        assert pulled.returncode == 0, pulled.stderr


def test_platform_arch_and_variant_means_linux(
    seeded_registry: tuple[RegistryServer, dict[str, Any]], tmp_path: Path
) -> None:
    server, images = seeded_registry
    index = images["multiarch"]
    completed = run_cli(
        index.reference,
        "--insecure",
        server.host,
        "--platform",
        "arm/v7",
        "-o",
        "a.tar",
        cwd=tmp_path,
    )
    assert completed.returncode == 0, completed.stderr
    (image,) = read_docker_archive(tmp_path / "a.tar")
    assert image.config == index.image("linux", "arm", "v7").config
