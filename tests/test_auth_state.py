"""A registry host's authorization state: whose challenges are answered, how long tokens
are kept, and that one bad challenge does not poison the host (issue 14).

Real registries (htpasswd and token), the fault proxy, and header recorders standing
in for a CDN and a token server chosen by someone else.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dockerdrag import (
    AuthenticationError,
    Credentials,
    DockerDragError,
    NetworkError,
    Puller,
    RetryPolicy,
)
from tests.support.archive_check import read_docker_archive
from tests.support.client_options import client_options
from tests.support.fault_proxy import FaultProxy, redirect, status
from tests.support.header_recorder import HeaderRecorder
from tests.support.images import push_image, text_layer
from tests.support.registry_server import RegistryServer
from tests.support.tls_front import server_tls_context, tls_proxy

pytestmark = pytest.mark.anyio

FAST_RETRY = RetryPolicy(attempts=2, base_delay=0.01)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No proxies and no user Docker config leak into these tests."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "no-docker-config"))


def options_via(server: RegistryServer, host: str) -> dict[str, Any]:
    """Puller options reaching ``server`` through ``host``, with its credentials."""
    options = client_options(server)
    assert server.username and server.password
    options["credentials"] = {host: Credentials(server.username, server.password)}
    return options


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


# --------------------------------------------------------------------------- redirect targets


@pytest.mark.parametrize("mode", ["basic", "token"])
async def test_a_401_from_a_redirect_target_gets_no_credentials(
    mode: str, basic_auth_registry: RegistryServer, token_registry: RegistryServer, tmp_path: Path
) -> None:
    server = basic_auth_registry if mode == "basic" else token_registry
    image = push_image(server, "test/trap", "v1", [text_layer("a.txt", "alpha\n")])
    tls = server_tls_context(server)
    with (
        HeaderRecorder(
            b'{"token": "theirs"}', content_type="application/json", ssl_context=tls
        ) as their_realm,
        HeaderRecorder(
            status=401,
            headers={"WWW-Authenticate": f'Bearer realm="{their_realm.url}/token",service="cdn"'},
            ssl_context=tls,
        ) as cdn,
        tls_proxy(server) as proxy,
    ):
        proxy.add(redirect(cdn.url + "{path}"), path=r"/blobs/", times=None)
        options = options_via(server, proxy.host) | {"retry": FAST_RETRY}
        async with Puller(cache_dir=tmp_path / "c", **options) as puller:
            with pytest.raises(AuthenticationError) as info:
                await puller.pull(f"{proxy.host}/test/trap:v1", output=tmp_path / "x.tar")
        assert cdn.requests, "the redirect target was never asked"
        assert all(r.header("Authorization") is None for r in cdn.requests)
        assert their_realm.requests == []  # no token request, so no password, went there
        message = str(info.value)
        assert cdn.host in message and proxy.host in message
    assert server.password is not None and server.password not in message
    assert not (tmp_path / "x.tar").exists()
    assert image.layer_digests  # the registry itself holds the image


# --------------------------------------------------------------------------- token lifetime


@pytest.mark.parametrize(
    "expires_in", [float("nan"), -300.0, 1e300, None], ids=["nan", "negative", "absurd", "missing"]
)
async def test_tokens_with_odd_lifetimes_are_cached(
    expires_in: float | None, token_registry: RegistryServer, tmp_path: Path
) -> None:
    server = token_registry
    token_server = server.token_server
    assert token_server is not None
    image = push_image(
        server, "test/lifetime", "v1", [text_layer(f"{i}", f"{i}\n") for i in range(3)]
    )
    token_server.policy.reported_expires_in = expires_in
    token_server.policy.omit_expires_in = expires_in is None
    token_server.clear_requests()
    async with Puller(cache_dir=tmp_path / "c", **client_options(server)) as puller:
        await puller.pull(image.reference, output=tmp_path / "1.tar")
        await puller.pull(
            image.reference,
            output=tmp_path / "2.tar",
        )
    # One token for the manifest, the config, three layers and the second pull.
    assert len(token_server.requests_from("dockerdrag/")) == 1


# --------------------------------------------------------------------------- bad challenges


@pytest.mark.parametrize("realm", ["unusable", "refusing", "unreachable"])
async def test_one_bad_challenge_does_not_poison_the_host(
    realm: str, registry: RegistryServer, tmp_path: Path
) -> None:
    private = push_image(registry, "poison/private", "v1", [text_layer("p.txt", "private\n")])
    public = push_image(registry, "poison/public", "v1", [text_layer("q.txt", "public\n")])
    with FaultProxy(registry.url) as proxy, HeaderRecorder(status=401) as refuser:
        realm_url = {
            "unusable": "ftp://127.0.0.1/token",
            "refusing": f"{refuser.url}/token",
            "unreachable": f"http://127.0.0.1:{closed_port()}/token",
        }[realm]
        challenge = f'Bearer realm="{realm_url}",service="elsewhere"'
        proxy.add(
            status(401, headers={"WWW-Authenticate": challenge}),
            path=r"/v2/poison/private/",
            times=None,
        )
        options = {
            "insecure": [proxy.host, refuser.host],
            "use_docker_config": False,
            "retry": FAST_RETRY,
        }
        async with Puller(cache_dir=tmp_path / "c", **options) as puller:
            with pytest.raises(DockerDragError):
                await puller.pull(f"{proxy.host}/poison/private:v1", output=tmp_path / "1.tar")
            result = await puller.pull(f"{proxy.host}/poison/public:v1", output=tmp_path / "2.tar")
    assert read_docker_archive(result.output)[0].diff_ids == public.diff_ids
    assert private.diff_ids != public.diff_ids


# --------------------------------------------------------------------------- token server retries


@contextlib.contextmanager
def hanging_up_server() -> Iterator[tuple[int, list[int]]]:
    """A TCP port that accepts each connection and closes it at once; yields the port and
    a list that grows by one per connection."""
    accepted: list[int] = []
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.settimeout(0.1)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            accepted.append(1)
            connection.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1], accepted
    finally:
        stop.set()
        thread.join()
        listener.close()


async def test_an_unreachable_token_server_is_tried_as_the_policy_says_not_more(
    registry: RegistryServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    push_image(registry, "test/retries", "v1", [text_layer("r.txt", "r\n")])
    with hanging_up_server() as (port, accepted), FaultProxy(registry.url) as proxy:
        challenge = f'Bearer realm="http://127.0.0.1:{port}/token",service="test"'
        proxy.add(status(401, headers={"WWW-Authenticate": challenge}), path=r"/v2/", times=None)
        policy = RetryPolicy(attempts=3, base_delay=0.01)
        options = {"insecure": [proxy.host], "use_docker_config": False, "retry": policy}
        async with Puller(cache_dir=tmp_path / "c", **options) as puller:
            with caplog.at_level(logging.DEBUG, "dockerdrag"), pytest.raises(NetworkError):
                await puller.pull(f"{proxy.host}/test/retries:v1", output=tmp_path / "x.tar")
    # The token request's own retries, not those multiplied by the registry request's
    # (aiohttp itself may send an idempotent request once more on a connection closed
    # before the answer, hence up to two connections per request).
    sent = [r for r in caplog.records if r.getMessage() == f"GET http://127.0.0.1:{port}/token"]
    assert len(sent) == policy.attempts
    assert policy.attempts <= len(accepted) <= 2 * policy.attempts
