"""The command's lighter start-up (dockerdrag.startup) keeps TLS verification intact.

aiohttp is imported there with CA loading skipped, so its own default contexts
trust nothing; dockerdrag's per-host contexts still load the system CAs. These
tests run the real command against the HTTPS test registry, trusting its CA only
through the system default (``SSL_CERT_FILE``), as a user's CA store would.
"""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import trustme

from dockerdrag.startup import _skipped_in_this_thread
from tests.support.archive_check import read_docker_archive
from tests.support.command import run_cli
from tests.support.images import PushedImage, push_image, text_layer
from tests.support.registry_server import RegistryServer

ROOT = Path(__file__).resolve().parent.parent

_PUSHED: dict[str, PushedImage] = {}


def tls_image(server: RegistryServer) -> PushedImage:
    if server.url not in _PUSHED:
        _PUSHED[server.url] = push_image(
            server, "test/startup", "v1", [text_layer("s.txt", "start\n")]
        )
    return _PUSHED[server.url]


def command_env(tmp_path: Path, ca_file: Path | None) -> dict[str, str]:
    """This environment without dockerdrag's or OpenSSL's settings, ``ca_file`` (if any)
    as OpenSSL's CA file, and the Docker config and cache under ``tmp_path``."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("DOCKERDRAG_", "SSL_CERT"))},
        "DOCKER_CONFIG": str(tmp_path / "no-docker-config"),
        "XDG_CACHE_HOME": str(tmp_path / "xdg-cache"),
        "PYTHONPATH": str(ROOT),
    }
    if ca_file is not None:
        env["SSL_CERT_FILE"] = str(ca_file)
    return env


def command(
    args: list[str], tmp_path: Path, ca_file: Path | None
) -> subprocess.CompletedProcess[str]:
    return run_cli(*args, cwd=tmp_path, env=command_env(tmp_path, ca_file))


def test_the_command_verifies_tls_with_the_system_trust_store(
    tls_registry: RegistryServer, tmp_path: Path
) -> None:
    image = tls_image(tls_registry)
    completed = command(
        ["pull", image.reference, "-o", "x.tar", "-q"], tmp_path, tls_registry.ca_pem_path
    )
    assert completed.returncode == 0, completed.stderr
    (archived,) = read_docker_archive(tmp_path / "x.tar")
    assert archived.config == image.config


def test_the_command_refuses_a_registry_no_trusted_ca_signed(
    tls_registry: RegistryServer, tmp_path: Path
) -> None:
    image = tls_image(tls_registry)
    completed = command(["pull", image.reference, "-o", "x.tar", "-q"], tmp_path, None)
    assert completed.returncode == 5, completed.stderr
    assert "certificate" in completed.stderr.lower()
    assert "Traceback" not in completed.stderr
    assert not (tmp_path / "x.tar").exists()


PROBE = """\
import json, ssl, sys
import dockerdrag
cheap = "aiohttp" not in sys.modules
from dockerdrag.startup import _import_aiohttp_without_ca_loading
_import_aiohttp_without_ca_loading()
import aiohttp.connector as connector
print(json.dumps({
    "cheap_package_import": cheap,
    "aiohttp_verified_cas": connector._SSL_CONTEXT_VERIFIED.cert_store_stats()["x509_ca"],
    "aiohttp_verifies": connector._SSL_CONTEXT_VERIFIED.verify_mode == ssl.CERT_REQUIRED,
    "later_default_cas": ssl.create_default_context().cert_store_stats()["x509_ca"],
    "method_restored": "set_default_verify_paths" not in vars(ssl.SSLContext),
}))
"""


def test_aiohttp_defaults_trust_nothing_and_later_contexts_load_the_system_cas(
    tls_registry: RegistryServer, tmp_path: Path
) -> None:
    env = {**os.environ, "SSL_CERT_FILE": str(tls_registry.ca_pem_path), "PYTHONPATH": str(ROOT)}
    completed = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=60
    )
    assert completed.returncode == 0, completed.stderr
    report = json.loads(completed.stdout)
    assert report == {
        "cheap_package_import": True,
        "aiohttp_verified_cas": 0,  # fails closed: verifies, against no CA at all
        "aiohttp_verifies": True,
        "later_default_cas": 1,  # the test CA, through SSL_CERT_FILE
        "method_restored": True,
    }


def test_only_the_thread_importing_aiohttp_skips_the_system_cas(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CA preloading thread builds its context while aiohttp is imported: only the
    importing thread's contexts (aiohttp's own) are left without the system CAs."""
    ca_file = tmp_path / "ca.pem"
    trustme.CA().cert_pem.write_to_path(str(ca_file))
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))
    load = ssl.SSLContext.set_default_verify_paths
    monkeypatch.setattr(ssl.SSLContext, "set_default_verify_paths", _skipped_in_this_thread(load))
    trusted: dict[str, int] = {}

    def count(thread: str) -> None:
        trusted[thread] = ssl.create_default_context().cert_store_stats()["x509_ca"]

    count("importing")
    other = threading.Thread(target=count, args=("preloading",))
    other.start()
    other.join()
    assert trusted == {"importing": 0, "preloading": 1}


# Runs the command (``run_command``, as ``python -m dockerdrag`` does) with the arguments
# after argv[2], recording into the file argv[1] the thread that built each verifying
# context and the module of the event loop the command ran on. With argv[2] "no-uvloop",
# uvloop cannot be imported (as where it has no build); "-" changes nothing.
COMMAND_PROBE = """\
import asyncio, json, sys, threading
if sys.argv[2] == "no-uvloop":
    sys.modules["uvloop"] = None  # import uvloop raises ImportError
import anyio
import dockerdrag.ca_preload as ca_preload
import dockerdrag.conventions as conventions
built = []
loops = []
real = conventions.trusting_context
def recording():
    built.append(threading.current_thread().name)
    return real()
ca_preload.trusting_context = recording
conventions.trusting_context = recording  # tls_proxy, imported by the command, binds it
real_run = anyio.run
def run(func, *args, **options):
    async def noting_the_loop(*inner):
        loops.append(type(asyncio.get_running_loop()).__module__)
        return await func(*inner)
    return real_run(noting_the_loop, *args, **options)
anyio.run = run
from dockerdrag.startup import run_command
report = sys.argv[1]
sys.argv = ["dockerdrag", *sys.argv[3:]]
try:
    code = run_command()
finally:
    with open(report, "w") as out:
        json.dump({"contexts": built, "loops": loops}, out)
sys.exit(code)
"""


def asyncio_loop_module() -> str:
    """The module of asyncio's own event loop on this system."""
    loop = asyncio.new_event_loop()
    try:
        return type(loop).__module__
    finally:
        loop.close()


def run_probed(
    args: list[str], tmp_path: Path, ca_file: Path | None = None, *, uvloop: bool = True
) -> tuple[list[str], list[str]]:
    """The threads that built a verifying context while the command ran ``args``, and the
    modules of the event loops it ran on."""
    report = tmp_path / "probe.json"
    env = command_env(tmp_path, ca_file)
    completed = subprocess.run(
        [sys.executable, "-c", COMMAND_PROBE, str(report), "-" if uvloop else "no-uvloop", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr
    probed = json.loads(report.read_text())
    contexts: list[str] = probed["contexts"]
    loops: list[str] = probed["loops"]
    return contexts, loops


def test_the_system_cas_are_loaded_while_the_command_imports(
    tls_registry: RegistryServer, tmp_path: Path
) -> None:
    """A pull from a verified registry uses the context the start-up built in its
    preloading thread, and builds no other; the CA it trusts came from SSL_CERT_FILE."""
    image = tls_image(tls_registry)
    args = ["pull", image.reference, "-o", "x.tar", "-q"]
    contexts, loops = run_probed(args, tmp_path, tls_registry.ca_pem_path)
    assert contexts == ["dockerdrag-ca-preload"]
    # A pull over verified TLS runs on asyncio's loop, whose TLS layer holds less.
    assert loops == [asyncio_loop_module()]
    (archived,) = read_docker_archive(tmp_path / "x.tar")
    assert archived.config == image.config


def test_a_pull_from_a_registry_named_insecure_loads_no_cas(
    registry: RegistryServer, tmp_path: Path
) -> None:
    image = tls_image(registry)
    args = ["pull", image.reference, "--insecure", registry.host, "-o", "x.tar", "-q"]
    contexts, loops = run_probed(args, tmp_path)
    assert contexts == []
    assert loops == ["uvloop"]  # a dependency wherever it has a build, as here
    (archived,) = read_docker_archive(tmp_path / "x.tar")
    assert archived.config == image.config


def test_without_uvloop_the_command_runs_on_asyncio(
    registry: RegistryServer, tmp_path: Path
) -> None:
    """Where uvloop cannot be imported (Windows has no build), a plain-HTTP pull runs on
    asyncio's own loop and writes the same archive."""
    image = tls_image(registry)
    args = ["pull", image.reference, "--insecure", registry.host, "-o", "x.tar", "-q"]
    _contexts, loops = run_probed(args, tmp_path, uvloop=False)
    assert loops == [asyncio_loop_module()]
    (archived,) = read_docker_archive(tmp_path / "x.tar")
    assert archived.config == image.config
