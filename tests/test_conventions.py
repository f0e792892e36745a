"""Each OS's conventions (dockerdrag.conventions): cache, certs.d, trust store, proxies, names."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import platformdirs
import pytest
import truststore

from dockerdrag import Puller, TLSError, conventions, tls_proxy, transport
from dockerdrag.conventions import (
    certs_d_name,
    check_output_name,
    default_cache_dir,
    docker_certs_d_dirs,
    windows_name_problem,
)
from dockerdrag.errors import UsageError
from tests.support.images import PushedImage, push_image, text_layer
from tests.support.registry_server import RegistryServer

ROOT = Path(__file__).resolve().parent.parent

# -- the cache ----------------------------------------------------------------------------


@pytest.mark.parametrize("xdg", [None, "", "  ", "/tmp/xdg-cache"])
def test_the_linux_cache_is_where_platformdirs_puts_it(
    monkeypatch: pytest.MonkeyPatch, xdg: str | None
) -> None:
    if xdg is None:
        monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    else:
        monkeypatch.setenv("XDG_CACHE_HOME", xdg)
    expected = platformdirs.user_cache_path("dockerdrag", appauthor=False)
    assert default_cache_dir() == expected
    assert Puller(use_docker_config=False).store.root == expected


def test_the_macos_cache_is_in_library_caches(tmp_path: Path) -> None:
    code = (
        "import sys; sys.platform = 'darwin'\n"
        "from dockerdrag.conventions import default_cache_dir; print(default_cache_dir())"
    )
    env = {**os.environ, "HOME": str(tmp_path), "PYTHONPATH": str(ROOT)}
    shown = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert shown.stdout.strip() == str(tmp_path / "Library" / "Caches" / "dockerdrag")


# -- certs.d --------------------------------------------------------------------------------


def test_certs_d_directories_of_each_os(monkeypatch: pytest.MonkeyPatch) -> None:
    home = Path.home()
    environ = {"ProgramData": r"C:\ProgramData", "XDG_CONFIG_HOME": "/xdg"}
    assert docker_certs_d_dirs("linux", environ) == (
        Path("/etc/docker/certs.d"),
        Path("/xdg/docker/certs.d"),
    )
    assert docker_certs_d_dirs("darwin", environ)[0] == home / ".docker" / "certs.d"
    assert docker_certs_d_dirs("win32", environ) == (
        Path(r"C:\ProgramData") / "docker" / "certs.d",
        home / ".docker" / "certs.d",
    )
    assert certs_d_name("reg.example:5000", "linux") == "reg.example:5000"
    assert certs_d_name("reg.example:5000", "win32") == "reg.example5000"  # as dockerd does


# -- names ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("a:b.tar", "':'"),
        ('q"uote.tar', "'\"'"),
        ("pipe|.tar", "'|'"),
        ("star*.tar", "'*'"),
        ("what?.tar", "'?'"),
        ("<x>.tar", "'<' '>'"),
        ("back\\slash.tar", "'\\\\'"),
        ("tab\t.tar", "'\\t'"),
        ("x.tar.", "ends in a dot"),
        ("x.tar ", "ends in a dot or a space"),
        ("CON", "CON is a device name"),
        ("con.tar", "CON is a device name"),
        ("Nul.tar.gz", "NUL is a device name"),
        ("com1.tar", "COM1 is a device name"),
        ("LPT9", "LPT9 is a device name"),
        ("", "empty"),
    ],
)
def test_names_windows_refuses(name: str, why: str) -> None:
    problem = windows_name_problem(name)
    assert problem is not None and why in problem


@pytest.mark.parametrize(
    "name", ["library_busybox.tar", "console.tar", "com10.tar", "x.y-z_1.tar", ".hidden", "é.tar"]
)
def test_names_windows_takes(name: str) -> None:
    assert windows_name_problem(name) is None


def test_a_name_windows_refuses_is_refused_on_windows_only(tmp_path: Path) -> None:
    check_output_name(tmp_path / "img:v1.tar", windows=False)
    with pytest.raises(UsageError, match=r"'img:v1\.tar'.*':'.*-o"):
        check_output_name(tmp_path / "img:v1.tar", windows=True)


@pytest.mark.anyio
@pytest.mark.parametrize("fmt", ["docker", "oci-dir"])
async def test_a_windows_name_is_refused_before_any_request(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, fmt: str
) -> None:
    monkeypatch.setattr(conventions, "names_as_on_windows", lambda: True)
    closed_port = "127.0.0.1:9"  # discard: nothing listens, and nothing may be asked
    async with Puller(cache_dir=tmp_path / "c", use_docker_config=False) as puller:
        with pytest.raises(UsageError, match="choose another -o"):
            await puller.pull(f"{closed_port}/a/b:v1", output=tmp_path / "aux.tar", format=fmt)
    assert list(tmp_path.iterdir()) == []


def test_the_command_refuses_a_windows_name_as_a_usage_error(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from dockerdrag import conventions\n"
        "conventions.names_as_on_windows = lambda: True\n"
        "from dockerdrag.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    args = ["pull", "127.0.0.1:9/a/b:v1", "-o", "x?.tar", "--cache-dir", str(tmp_path / "c")]
    completed = subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT), "DOCKER_CONFIG": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 2, completed.stderr
    assert "'?'" in completed.stderr and "Traceback" not in completed.stderr


# -- the trust store ------------------------------------------------------------------------

_pushed: dict[str, PushedImage] = {}


def tls_image(server: RegistryServer) -> PushedImage:
    if server.url not in _pushed:
        _pushed[server.url] = push_image(server, "conventions/tls", "v1", [text_layer("a", "a\n")])
    return _pushed[server.url]


@pytest.fixture(params=[False, True], ids=["openssl", "os-store"])
def os_store(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    """Both ways of trusting the system's CAs; truststore's runs on Linux too."""
    chosen: bool = request.param
    monkeypatch.setattr(conventions, "uses_os_trust_store", lambda: chosen)
    return chosen


def test_the_os_store_context_is_truststores(os_store: bool) -> None:
    context = conventions.trusting_context()
    assert isinstance(context, truststore.SSLContext) is os_store


def test_ssl_cert_file_is_added_to_the_os_store(monkeypatch: pytest.MonkeyPatch) -> None:
    """truststore verifies with the OS, which never reads SSL_CERT_FILE: it is loaded."""
    loaded: list[tuple[str | None, str | None]] = []

    def load(self: object, cafile: str | None = None, capath: str | None = None) -> None:
        loaded.append((cafile, capath))

    monkeypatch.setattr(truststore.SSLContext, "load_verify_locations", load)
    conventions.trusting_context(os_store=True, environ={})
    assert loaded == []
    conventions.trusting_context(os_store=True, environ={"SSL_CERT_FILE": "/ca.pem"})
    conventions.trusting_context(os_store=True, environ={"SSL_CERT_DIR": "/cas"})
    assert loaded == [("/ca.pem", None), (None, "/cas")]


@pytest.mark.anyio
async def test_ca_cert_with_either_store(
    tls_registry: RegistryServer, tmp_path: Path, os_store: bool
) -> None:
    image = tls_image(tls_registry)
    async with Puller(
        cache_dir=tmp_path / "c", ca_cert=tls_registry.ca_pem_path, use_docker_config=False
    ) as puller:
        result = await puller.pull(image.reference, output=tmp_path / "x.tar")
    assert result.output.exists()


@pytest.mark.anyio
async def test_ssl_cert_file_with_either_store(
    tls_registry: RegistryServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, os_store: bool
) -> None:
    image = tls_image(tls_registry)
    monkeypatch.setenv("SSL_CERT_FILE", str(tls_registry.ca_pem_path))
    async with Puller(cache_dir=tmp_path / "c", use_docker_config=False) as puller:
        result = await puller.pull(image.reference, output=tmp_path / "x.tar")
    assert result.output.exists()


@pytest.mark.anyio
async def test_an_unknown_ca_is_refused_with_either_store(
    tls_registry: RegistryServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, os_store: bool
) -> None:
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    image = tls_image(tls_registry)
    async with Puller(cache_dir=tmp_path / "c", use_docker_config=False) as puller:
        with pytest.raises(TLSError, match="certificate"):
            await puller.pull(image.reference, output=tmp_path / "x.tar")


@pytest.mark.anyio
async def test_windows_certs_d_directory_has_no_colon(
    tls_registry: RegistryServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, os_store: bool
) -> None:
    image = tls_image(tls_registry)
    host_dir = tmp_path / "certs.d" / tls_registry.host.replace(":", "")
    host_dir.mkdir(parents=True)
    shutil.copy(tls_registry.ca_pem_path, host_dir / "ca.crt")
    monkeypatch.setattr(tls_proxy, "certs_d_name", lambda host: certs_d_name(host, "win32"))
    monkeypatch.setattr(transport, "docker_certs_d_dirs", lambda: (tmp_path / "certs.d",))
    async with Puller(cache_dir=tmp_path / "c", use_docker_config=False) as puller:
        result = await puller.pull(image.reference, output=tmp_path / "x.tar")
    assert result.output.exists()


# -- proxies --------------------------------------------------------------------------------


def test_proxies_from_the_os_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where no proxy variable is set, the OS's settings (as urllib reads them) count,
    with the OS's exceptions."""
    for name in ("http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    system = {"https": "http://127.0.0.1:3128", "http": "http://127.0.0.1:3128"}
    monkeypatch.setattr(urllib.request, "getproxies", lambda: system)
    monkeypatch.setattr(urllib.request, "proxy_bypass", lambda host: host.startswith("local."))
    t = transport.Transport()
    assert t.proxy_for("https://reg.example/v2/") == "http://127.0.0.1:3128"
    assert t.proxy_for("https://local.example/v2/") is None


def test_proxy_variables_win_over_the_os_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:8080")
    monkeypatch.setenv("NO_PROXY", "internal.example")
    monkeypatch.setattr(urllib.request, "proxy_bypass", lambda host: True)  # never asked
    t = transport.Transport()
    assert t.proxy_for("https://reg.example/v2/") == "http://127.0.0.1:8080"
    assert t.proxy_for("https://x.internal.example/v2/") is None
