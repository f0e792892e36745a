"""A private dockerd for the ``docker pull`` + ``docker save`` contender.

Reuses :mod:`tests.support.dockerd` (its :class:`DockerDaemon`, readiness wait and
teardown) but chooses the storage driver: the test helper's ``vfs`` copies every lower
layer for each new one, which would make docker look far slower than a real install;
``overlay2`` (the default everywhere Docker runs) is used when the kernel has it.
Docker treats 127.0.0.0/8 registries as insecure by default, so neither the registry
nor the shaping proxy needs ``--insecure-registry``.
"""

from __future__ import annotations

import signal
import subprocess
import tempfile
from pathlib import Path

from tests.support import parent_death_signal, require_binary
from tests.support.dockerd import (
    DOCKER_CLI,
    DOCKERD_BINARY,
    DockerDaemon,
    _wait_ready,
)


def start_dockerd(storage_driver: str = "overlay2", *, timeout: float = 60.0) -> DockerDaemon:
    """Start a private daemon (own data root, socket and containerd) and wait for it."""
    dockerd = require_binary(DOCKERD_BINARY, "docker.io")
    cli = require_binary(DOCKER_CLI, "docker.io")
    directory = Path(tempfile.mkdtemp(prefix="bench-dockerd-", dir="/tmp"))
    (directory / "cli-config").mkdir()
    (directory / "daemon.json").write_text("{}\n")
    args = [
        dockerd,
        f"--data-root={directory / 'data'}",
        f"--exec-root={directory / 'exec'}",
        f"--pidfile={directory / 'docker.pid'}",
        f"--host=unix://{directory / 'docker.sock'}",
        f"--storage-driver={storage_driver}",
        f"--config-file={directory / 'daemon.json'}",
        "--bridge=none",
        "--iptables=false",
        "--ip6tables=false",
        "--ip-forward=false",
        "--ip-masq=false",
        "--userland-proxy=false",
        "--log-level=warn",
    ]
    env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TZ": "UTC"}
    with open(directory / "dockerd.log", "wb") as log:
        process = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**env, "HOME": str(directory)},
            cwd=directory,
            start_new_session=True,
            preexec_fn=parent_death_signal(signal.SIGTERM),
        )
    daemon = DockerDaemon(directory, process, cli)
    try:
        _wait_ready(daemon, timeout)
    except BaseException:
        daemon.stop()
        raise
    return daemon


def server_version(daemon: DockerDaemon) -> str:
    result = daemon.docker("version", "--format", "{{.Server.Version}}", check=False)
    return result.stdout.strip() or "unknown"


def storage_driver(daemon: DockerDaemon) -> str:
    result = daemon.docker("info", "--format", "{{.Driver}}", check=False)
    return result.stdout.strip() or "unknown"
