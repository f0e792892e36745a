"""The machine a benchmark ran on and the versions of what it ran, for the report."""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from tests.support.dockerd import DockerDaemon

from . import BENCH_DIR, REPO_ROOT, daemon


def first_line(argv: Sequence[str]) -> str:
    try:
        result = subprocess.run(
            list(argv), capture_output=True, text=True, timeout=30, check=False, cwd=REPO_ROOT
        )
    except OSError:
        return "not installed"
    lines = (result.stdout or result.stderr).strip().splitlines()
    return lines[0].strip() if lines else "unknown"


def load_average() -> str:
    return " / ".join(f"{x:.2f}" for x in os.getloadavg())


def machine_info(load_at_start: str) -> list[tuple[str, str]]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    ram = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    distro = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                distro = line.split("=", 1)[1].strip('"')
    disk = shutil.disk_usage(BENCH_DIR)
    return [
        ("CPU", cpu),
        ("cores", str(os.cpu_count())),
        ("RAM", ram),
        ("kernel", platform.release()),
        ("OS", distro),
        ("disk (work dir)", f"{disk.free / 1e9:.0f} GB free of {disk.total / 1e9:.0f} GB"),
        ("load average 1/5/15 min, at start", load_at_start),
        ("load average 1/5/15 min, at end", load_average()),
    ]


def versions(docker_daemon: DockerDaemon | None) -> list[tuple[str, str]]:
    import isal

    rev = first_line(["git", "-C", str(REPO_ROOT), "rev-parse", "--short", "HEAD"])
    dirty = first_line(["git", "-C", str(REPO_ROOT), "status", "--porcelain", "dockerdrag"])
    if dirty not in ("unknown", "not installed"):
        rev += " + uncommitted changes in dockerdrag/"
    docker = "not run (pass --with-docker)"
    if docker_daemon is not None:
        docker = (
            f"dockerd {daemon.server_version(docker_daemon)}, "
            f"storage driver {daemon.storage_driver(docker_daemon)}"
        )
    return [
        ("python", platform.python_version()),
        ("dockerdrag", f"{first_line([sys.executable, '-m', 'dockerdrag', '--version'])} ({rev})"),
        ("skopeo", first_line(["skopeo", "--version"])),
        ("docker", docker),
        ("registry", first_line(["docker-registry", "--version"])),
        ("curl", first_line(["curl", "--version"])),
        ("isal (python-isal)", isal.__version__),
    ]
