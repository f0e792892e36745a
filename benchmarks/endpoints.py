"""What the contenders talk to: each registry mode, and a shaping proxy per shaped link.

:func:`start_endpoints` starts the TLS + token registry where asked (the plain one is
started by the harness, which pushes the images to it) and one
``python -m benchmarks.shaper`` process per registry mode and shaped link.
"""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from tests.support import parent_death_signal, stop_process
from tests.support.registry_server import RegistryServer

from . import REPO_ROOT
from .links import LinkProfile
from .registries import PLAIN, Access, start_tls_token


class ShaperProcess:
    """``python -m benchmarks.shaper`` in front of the registry; counts connections."""

    def __init__(self, upstream: str, link: LinkProfile, log_path: Path) -> None:
        self.log_path = log_path
        argv = [sys.executable, "-m", "benchmarks.shaper", "--upstream", upstream]
        argv += ["--rtt-ms", str(link.rtt_ms), "--rate-mbps", str(link.rate_mbps)]
        with open(log_path, "wb") as log:
            self.process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=log,
                cwd=REPO_ROOT,
                preexec_fn=parent_death_signal(signal.SIGTERM),
            )
        assert self.process.stdout is not None
        line = self.process.stdout.readline().decode()
        if not line.startswith("listening on "):
            self.stop()
            raise RuntimeError(f"shaper did not start: {line!r} {log_path.read_text()}")
        self.host = line.split()[-1]

    def connections_opened(self) -> int:
        text = self.log_path.read_text(errors="replace")
        return sum(1 for line in text.splitlines() if line.startswith("open "))

    def stop(self) -> None:
        stop_process(self.process, timeout=5)
        if self.process.stdout is not None:
            self.process.stdout.close()


@dataclasses.dataclass
class Endpoint:
    """One registry mode as the contenders reach it: the registry, how, and its proxies."""

    registry: RegistryServer
    access: Access
    links: list[LinkProfile]  # the links this mode is measured over
    shapers: dict[str, ShaperProcess]  # link name -> the proxy in front of this registry

    def host(self, link: LinkProfile) -> str:
        return self.shapers[link.name].host if link.shaped else self.registry.host


def start_endpoints(
    stack: contextlib.ExitStack,
    plain: RegistryServer,
    modes: Sequence[str],
    links: Sequence[LinkProfile],
    tls_links: Sequence[str],
    cache_dir: Path,
    log_dir: Path,
    log: Callable[[str], None],
) -> list[Endpoint]:
    """Each registry mode (the TLS + token one on ``plain``'s storage, measured over the
    links named in ``tls_links`` only) with a shaping proxy in front of it for each of its
    shaped links; stopped when ``stack`` closes."""
    endpoints = []
    for mode in modes:
        registry, access = plain, PLAIN
        mode_links = list(links)
        if mode != PLAIN.mode:
            mode_links = [link for link in links if link.name in tls_links]
            shutil.rmtree(cache_dir / mode, ignore_errors=True)
            registry, access = start_tls_token(cache_dir / mode, plain)
            stack.callback(registry.stop)
            log(f"{access.title} registry on {registry.host}")
        shapers = {}
        for link in (link for link in mode_links if link.shaped):
            shaper = ShaperProcess(registry.host, link, log_dir / f"shaper-{mode}-{link.name}.log")
            stack.callback(shaper.stop)
            shapers[link.name] = shaper
            log(f"{link.name} proxy on {shaper.host} in front of the {mode} registry")
        endpoints.append(Endpoint(registry, access, mode_links, shapers))
    return endpoints
