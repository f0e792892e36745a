"""Authentication, TLS, proxies and redirects against real registries (issue #3).

Every test talks to a real ``docker-registry`` (plain, TLS, htpasswd or token), sometimes
through the fault proxy, a header-recording "CDN" or a tiny forward proxy defined here.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import re
import shutil
import socket
import stat
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from dockerdrag import (
    AuthenticationError,
    Credentials,
    NetworkError,
    Puller,
    RegistryError,
    RequestRetry,
    RetryPolicy,
    TLSError,
)
from tests.support.archive_check import assert_archive_of, read_docker_archive
from tests.support.client_options import client_options
from tests.support.command import assert_names_no_option, assert_nothing_left_at, run_cli
from tests.support.fault_proxy import FaultProxy, drop_after, redirect, throttle
from tests.support.header_recorder import HeaderRecorder
from tests.support.images import PushedImage, layer, push_image, text_layer
from tests.support.pusher import push_blob
from tests.support.registry_server import RegistryServer
from tests.support.tls_front import server_tls_context, tls_proxy
from tests.support.token_server import TokenPolicy

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parent.parent


# --------------------------------------------------------------------------- helpers


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No proxies, no user Docker config or certs.d leak into these tests."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "no-docker-config"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))


def pushed_image(server: RegistryServer, repo: str = "test/auth") -> PushedImage:
    """A small two-layer image (pushed once per registry and repo)."""
    key = (server.url, repo)
    if key not in _PUSHED:
        _PUSHED[key] = push_image(
            server, repo, "v1", [text_layer("a.txt", "alpha\n"), text_layer("b.txt", "beta\n")]
        )
    return _PUSHED[key]


_PUSHED: dict[tuple[str, str], PushedImage] = {}


def on_host(image: PushedImage, host: str) -> str:
    """The image's reference with its registry replaced by ``host`` (a proxy)."""
    return f"{host}/{image.repo}:{image.tag}"


def options_for(server: RegistryServer, host: str | None = None, **extra: Any) -> dict[str, Any]:
    """``client_options`` with the credentials keyed to ``host`` (e.g. a proxy in front)."""
    options = client_options(server)
    if host is not None and "credentials" in options:
        options["credentials"] = {host: options["credentials"][server.host]}
    options.update(extra)
    return options


def blob_paths(image: PushedImage) -> dict[str, bytes]:
    return {f"/v2/{image.repo}/blobs/{digest}": data for digest, data in image.blobs().items()}


def write_docker_config(directory: Path, config: dict[str, Any]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(config))
    return directory


def install_helper(bin_dir: Path, name: str, script: str, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir.mkdir(exist_ok=True)
    helper = bin_dir / f"docker-credential-{name}"
    helper.write_text("#!/bin/sh\n" + script)
    helper.chmod(helper.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")


def our_token_requests(server: RegistryServer) -> list[Any]:
    assert server.token_server is not None
    return server.token_server.requests_from("dockerdrag/")


class ForwardProxy:
    """A minimal HTTP forward proxy: absolute-URI requests and CONNECT tunnels.

    Each client connection is tunnelled to the host its first request names, so
    keep-alive works; ``requests`` records the first request line of each connection.
    """

    def __init__(self) -> None:
        self.requests: list[str] = []
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ForwardProxy:
        started = threading.Event()
        self._thread = threading.Thread(target=asyncio.run, args=(self._main(started),))
        self._thread.start()
        started.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._loop is not None and self._stop is not None and self._thread is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    async def _main(self, started: threading.Event) -> None:
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        started.set()
        async with server:
            await self._stop.wait()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            method, target, _ = head.split(b"\r\n", 1)[0].decode().split(" ")
            self.requests.append(f"{method} {target}")
            netloc = target if method == "CONNECT" else urllib.parse.urlsplit(target).netloc
            host, port = netloc.rsplit(":", 1)
            up_reader, up_writer = await asyncio.open_connection(host, int(port))
            if method == "CONNECT":
                writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            else:
                up_writer.write(head)  # Go's server accepts absolute-form request lines
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        except (OSError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            writer.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        writer.close()


# --------------------------------------------------------------------------- credentials


@pytest.mark.parametrize("mode", ["basic", "token"])
async def test_wrong_password_is_authentication_error_naming_registry(
    mode: str, basic_auth_registry: RegistryServer, token_registry: RegistryServer, tmp_path: Path
) -> None:
    server = basic_auth_registry if mode == "basic" else token_registry
    image = pushed_image(server)
    wrong = "wrong-" + "pw-9f8e7d"
    options = options_for(
        server, credentials={server.host: Credentials(username="alice", password=wrong)}
    )
    output = tmp_path / "x.tar"
    async with Puller(cache_dir=tmp_path / "c", **options) as puller:
        with pytest.raises(AuthenticationError) as info:
            await puller.pull(image.reference, output=output)
    message = str(info.value)
    assert server.host in message
    assert wrong not in message and wrong not in repr(info.value)
    assert "alice" in message
    assert_nothing_left_at(output)


@pytest.mark.parametrize("mode", ["basic", "token"])
async def test_missing_credentials_say_how_to_log_in(
    mode: str, basic_auth_registry: RegistryServer, token_registry: RegistryServer, tmp_path: Path
) -> None:
    server = basic_auth_registry if mode == "basic" else token_registry
    image = pushed_image(server)
    options = options_for(server)
    options.pop("credentials")
    async with Puller(cache_dir=tmp_path / "c", **options) as puller:
        with pytest.raises(AuthenticationError) as info:
            await puller.pull(image.reference, output=tmp_path / "x.tar")
    assert server.host in str(info.value) and "credentials=" in str(info.value)
    assert_names_no_option(str(info.value))


async def test_config_json_auths_end_to_end(
    any_registry: RegistryServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = any_registry
    image = pushed_image(server)
    auths: dict[str, Any] = {}
    if server.username and server.password:
        pair = f"{server.username}:{server.password}".encode()
        auths[f"https://{server.host}/v2/"] = {"auth": base64.b64encode(pair).decode()}
    monkeypatch.setenv("DOCKER_CONFIG", str(write_docker_config(tmp_path / "dc", {"auths": auths})))
    options = options_for(server, use_docker_config=True)
    options.pop("credentials", None)
    async with Puller(cache_dir=tmp_path / "c", **options) as puller:
        result = await puller.pull(image.reference, output=tmp_path / "x.tar")
    assert str(result.manifest_digest) == image.manifest_digest


@pytest.mark.parametrize("config_key", ["credsStore", "credHelpers"])
@pytest.mark.parametrize("mode", ["basic", "token"])
async def test_credential_helper_end_to_end(
    mode: str,
    config_key: str,
    basic_auth_registry: RegistryServer,
    token_registry: RegistryServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server = basic_auth_registry if mode == "basic" else token_registry
    image = pushed_image(server)
    asked = tmp_path / "asked.txt"
    answer = json.dumps({"ServerURL": server.host, "Username": "alice", "Secret": server.password})
    install_helper(
        tmp_path / "bin",
        "dd-test",
        f"read server; echo \"$1 $server\" >> {asked}\necho '{answer}'\n",
        monkeypatch,
    )
    config = (
        {"credsStore": "dd-test"}
        if config_key == "credsStore"
        else {"credHelpers": {server.host: "dd-test"}}
    )
    monkeypatch.setenv("DOCKER_CONFIG", str(write_docker_config(tmp_path / "dc", config)))
    options = options_for(server, use_docker_config=True)
    options.pop("credentials")
    async with Puller(cache_dir=tmp_path / "c", **options) as puller:
        result = await puller.pull(image.reference, output=tmp_path / "x.tar")
    assert str(result.manifest_digest) == image.manifest_digest
    assert asked.read_text().splitlines() == [f"get {server.host}"]  # looked up once
    if mode == "token":
        (first, *_) = our_token_requests(server)
        assert first.username == "alice" and first.account == "alice"


async def test_anonymous_registry_never_runs_a_credential_helper(
    registry: RegistryServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked = tmp_path / "asked.txt"
    install_helper(tmp_path / "bin", "dd-spy", f"echo called >> {asked}; exit 1\n", monkeypatch)
    monkeypatch.setenv(
        "DOCKER_CONFIG", str(write_docker_config(tmp_path / "dc", {"credsStore": "dd-spy"}))
    )
    image = pushed_image(registry)
    async with Puller(
        cache_dir=tmp_path / "c", insecure=[registry.host], use_docker_config=True
    ) as puller:
        await puller.pull(image.reference, output=tmp_path / "x.tar")
    assert not asked.exists()


async def test_identity_token_uses_the_oauth2_post_form(
    token_registry: RegistryServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = token_registry
    token_server = server.token_server
    assert token_server is not None and server.password is not None
    image = pushed_image(server)
    form = urllib.parse.urlencode(
        {
            "grant_type": "password",
            "username": "alice",
            "password": server.password,
            "service": token_server.service,
            "access_type": "offline",
            "client_id": "test",
        }
    ).encode()
    with urllib.request.urlopen(token_server.realm, form, context=server.ssl_context()) as reply:
        refresh_token = json.load(reply)["refresh_token"]
    entry = {"auth": base64.b64encode(b"alice:").decode(), "identitytoken": refresh_token}
    config_dir = write_docker_config(tmp_path / "dc", {"auths": {server.host: entry}})
    monkeypatch.setenv("DOCKER_CONFIG", str(config_dir))
    options = options_for(server, use_docker_config=True)
    options.pop("credentials")
    async with Puller(cache_dir=tmp_path / "c", **options) as puller:
        await puller.pull(image.reference, output=tmp_path / "x.tar")
    requests = our_token_requests(server)
    assert requests and all(r.method == "POST" for r in requests)
    assert requests[0].grant_type == "refresh_token"
    assert requests[0].form["scope"] == [f"repository:{image.repo}:pull"]
    assert not any(r.used_basic_auth for r in requests)


# --------------------------------------------------------------------------- tokens


@pytest.mark.parametrize("fields", [("token",), ("access_token",)])
async def test_token_reply_field_either_name(
    fields: tuple[str, ...], token_registry: RegistryServer, tmp_path: Path
) -> None:
    server = token_registry
    assert server.token_server is not None
    image = pushed_image(server)
    server.token_server.policy.reply_fields = fields
    async with Puller(cache_dir=tmp_path / "c", **options_for(server)) as puller:
        await puller.pull(image.reference, output=tmp_path / "x.tar")


async def test_tokens_are_cached_per_scope_and_sent_with_account(
    token_registry: RegistryServer, tmp_path: Path
) -> None:
    server = token_registry
    first, second = pushed_image(server, "test/one"), pushed_image(server, "test/two")
    async with Puller(cache_dir=tmp_path / "c", **options_for(server)) as puller:
        await puller.pull(first.reference, output=tmp_path / "1.tar")
        await puller.pull(first.reference, output=tmp_path / "2.tar")
        await puller.pull(second.reference, output=tmp_path / "3.tar")
    requests = our_token_requests(server)
    assert [r.scopes for r in requests] == [
        ("repository:test/one:pull",),
        ("repository:test/two:pull",),
    ]
    assert all(r.method == "GET" and r.account == "alice" and r.used_basic_auth for r in requests)
    assert all(r.service == "test-registry" for r in requests)


async def test_token_server_errors_are_retried(
    token_registry: RegistryServer, tmp_path: Path
) -> None:
    server = token_registry
    assert server.token_server is not None
    image = pushed_image(server)
    server.token_server.fail_next(503, 429, 500, retry_after="0")
    events: list[object] = []
    options = options_for(server, progress=events.append)
    async with Puller(cache_dir=tmp_path / "c", **options) as puller:
        await puller.pull(image.reference, output=tmp_path / "x.tar")
    assert [r.status for r in our_token_requests(server)] == [503, 429, 500, 200]
    # Each retry is told as any request's is, naming the token server.
    retries = [e for e in events if isinstance(e, RequestRetry)]
    token_server = ("127.0.0.1", server.token_server.port, f"a token for {server.host}")
    assert [(e.host, e.port, e.what, e.status, e.retry, e.delay) for e in retries] == [
        (*token_server, status, n, 0.0) for n, status in enumerate((503, 429, 500), 1)
    ]


async def test_insufficient_scope_is_asked_once_then_fails(
    registry_factory: Any, tmp_path: Path
) -> None:
    def grant(account: str | None, kind: str, name: str, actions: list[str]) -> list[str]:
        return [] if name == "test/secret" else actions

    server: RegistryServer = registry_factory(
        auth="token",
        password="pw-alice",
        token_policy=TokenPolicy(users={"alice": "pw-alice"}, grant=grant, allow_anonymous=False),
    )
    # The pusher needs access to test/secret; take the grant away only afterwards.
    assert server.token_server is not None
    server.token_server.policy.grant = None
    image = pushed_image(server, "test/secret")
    server.token_server.policy.grant = grant
    server.token_server.clear_requests()
    options = options_for(server)
    async with Puller(cache_dir=tmp_path / "c", **options) as puller:
        with pytest.raises(AuthenticationError) as info:
            await puller.pull(image.reference, output=tmp_path / "x.tar")
    assert server.host in str(info.value) and "repository:test/secret:pull" in str(info.value)
    assert len(our_token_requests(server)) == 2


async def test_expired_token_mid_layer_resumes_at_its_offset(
    token_registry: RegistryServer, tmp_path: Path
) -> None:
    server = token_registry
    assert server.token_server is not None
    big = layer({"big.bin": os.urandom(256 * 1024)}, compression="none")
    image = push_image(server, "test/long-layer", "v1", [big])
    server.token_server.policy.ttl = 2  # the registry rejects it 1-2 s after issue
    size, cut = big.size, 96 * 1024
    blob = rf"/blobs/{big.digest}$"
    with tls_proxy(server) as proxy:
        # 96 KiB at 32 KiB/s: the connection breaks ~3 s in, after the token expired.
        proxy.add(throttle(32 * 1024), drop_after(cut), path=blob)
        async with Puller(cache_dir=tmp_path / "c", **options_for(server, proxy.host)) as puller:
            result = await puller.pull(on_host(image, proxy.host), output=tmp_path / "x.tar")
        proxy.wait_idle()
        layer_requests = proxy.requests_for(blob)
    assert [str(d) for d in (x.digest for x in result.layers)] == [big.digest]
    assert [r.status for r in layer_requests] == [200, 401, 206]
    resumed_at = int((layer_requests[2].header("Range") or "").removeprefix("bytes=")[:-1])
    assert 0 < resumed_at <= cut
    assert layer_requests[1].header("Range") == layer_requests[2].header("Range")
    served = proxy.bytes_served(blob)
    assert size <= served < size + cut  # resumed, not downloaded twice
    assert 'error="invalid_token"' in (layer_requests[1].response_header("WWW-Authenticate") or "")
    assert len(our_token_requests(server)) == 2


async def test_plain_http_token_realm_gets_credentials_only_when_named_insecure(
    registry_factory: Any, tmp_path: Path
) -> None:
    server: RegistryServer = registry_factory(auth="token", tls=True, token_tls=False)
    assert server.token_server is not None and server.password is not None
    image = pushed_image(server)
    realm_host = f"127.0.0.1:{server.token_server.port}"
    server.token_server.clear_requests()
    options = options_for(server)
    options["insecure"] = []  # the realm is not named: no credentials to it
    async with Puller(cache_dir=tmp_path / "c", **options) as puller:
        with pytest.raises(AuthenticationError) as info:
            await puller.pull(image.reference, output=tmp_path / "x.tar")
    assert "plain HTTP" in str(info.value) and f"insecure=[{realm_host!r}]" in str(info.value)
    assert_names_no_option(str(info.value))
    assert [r.authorization for r in our_token_requests(server)] == [None]
    async with Puller(cache_dir=tmp_path / "c", **options_for(server)) as puller:
        await puller.pull(image.reference, output=tmp_path / "x.tar")  # realm named insecure
    assert our_token_requests(server)[-1].used_basic_auth


# --------------------------------------------------------------------------- secrets


@pytest.mark.parametrize("mode", ["basic", "token"])
async def test_secrets_never_in_logs_or_repr(
    mode: str,
    basic_auth_registry: RegistryServer,
    token_registry: RegistryServer,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = basic_auth_registry if mode == "basic" else token_registry
    assert server.password is not None
    image = pushed_image(server)
    caplog.set_level(logging.DEBUG)
    events: list[object] = []
    options = options_for(server, progress=events.append)
    async with Puller(cache_dir=tmp_path / "c", **options) as puller:
        await puller.pull(image.reference, output=tmp_path / "x.tar")
        reprs = repr(puller.transport.config) + repr(puller.transport.auth_for(server.host))
        reprs += repr(puller.transport.auth_for(server.host)._tokens)
    assert caplog.records, "debug logging was captured"
    basic = base64.b64encode(f"alice:{server.password}".encode()).decode()
    texts = [caplog.text, reprs, repr(events)]
    for text in texts:
        assert server.password not in text and basic not in text and "eyJ" not in text


# --------------------------------------------------------------------------- redirects


@pytest.mark.parametrize("mode", ["basic", "token"])
async def test_cross_host_redirect_gets_no_authorization(
    mode: str, basic_auth_registry: RegistryServer, token_registry: RegistryServer, tmp_path: Path
) -> None:
    server = basic_auth_registry if mode == "basic" else token_registry
    image = pushed_image(server)
    with (
        tls_proxy(server) as proxy,
        HeaderRecorder(ssl_context=server_tls_context(server)) as cdn,
    ):
        for path, data in blob_paths(image).items():
            cdn.respond(data, path=path)
        proxy.add(redirect(cdn.url + "{path}"), path=r"/blobs/", times=None)
        async with Puller(cache_dir=tmp_path / "c", **options_for(server, proxy.host)) as puller:
            result = await puller.pull(on_host(image, proxy.host), output=tmp_path / "x.tar")
        manifest_requests = proxy.requests_for(r"/manifests/")
    (archived,) = read_docker_archive(result.output)
    assert archived.config == image.config
    assert len(cdn.requests) == len(blob_paths(image))
    assert all(r.header("Authorization") is None for r in cdn.requests)
    assert any(r.header("Authorization") for r in manifest_requests)  # the registry got it


async def test_https_to_http_redirect_is_refused(
    basic_auth_registry: RegistryServer, tmp_path: Path
) -> None:
    server = basic_auth_registry
    image = pushed_image(server)
    with tls_proxy(server) as proxy, HeaderRecorder(b"x") as cdn:
        proxy.add(redirect(cdn.url + "{path}"), path=r"/blobs/", times=None)
        output = tmp_path / "x.tar"
        async with Puller(cache_dir=tmp_path / "c", **options_for(server, proxy.host)) as puller:
            with pytest.raises(RegistryError, match="refusing a redirect from https to http"):
                await puller.pull(on_host(image, proxy.host), output=output)
        assert cdn.requests == []
    assert_nothing_left_at(output)


async def test_foreign_layer_urls_are_never_contacted(
    basic_auth_registry: RegistryServer, tmp_path: Path
) -> None:
    server = basic_auth_registry
    with HeaderRecorder(b"x", ssl_context=server_tls_context(server)) as elsewhere:
        foreign = layer({"f.txt": b"foreign\n"}, urls=[f"{elsewhere.url}/layer.tar.gz"])
        push_blob(server, "test/foreign", foreign.blob)  # the registry has it too
        image = push_image(server, "test/foreign", "v1", [foreign])
        async with Puller(cache_dir=tmp_path / "c", **options_for(server)) as puller:
            await puller.pull(image.reference, output=tmp_path / "x.tar")
        assert elsewhere.requests == []


# --------------------------------------------------------------------------- TLS


async def test_untrusted_certificate_is_a_quick_tls_error(
    tls_registry: RegistryServer, tmp_path: Path
) -> None:
    image = pushed_image(tls_registry)
    output = tmp_path / "x.tar"
    started = time.monotonic()
    async with Puller(cache_dir=tmp_path / "c", use_docker_config=False) as puller:
        with pytest.raises(TLSError) as info:
            await puller.pull(image.reference, output=output)
    assert time.monotonic() - started < 5
    message = str(info.value)
    assert tls_registry.host in message and "ca_cert=" in message and "certificate" in message
    assert f"insecure=[{tls_registry.host!r}]" in message
    assert_names_no_option(message)
    assert_nothing_left_at(output)


async def test_plain_http_registry_not_named_insecure_is_never_tried_over_http(
    registry: RegistryServer, tmp_path: Path
) -> None:
    image = pushed_image(registry)
    with FaultProxy(registry.url) as proxy:
        async with Puller(
            cache_dir=tmp_path / "c",
            use_docker_config=False,
            retry=RetryPolicy(attempts=1),
        ) as puller:
            with pytest.raises(TLSError, match=re.escape(f"insecure=[{proxy.host!r}]")):
                await puller.pull(on_host(image, proxy.host), output=tmp_path / "x.tar")
        assert proxy.requests == []  # no plain-HTTP request ever reached it


async def test_ca_cert_option(tls_registry: RegistryServer, tmp_path: Path) -> None:
    image = pushed_image(tls_registry)
    async with Puller(
        cache_dir=tmp_path / "c", ca_cert=tls_registry.ca_pem_path, use_docker_config=False
    ) as puller:
        result = await puller.pull(image.reference, output=tmp_path / "x.tar")
    assert_archive_of(result.output, image)


async def test_ssl_cert_file_environment(
    tls_registry: RegistryServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    image = pushed_image(tls_registry)
    monkeypatch.setenv("SSL_CERT_FILE", str(tls_registry.ca_pem_path))
    async with Puller(cache_dir=tmp_path / "c", use_docker_config=False) as puller:
        result = await puller.pull(image.reference, output=tmp_path / "x.tar")
    assert_archive_of(result.output, image)


async def test_ssl_cert_dir_environment(
    tls_registry: RegistryServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    image = pushed_image(tls_registry)
    assert tls_registry.ca_pem_path is not None
    cert_dir = tmp_path / "certs"
    cert_dir.mkdir()
    shutil.copy(tls_registry.ca_pem_path, cert_dir / "test-ca.pem")
    subprocess.run(["openssl", "rehash", str(cert_dir)], check=True, capture_output=True)
    monkeypatch.setenv("SSL_CERT_DIR", str(cert_dir))
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "no-such-bundle.pem"))
    async with Puller(cache_dir=tmp_path / "c", use_docker_config=False) as puller:
        await puller.pull(image.reference, output=tmp_path / "x.tar")


async def test_docker_certs_d_ca(
    tls_registry: RegistryServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    image = pushed_image(tls_registry)
    assert tls_registry.ca_pem_path is not None
    host_dir = tmp_path / "xdg" / "docker" / "certs.d" / tls_registry.host
    host_dir.mkdir(parents=True)
    shutil.copy(tls_registry.ca_pem_path, host_dir / "ca.crt")
    async with Puller(cache_dir=tmp_path / "c", use_docker_config=False) as puller:
        await puller.pull(image.reference, output=tmp_path / "x.tar")


async def test_insecure_https_registry_with_untrusted_certificate(
    tls_registry: RegistryServer, tmp_path: Path
) -> None:
    image = pushed_image(tls_registry)
    with FaultProxy(
        tls_registry.url,
        ssl_context=server_tls_context(tls_registry),
        upstream_ssl=tls_registry.ssl_context() or True,
    ) as proxy:
        async with Puller(
            cache_dir=tmp_path / "c", insecure=[proxy.host], use_docker_config=False
        ) as puller:
            await puller.pull(on_host(image, proxy.host), output=tmp_path / "x.tar")
        assert proxy.requests_for(r"/manifests/")  # it spoke https (the proxy is TLS only)


async def test_an_insecure_plain_http_registry_gets_its_first_request_beside_the_tls_attempt(
    basic_auth_http_registry: RegistryServer, tmp_path: Path
) -> None:
    """While the TLS attempt finds out that an insecure registry speaks plain HTTP, the
    first request (the manifest's) goes out over plain HTTP beside it, without
    credentials, and its answer (a 401 here) is that request's first: no ``GET /v2/``
    comes before it."""
    server = basic_auth_http_registry
    image = pushed_image(server)
    with FaultProxy(server.url) as proxy:
        options = options_for(server, proxy.host, insecure=[proxy.host], cache_dir=tmp_path / "c")
        async with Puller(**options) as puller:
            await puller.pull(on_host(image, proxy.host), output=tmp_path / "x.tar")
        proxy.wait_idle()
        first, *_ = proxy.requests
        anonymous, with_credentials, *_ = proxy.requests_for(r"/manifests/")
    assert first == anonymous
    assert anonymous.header("Authorization") is None and anonymous.status == 401
    assert with_credentials.header("Authorization") and with_credentials.status == 200


# --------------------------------------------------------------------------- proxies


async def test_http_proxy_from_environment(
    registry: RegistryServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    image = pushed_image(registry)
    with ForwardProxy() as forward:
        monkeypatch.setenv("HTTP_PROXY", forward.url)
        async with Puller(
            cache_dir=tmp_path / "c", insecure=[registry.host], use_docker_config=False
        ) as puller:
            await puller.pull(image.reference, output=tmp_path / "x.tar")
        assert any(line.startswith(f"GET http://{registry.host}/v2/") for line in forward.requests)
        forward.requests.clear()
        monkeypatch.setenv("NO_PROXY", "localhost,127.0.0.1")
        async with Puller(
            cache_dir=tmp_path / "c2", insecure=[registry.host], use_docker_config=False
        ) as puller:
            await puller.pull(image.reference, output=tmp_path / "y.tar")
        assert forward.requests == []


async def test_https_proxy_from_environment_tunnels_registry_and_realm(
    token_registry: RegistryServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = token_registry
    assert server.token_server is not None
    image = pushed_image(server)
    with ForwardProxy() as forward:
        monkeypatch.setenv("HTTPS_PROXY", forward.url)
        async with Puller(cache_dir=tmp_path / "c", **options_for(server)) as puller:
            await puller.pull(image.reference, output=tmp_path / "x.tar")
    assert f"CONNECT {server.host}" in forward.requests
    assert f"CONNECT 127.0.0.1:{server.token_server.port}" in forward.requests


async def test_an_unreachable_proxy_is_tried_as_the_policy_says(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as closed:  # bound, never listening: connections are refused
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
        monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{port}")
        policy = RetryPolicy(attempts=2, base_delay=0.01)
        options: dict[str, Any] = {"use_docker_config": False, "retry": policy}
        async with Puller(cache_dir=tmp_path / "c", **options) as puller:
            with pytest.raises(NetworkError) as info:
                await puller.pull("127.0.0.1:1/test/app:1", output=tmp_path / "x.tar")
    assert str(info.value) == (
        f"cannot reach the proxy 127.0.0.1:{port} for 127.0.0.1:1: connection refused "
        "(nothing listens on that port) (tried 2 times)"
    )


# --------------------------------------------------------------------------- CLI


def test_cli_password_stdin_with_ca_cert(
    basic_auth_registry: RegistryServer, tmp_path: Path
) -> None:
    server = basic_auth_registry
    assert server.password is not None
    image = pushed_image(server)
    output = tmp_path / "x.tar"
    args = ["pull", image.reference, "--username", "alice", "--password-stdin"]
    args += ["--ca-cert", str(server.ca_pem_path), "-o", str(output)]
    completed = run_cli(*args, cwd=tmp_path, stdin=server.password + "\n")
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == str(output)
    assert server.password not in completed.stdout + completed.stderr
    (archived,) = read_docker_archive(output)
    assert archived.config == image.config


def test_cli_wrong_password_exits_3_without_the_secret(
    basic_auth_registry: RegistryServer, tmp_path: Path
) -> None:
    server = basic_auth_registry
    image = pushed_image(server)
    args = ["pull", image.reference, "-u", "alice", "--password-stdin", "-o", "x.tar"]
    completed = run_cli(
        *args, "--ca-cert", str(server.ca_pem_path), cwd=tmp_path, stdin="bad-pw-123\n"
    )
    assert completed.returncode == 3
    assert "bad-pw-123" not in completed.stderr + completed.stdout
    assert server.host in completed.stderr


def test_cli_untrusted_certificate_is_one_line_and_nonzero(
    tls_registry: RegistryServer, tmp_path: Path
) -> None:
    image = pushed_image(tls_registry)
    started = time.monotonic()
    completed = run_cli("pull", image.reference, "-o", str(tmp_path / "x.tar"), cwd=tmp_path)
    assert time.monotonic() - started < 15
    assert completed.returncode == 5
    lines = completed.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dockerdrag: error: the TLS certificate")
    # The library's remedies (ca_cert=, insecure=) in the command's words.
    assert f"with --ca-cert FILE or /etc/docker/certs.d/{tls_registry.host}/ca.crt" in lines[0]
    assert f"pass --insecure {tls_registry.host} to skip" in lines[0]
    assert "Traceback" not in completed.stderr
    assert not (tmp_path / "x.tar").exists()
