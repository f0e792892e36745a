"""Outputs and the cache follow the umask, as files ``open()`` creates would; an
existing output that is replaced never becomes more permissive than it was."""

from __future__ import annotations

import os
import stat
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.support.command import cli_command, cli_env
from tests.support.registry_server import RegistryServer

SeededRegistry = tuple[RegistryServer, dict[str, Any]]


def _pull(args: list[str], cwd: Path, umask: int) -> None:
    def set_umask() -> None:
        os.umask(umask)

    env = cli_env(cwd, XDG_CACHE_HOME=str(cwd / "xdg"))
    completed = subprocess.run(
        cli_command(*args, "-q"),
        cwd=cwd,
        env=env,
        preexec_fn=set_umask,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _modes(root: Path, keep: Callable[[Path], bool]) -> set[int]:
    return {_mode(p) for p in [root, *root.rglob("*")] if keep(p)}


@pytest.mark.parametrize(
    ("umask", "file_mode", "dir_mode"), [(0o077, 0o600, 0o700), (0o022, 0o644, 0o755)]
)
def test_new_outputs_and_the_cache_follow_the_umask(
    seeded_registry: SeededRegistry, tmp_path: Path, umask: int, file_mode: int, dir_mode: int
) -> None:
    server, images = seeded_registry
    reference = images["busybox"].reference
    for output, output_format in (("a.tar", "docker"), ("b.tar", "oci"), ("dir", "oci-dir")):
        _pull(
            [reference, "--insecure", server.host, "-o", output, "--format", output_format],
            tmp_path,
            umask,
        )
    assert _mode(tmp_path / "a.tar") == file_mode
    assert _mode(tmp_path / "b.tar") == file_mode
    assert _modes(tmp_path / "dir", Path.is_file) == {file_mode}
    assert _modes(tmp_path / "dir", Path.is_dir) == {dir_mode}
    cache = tmp_path / "xdg" / "dockerdrag"
    assert _modes(cache, Path.is_file) == {file_mode}
    assert _modes(cache, Path.is_dir) == {dir_mode}


@pytest.mark.parametrize("output_format", ["docker", "oci"])
def test_a_replaced_private_output_stays_private(
    seeded_registry: SeededRegistry, tmp_path: Path, output_format: str
) -> None:
    server, images = seeded_registry
    output = tmp_path / "private.tar"
    output.write_bytes(b"old")
    output.chmod(0o600)
    _pull(
        [
            images["busybox"].reference,
            "--insecure",
            server.host,
            "-o",
            output.name,
            "--format",
            output_format,
        ],
        tmp_path,
        0o022,
    )
    assert _mode(output) == 0o600
    assert output.stat().st_size > 3


def test_a_replaced_output_is_no_more_permissive_than_the_umask(
    seeded_registry: SeededRegistry, tmp_path: Path
) -> None:
    server, images = seeded_registry
    output = tmp_path / "open.tar"
    output.write_bytes(b"old")
    output.chmod(0o666)
    _pull(
        [images["busybox"].reference, "--insecure", server.host, "-o", output.name], tmp_path, 0o077
    )
    assert _mode(output) == 0o600
