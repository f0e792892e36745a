"""A private Docker daemon (Debian's dockerd 20.10) for load / run / pull / save tests.

It runs as root next to anything else on the machine without touching it: its own
data root, exec root, unix socket and pidfile in a fresh directory under /tmp
(short paths: unix socket names are limited to 108 bytes), no bridge, no iptables,
the vfs storage driver (no overlay mounts needed), ``TZ=UTC`` (docker save writes
lower-layer timestamps in the daemon's time zone). dockerd starts its own
containerd (``/usr/bin/containerd``) and uses ``runc``.

Containers must use ``--network none`` (there is no bridge). Docker treats
127.0.0.0/8 registries as insecure (HTTPS without verification, else HTTP), so
``docker pull 127.0.0.1:PORT/...`` works against every test registry mode; for
Basic or token auth call :meth:`DockerDaemon.login` first.

Stopping: SIGTERM, then SIGKILL to the process group and any descendants left
(containerd, shims), then unmount whatever is still mounted below the directory,
then delete it.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from . import parent_death_signal, require_binary, stop_process

DOCKERD_BINARY = "/usr/sbin/dockerd"
DOCKER_CLI = "/usr/bin/docker"  # the 20.10 client from docker.io, matching the daemon
_MNT_DETACH = 2


class DockerDaemon:
    """A running dockerd; :meth:`docker` runs the matching CLI against it."""

    def __init__(self, directory: Path, process: subprocess.Popen[bytes], cli: str) -> None:
        self.directory = directory
        self.process = process
        self.cli = cli
        self.socket = directory / "docker.sock"
        self.host = f"unix://{self.socket}"
        self.log_path = directory / "dockerd.log"
        self._env = {
            "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": str(directory),
            "DOCKER_CONFIG": str(directory / "cli-config"),
            "DOCKER_HOST": self.host,
            "TZ": "UTC",
        }

    # -- the CLI -----------------------------------------------------------------------

    def docker(
        self,
        *args: str,
        check: bool = True,
        input: bytes | str | None = None,
        timeout: float = 180,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``docker -H unix://... ARGS``; text output; raises with stderr on failure."""
        result = subprocess.run(
            [self.cli, "-H", self.host, *args],
            input=input.decode() if isinstance(input, bytes) else input,
            capture_output=True,
            text=True,
            env=self._env,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"docker {' '.join(args)} failed with {result.returncode}:\n"
                f"stdout: {result.stdout}\nstderr: {result.stderr}"
            )
        return result

    def load(self, archive: Path | str) -> list[str]:
        """``docker load -i``; returns what it loaded (refs, or ``sha256:`` IDs)."""
        out = self.docker("load", "-i", str(archive)).stdout
        loaded = []
        for line in out.splitlines():
            for prefix in ("Loaded image: ", "Loaded image ID: "):
                if line.startswith(prefix):
                    loaded.append(line[len(prefix) :].strip())
        return loaded

    def run(self, image: str, *command: str) -> str:
        """``docker run --rm --network none IMAGE COMMAND...``; returns stdout."""
        return self.docker("run", "--rm", "--network", "none", image, *command).stdout

    def login(self, host: str, username: str, password: str) -> None:
        """``docker login`` (credentials land in this daemon's private CLI config)."""
        self.docker("login", "--username", username, "--password-stdin", host, input=password)

    def pull(self, reference: str) -> None:
        self.docker("pull", "--quiet", reference)

    def save(self, output: Path | str, *references: str) -> Path:
        self.docker("save", "-o", str(output), *references)
        return Path(output)

    def image_id(self, reference: str) -> str:
        """The ``sha256:...`` image ID (= config digest)."""
        return self.docker("image", "inspect", "--format", "{{.Id}}", reference).stdout.strip()

    def image_ids(self) -> list[str]:
        return self.docker("images", "--all", "--quiet", "--no-trunc").stdout.split()

    def remove_all_images(self) -> None:
        """Forget every container and image, so a following load reads every layer."""
        containers = self.docker("ps", "--all", "--quiet").stdout.split()
        if containers:
            self.docker("rm", "--force", *containers)
        images = sorted(set(self.image_ids()))
        if images:
            self.docker("rmi", "--force", *images)

    def ping(self) -> bool:
        return self.docker("version", check=False, timeout=10).returncode == 0

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    # -- lifecycle ---------------------------------------------------------------------

    def stop(self) -> None:
        descendants = _descendants(self.process.pid)
        stop_process(self.process, timeout=20, group=True)
        for pid in descendants:  # containerd and shims may have left the group
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        _unmount_below(self.directory)
        shutil.rmtree(self.directory, ignore_errors=True)


def write_minimal_archive(
    path: Path, config: bytes, layer_tars: list[bytes], repo_tags: list[str] | None = None
) -> Path:
    """The smallest archive ``docker load`` accepts: manifest.json, config, layer tars."""
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    members = [(config_name, config)]
    layer_names = []
    for i, tar in enumerate(layer_tars):
        layer_names.append(f"layer{i}/layer.tar")
        members.append((layer_names[-1], tar))
    manifest = [{"Config": config_name, "RepoTags": repo_tags, "Layers": layer_names}]
    members.append(("manifest.json", json.dumps(manifest).encode()))
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as archive:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def start_dockerd(*, startup_timeout: float = 60.0) -> DockerDaemon:
    """Start a private dockerd and wait until it answers ``docker version``."""
    dockerd = require_binary(DOCKERD_BINARY, "docker.io")
    cli = require_binary(DOCKER_CLI, "docker.io")
    for binary, package in (("/usr/bin/containerd", "containerd"), ("/usr/sbin/runc", "runc")):
        require_binary(binary, package)
    directory = Path(tempfile.mkdtemp(prefix="dockerd-", dir="/tmp"))
    (directory / "cli-config").mkdir()
    log = open(directory / "dockerd.log", "wb")  # noqa: SIM115 - handed to the process
    args = [
        dockerd,
        "--data-root",
        str(directory / "data"),
        "--exec-root",
        str(directory / "exec"),
        "--pidfile",
        str(directory / "docker.pid"),
        "-H",
        f"unix://{directory / 'docker.sock'}",
        "--storage-driver=vfs",
        "--bridge=none",
        "--iptables=false",
        "--ip6tables=false",
        "--ip-forward=false",
        "--ip-masq=false",
        "--userland-proxy=false",
        "--log-level=warn",
        "--config-file",
        str(directory / "daemon.json"),
    ]
    (directory / "daemon.json").write_text("{}\n")
    env = {
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": str(directory),
        "TZ": "UTC",
    }
    try:
        process = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=directory,
            start_new_session=True,
            preexec_fn=parent_death_signal(signal.SIGTERM),
        )
    finally:
        log.close()
    daemon = DockerDaemon(directory, process, cli)
    try:
        _wait_ready(daemon, startup_timeout)
    except BaseException:
        daemon.stop()
        raise
    return daemon


def _wait_ready(daemon: DockerDaemon, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if daemon.process.poll() is not None:
            raise RuntimeError(
                f"dockerd exited with {daemon.process.returncode}:\n{daemon.log_text()}"
            )
        if daemon.socket.exists() and daemon.ping():
            return
        time.sleep(0.05)
    raise RuntimeError(f"dockerd did not become ready in {timeout} s:\n{daemon.log_text()}")


@contextlib.contextmanager
def running_dockerd() -> Iterator[DockerDaemon]:
    daemon = start_dockerd()
    try:
        yield daemon
    finally:
        daemon.stop()


def _descendants(root: int) -> list[int]:
    """PIDs of every live descendant of ``root`` (read from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may contain spaces and parentheses.
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    found: list[int] = []
    stack = [root]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


def _unmount_below(directory: Path) -> None:
    """Lazily unmount every mount point at or below ``directory``, deepest first."""
    prefix = str(directory)
    points = []
    with open("/proc/self/mountinfo") as mountinfo:
        for line in mountinfo:
            point = line.split()[4].encode().decode("unicode_escape")
            if point == prefix or point.startswith(prefix + "/"):
                points.append(point)
    libc = ctypes.CDLL(None, use_errno=True)
    for point in sorted(points, key=len, reverse=True):
        libc.umount2(point.encode(), _MNT_DETACH)
