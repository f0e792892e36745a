"""A private containerd (Debian's 1.6, which docker.io brings) for ``ctr images import``.

It runs beside anything else on the machine without touching it: its own root,
state directory and sockets in a fresh directory under /tmp (short paths: unix socket
names are limited to 108 bytes), the CRI plugin off, the images in a namespace of
their own (or one per test).
Only the content store and image service are used (imports with ``--no-unpack``), so
no snapshotter mounts anything.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from . import parent_death_signal, require_binary, stop_process

CONTAINERD_BINARY = "/usr/bin/containerd"
CTR_BINARY = "/usr/bin/ctr"
NAMESPACE = "dockerdrag-test"


class Containerd:
    """A running containerd; :meth:`ctr` runs the ctr client against it."""

    def __init__(self, directory: Path, process: subprocess.Popen[bytes], ctr: str) -> None:
        self.directory = directory
        self.process = process
        self.socket = directory / "containerd.sock"
        self._ctr = ctr

    def ctr(
        self, *args: str, namespace: str = NAMESPACE, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """``ctr --address SOCKET --namespace NAMESPACE ARGS``; output captured, not checked.

        Content and images are per namespace: a test that must not see another's
        content uses a namespace of its own."""
        return subprocess.run(
            [self._ctr, "--address", str(self.socket), "--namespace", namespace, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def stop(self) -> None:
        stop_process(self.process, group=True)
        shutil.rmtree(self.directory, ignore_errors=True)


_CONFIG = """\
version = 2
root = "{root}"
state = "{state}"
disabled_plugins = ["io.containerd.grpc.v1.cri"]

[grpc]
  address = "{socket}"

[ttrpc]
  address = "{socket}.ttrpc"

[debug]
  address = ""
"""


def start_containerd(*, startup_timeout: float = 60.0) -> Containerd:
    """Start a private containerd and wait until ``ctr version`` answers."""
    binary = require_binary(CONTAINERD_BINARY, "containerd")
    ctr = require_binary(CTR_BINARY, "containerd")
    directory = Path(tempfile.mkdtemp(prefix="ctrd-", dir="/tmp"))
    config = directory / "config.toml"
    config.write_text(
        _CONFIG.format(
            root=directory / "root", state=directory / "state", socket=directory / "containerd.sock"
        )
    )
    with open(directory / "containerd.log", "wb") as log:
        process = subprocess.Popen(
            [binary, "--config", str(config), "--log-level", "warn"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=directory,
            start_new_session=True,
            preexec_fn=parent_death_signal(signal.SIGTERM),
        )
    daemon = Containerd(directory, process, ctr)
    deadline = time.monotonic() + startup_timeout
    while daemon.ctr("version", timeout=10).returncode != 0:
        if process.poll() is not None or time.monotonic() > deadline:
            log_text = (directory / "containerd.log").read_text(errors="replace")
            daemon.stop()
            raise RuntimeError(f"containerd did not start:\n{log_text}")
        time.sleep(0.1)
    return daemon
