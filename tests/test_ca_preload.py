"""The command's first verifying TLS context, built in a thread while it starts
(dockerdrag.ca_preload), and the command lines that start it (dockerdrag.startup)."""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from dockerdrag import ca_preload, startup
from dockerdrag.ca_preload import PreloadedContext
from dockerdrag.tls_proxy import TLSSettings

ROOT = Path(__file__).resolve().parent.parent


def recording_builds(
    monkeypatch: pytest.MonkeyPatch, fail: bool = False
) -> list[tuple[str, ssl.SSLContext]]:
    """Make ca_preload's builds record their thread and context (or raise, with ``fail``)."""
    builds: list[tuple[str, ssl.SSLContext]] = []

    def build() -> ssl.SSLContext:
        if fail:
            raise ssl.SSLError("no CA bundle")
        context = ssl.create_default_context()
        builds.append((threading.current_thread().name, context))
        return context

    monkeypatch.setattr(ca_preload, "trusting_context", build)
    return builds


def test_the_context_is_built_in_a_thread_and_handed_out_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    builds = recording_builds(monkeypatch)
    preloaded = PreloadedContext()
    assert preloaded.take() is None  # never started
    preloaded.start()
    preloaded.start()  # once
    context = preloaded.take()
    assert builds == [("dockerdrag-ca-preload", context)]
    assert context is not None and context.verify_mode == ssl.CERT_REQUIRED
    assert preloaded.take() is None
    preloaded.start()  # taken: not built again
    assert preloaded.take() is None
    assert len(builds) == 1


def test_a_failed_build_hands_out_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    recording_builds(monkeypatch, fail=True)
    preloaded = PreloadedContext()
    preloaded.start()
    assert preloaded.take() is None


def test_the_first_verifying_context_is_the_preloaded_one(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """TLSSettings takes the preloaded context for its first context and builds the
    next one itself."""
    builds = recording_builds(monkeypatch)
    preloaded = PreloadedContext()
    monkeypatch.setattr(ca_preload, "_PRELOADED", preloaded)
    preloaded.start()
    certs_d = tmp_path / "certs.d"
    (certs_d / "other.example:5000").mkdir(parents=True)
    settings = TLSSettings(frozenset(), None, (certs_d,))
    first = settings.default_context()
    assert builds == [("dockerdrag-ca-preload", first)]
    assert ca_preload.take_loaded() is None  # it was taken
    second = settings.for_host("other.example:5000")  # certs.d: a context of its own
    assert isinstance(second, ssl.SSLContext)
    assert second is not first


@pytest.mark.parametrize(
    ("arguments", "environ", "preload"),
    [
        (["pull", "alpine"], {}, True),
        (["alpine", "--platform", "linux/amd64"], {}, True),
        (["pull", "r.example:5000/a", "--ca-cert", "ca.pem"], {}, True),
        (["inspect", "alpine"], {}, True),
        (["push", "a.tar", "r.example/team"], {}, True),
        (["pull", "localhost:5000/a", "--insecure", "localhost:5000"], {}, False),
        (["pull", "localhost:5000/a", "--insecure=localhost:5000"], {}, False),
        (["pull", "localhost:5000/a"], {"DOCKERDRAG_INSECURE_REGISTRIES": "localhost:5000"}, False),
        (["verify", "a.tar"], {}, False),
        (["cache", "prune"], {}, False),
        (["help", "pull"], {}, False),
        (["pull", "--help"], {}, False),
        (["--version"], {}, False),
    ],
)
def test_the_command_lines_that_preload(
    arguments: list[str], environ: dict[str, str], preload: bool
) -> None:
    assert startup._may_verify_tls(arguments, environ) is preload


EXITING_AT_ONCE = """\
import sys, time
from pathlib import Path
import dockerdrag.ca_preload as ca_preload
def slow_build():
    time.sleep(0.3)
    Path(sys.argv[1]).write_text("built")
    raise OSError("no bundle")
ca_preload.trusting_context = slow_build
ca_preload.start_loading()
sys.exit(2)  # as a usage error does, at once
"""


def test_the_process_ends_only_once_the_load_has(tmp_path: Path) -> None:
    """A command that ends at once (a usage error) waits for the loading thread: the
    interpreter never shuts down while OpenSSL still reads the bundle in it."""
    marker = tmp_path / "built"
    completed = subprocess.run(
        [sys.executable, "-c", EXITING_AT_ONCE, str(marker)],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert completed.returncode == 2, completed.stderr
    assert marker.read_text() == "built"
