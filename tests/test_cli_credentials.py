"""``--username`` on the command line: the password typed at a prompt on a terminal
(never echoed, as ``docker login`` asks), or piped in with ``--password-stdin``."""

from __future__ import annotations

import sys
from pathlib import Path

import pexpect

from tests.support.archive_check import read_docker_archive
from tests.support.command import cli_env, run_cli
from tests.support.images import push_image, text_layer
from tests.support.registry_server import RegistryServer


def test_password_prompt_on_a_terminal_never_echoes(
    basic_auth_registry: RegistryServer, tmp_path: Path
) -> None:
    server = basic_auth_registry
    assert server.username and server.password
    pushed = push_image(server, "test/prompted", "v1", [text_layer("p.txt", "private\n")])
    args = [pushed.reference, "-u", server.username, "--ca-cert", str(server.ca_pem_path)]
    # The terminal echoes what is typed unless the program turns echo off.
    child = pexpect.spawn(
        sys.executable,
        ["-m", "dockerdrag", *args, "-o", "p.tar", "--progress", "plain"],
        cwd=str(tmp_path),
        env=cli_env(tmp_path),
        encoding="utf-8",
        echo=True,
        timeout=60,
    )
    child.expect_exact(f"Password for {server.username} at {server.host}: ")
    child.sendline(server.password)
    child.expect(pexpect.EOF)
    output: str = child.before
    child.close()
    assert child.exitstatus == 0, output
    assert server.password not in output
    assert "p.tar" in output
    (image,) = read_docker_archive(tmp_path / "p.tar")
    assert image.config == pushed.config


def test_username_without_a_terminal_or_password_stdin_is_a_usage_error(
    tmp_path: Path,
) -> None:
    completed = run_cli(
        "127.0.0.1:1/test/x",
        "--insecure",
        "127.0.0.1:1",
        "-u",
        "alice",
        cwd=tmp_path,
        env=cli_env(tmp_path),
        stdin="secret\n",
    )
    assert completed.returncode == 2, completed.stderr
    assert completed.stderr.strip() == (
        "dockerdrag: error: --username alice: no terminal to ask for the password on; "
        "pipe it in with --password-stdin"
    )


def test_password_stdin_without_username_is_a_usage_error(tmp_path: Path) -> None:
    completed = run_cli(
        "127.0.0.1:1/test/x",
        "--password-stdin",
        cwd=tmp_path,
        env=cli_env(tmp_path),
        stdin="secret\n",
    )
    assert completed.returncode == 2, completed.stderr
    assert completed.stderr.strip() == "dockerdrag: error: --password-stdin needs --username"
