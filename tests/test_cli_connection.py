"""Unreachable registries as the user sees them: what is retried, what the wait looks like,
and what the final message says.

A refused connection is a bound but not listening socket on 127.0.0.1. A name that
does not resolve is made so by the command's own resolver: the command runs with
``socket.getaddrinfo`` replaced by one that fails for every name but loopback's, so
no query ever leaves the machine.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pexpect
import pytest

from tests.support.command import cli_env, run_cli
from tests.support.fault_proxy import FaultProxy, status
from tests.support.images import push_image, text_layer
from tests.support.registry_server import RegistryServer
from tests.test_cli_progress import final_screen, spawn_in_terminal

# aiohttp's own texts that must never reach a user.
INTERNALS = ("ssl:", "object at 0x", "Traceback", "ClientConnectorError", "Cannot connect to host")


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A loopback port where a connection is refused (bound, never listening)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def retry_lines(text: str, port: int) -> list[str]:
    pattern = re.compile(
        rf"^Connecting to 127\.0\.0\.1:{port} \(retry (\d) of 4, in \d+\.\d s\): "
        r"connection refused \(nothing listens on that port\)$",
        re.MULTILINE,
    )
    return [m[1] for m in pattern.finditer(text)]


def test_refused_connection_is_retried_briefly_and_shown(closed_port: int, tmp_path: Path) -> None:
    image = f"127.0.0.1:{closed_port}/test/app:1"
    completed = run_cli(image, "-o", "a.tar", cwd=tmp_path)
    assert completed.returncode == 5, completed.stderr
    assert retry_lines(completed.stderr, closed_port) == ["1", "2", "3", "4"], completed.stderr
    last = completed.stderr.splitlines()[-1]
    assert last == (
        f"dockerdrag: error: cannot connect to 127.0.0.1:{closed_port} while fetching manifest "
        f"{image}: connection refused (nothing listens on that port) (tried 5 times)"
    ), last
    assert "info:" not in completed.stderr
    for text in INTERNALS:
        assert text not in completed.stderr
    assert not (tmp_path / "a.tar").exists()


def test_verbose_logs_each_retry(closed_port: int, tmp_path: Path) -> None:
    image = f"127.0.0.1:{closed_port}/test/app:1"
    completed = run_cli(image, "-v", cwd=tmp_path)
    assert completed.returncode == 5
    logged = re.findall(
        rf"^dockerdrag: info: manifest {re.escape(image)} on 127\.0\.0\.1:{closed_port}: "
        r"connection refused \(nothing listens on that port\); retry (\d) of 4 in \d+\.\d s$",
        completed.stderr,
        re.MULTILINE,
    )
    assert logged == ["1", "2", "3", "4"], completed.stderr


def test_retries_are_json_events(closed_port: int, tmp_path: Path) -> None:
    completed = run_cli(f"127.0.0.1:{closed_port}/test/app:1", "--json", cwd=tmp_path)
    assert completed.returncode == 5
    events = [json.loads(line) for line in completed.stdout.splitlines()]
    retries = [e for e in events if e["event"] == "retry"]
    assert [(e["retry"], e["retries"], e["host"], e["port"]) for e in retries] == [
        (n, 4, "127.0.0.1", closed_port) for n in (1, 2, 3, 4)
    ]
    assert all(0 <= e["delay"] <= 1.0 for e in retries), retries
    assert events[-1]["event"] == "error" and events[-1]["exit_code"] == 5


def test_terminal_shows_the_wait(closed_port: int, tmp_path: Path) -> None:
    child = spawn_in_terminal(f"127.0.0.1:{closed_port}/test/app:1", cwd=tmp_path)
    child.expect(pexpect.EOF)
    output: str = child.before
    child.close()
    assert child.exitstatus == 5, output
    screen = "\n".join(final_screen(output))
    assert f"Connecting to 127.0.0.1:{closed_port} (retry 2 of 4, in " in screen, screen
    assert retry_lines(screen, closed_port) == ["1", "2", "3", "4"], screen
    for text in INTERNALS:
        assert text not in output


def test_an_answer_asking_for_a_retry_is_shown(registry: RegistryServer, tmp_path: Path) -> None:
    pushed = push_image(registry, "test/busy", "v1", [text_layer("b.txt", "b\n")])
    with FaultProxy(registry.url) as proxy:
        proxy.add(status(503, retry_after=0), path="/manifests/", times=2)
        image = f"{proxy.host}/{pushed.repo}:{pushed.tag}"
        completed = run_cli(image, "--insecure", proxy.host, "-o", "b.tar", cwd=tmp_path)
        where = proxy.host
    assert completed.returncode == 0, completed.stderr
    shown = [line for line in completed.stderr.splitlines() if "answered HTTP" in line]
    assert shown == [
        f"{where} answered HTTP 503 for manifest {image} (retry {n} of 4, in 0.0 s)" for n in (1, 2)
    ], completed.stderr


# The command, with a resolver that knows only loopback and counts the names it was asked.
_NO_DNS = """\
import socket, sys
LOG = sys.argv.pop(1)
real = socket.getaddrinfo
def fake(host, *args, **kwargs):
    with open(LOG, "a") as log:
        log.write(f"{host}\\n")
    if host not in ("127.0.0.1", "::1", "localhost"):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    return real(host, *args, **kwargs)
socket.getaddrinfo = fake
from dockerdrag.cli import main
sys.exit(main())
"""


def test_unresolvable_name_fails_at_once_in_plain_words(tmp_path: Path) -> None:
    asked = tmp_path / "asked.log"
    completed = subprocess.run(
        [sys.executable, "-c", _NO_DNS, str(asked), "registry.invalid:5000/test/app:1", "-v"],
        cwd=tmp_path,
        env=cli_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert completed.returncode == 5, completed.stderr
    assert completed.stderr.splitlines() == [
        "dockerdrag: error: cannot connect to registry.invalid:5000 while fetching manifest "
        "registry.invalid:5000/test/app:1: the host name does not resolve (Name or service not "
        "known); check the name and the network"
    ]
    assert asked.read_text().splitlines() == ["registry.invalid"]
