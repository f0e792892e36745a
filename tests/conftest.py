"""Shared fixtures: real registries in every auth mode, seeded images, a private dockerd.

Registries and dockerd are session-scoped and started lazily, the first time a test
asks for them; the registry fixtures themselves are function-scoped views that
reset per-test state (the token server's policy and request log) first.

* ``registry``: anonymous, plain HTTP
* ``tls_registry``: anonymous, HTTPS (``ca_pem_path``)
* ``basic_auth_registry``: htpasswd Basic auth over HTTPS
* ``basic_auth_http_registry``: htpasswd Basic auth over plain HTTP
* ``token_registry``: Bearer tokens, registry and realm over HTTPS, credentials required
* ``any_registry``: parametrized over plain / tls / basic / token
* ``registry_factory``: ``registry_factory(auth=..., tls=..., token_policy=...)`` starts
  a fresh registry for this test only
* ``seeded_registry`` (plain) and ``seeded_any_registry``: the standard images pushed
* ``dockerd``: a private Docker 20.10 daemon, emptied of images before each test
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.dockerd import DockerDaemon, start_dockerd
from tests.support.fault_proxy import FaultProxy
from tests.support.images import SeededImages, seed_standard_images
from tests.support.registry_server import RegistryServer, start_registry

REGISTRY_MODES = ("plain", "tls", "basic", "token")


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests using ``dockerd`` get the ``docker`` marker (``-m "not docker"`` skips them)."""
    for item in items:
        if "dockerd" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.docker)


# -- registries ------------------------------------------------------------------------


@pytest.fixture(scope="session")
def _registry_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("registries")


def _session_registry(directory: Path, name: str, **kwargs: Any) -> Iterator[RegistryServer]:
    server = start_registry(directory / name, **kwargs)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def _plain_registry(_registry_dir: Path) -> Iterator[RegistryServer]:
    yield from _session_registry(_registry_dir, "plain", auth="none", tls=False)


@pytest.fixture(scope="session")
def _tls_registry(_registry_dir: Path) -> Iterator[RegistryServer]:
    yield from _session_registry(_registry_dir, "tls", auth="none", tls=True)


@pytest.fixture(scope="session")
def _basic_registry(_registry_dir: Path) -> Iterator[RegistryServer]:
    yield from _session_registry(_registry_dir, "basic", auth="basic", tls=True)


@pytest.fixture(scope="session")
def _basic_http_registry(_registry_dir: Path) -> Iterator[RegistryServer]:
    yield from _session_registry(_registry_dir, "basic-http", auth="basic", tls=False)


@pytest.fixture(scope="session")
def _token_registry(_registry_dir: Path) -> Iterator[RegistryServer]:
    yield from _session_registry(_registry_dir, "token", auth="token", tls=True)


def _fresh(server: RegistryServer) -> RegistryServer:
    server.reset()
    return server


@pytest.fixture
def registry(_plain_registry: RegistryServer) -> RegistryServer:
    """Anonymous registry over plain HTTP (an "insecure registry" for clients)."""
    return _fresh(_plain_registry)


@pytest.fixture
def proxy(registry: RegistryServer) -> Iterator[FaultProxy]:
    """A fault-injecting proxy in front of the plain registry."""
    with FaultProxy(registry.url) as fault_proxy:
        yield fault_proxy


@pytest.fixture
def tls_registry(_tls_registry: RegistryServer) -> RegistryServer:
    """Anonymous registry over HTTPS; trust ``tls_registry.ca_pem_path``."""
    return _fresh(_tls_registry)


@pytest.fixture
def basic_auth_registry(_basic_registry: RegistryServer) -> RegistryServer:
    """htpasswd registry over HTTPS; ``username`` / ``password`` are the credentials."""
    return _fresh(_basic_registry)


@pytest.fixture
def basic_auth_http_registry(_basic_http_registry: RegistryServer) -> RegistryServer:
    """htpasswd registry over plain HTTP."""
    return _fresh(_basic_http_registry)


@pytest.fixture
def token_registry(_token_registry: RegistryServer) -> RegistryServer:
    """Token-auth registry; ``token_server`` is reset to its start policy for each test."""
    return _fresh(_token_registry)


_MODE_FIXTURES = {
    "plain": "registry",
    "tls": "tls_registry",
    "basic": "basic_auth_registry",
    "token": "token_registry",
}


@pytest.fixture(params=REGISTRY_MODES)
def any_registry(request: pytest.FixtureRequest) -> RegistryServer:
    """The same test against every mode (ids: plain, tls, basic, token)."""
    server: RegistryServer = request.getfixturevalue(_MODE_FIXTURES[request.param])
    return server


@pytest.fixture
def registry_factory(tmp_path: Path) -> Iterator[Callable[..., RegistryServer]]:
    """Start extra registries (``start_registry`` keywords) that live for this test only."""
    started: list[RegistryServer] = []

    def factory(**kwargs: Any) -> RegistryServer:
        server = start_registry(tmp_path / f"registry-{len(started)}", **kwargs)
        started.append(server)
        return server

    try:
        yield factory
    finally:
        for server in started:
            server.stop()


# -- seeded images ---------------------------------------------------------------------

_seeded: dict[str, SeededImages] = {}


def seeded_images(server: RegistryServer) -> SeededImages:
    """The standard images (``tests.support.images.STANDARD_IMAGES``) in ``server``,
    pushed on first use per registry."""
    key = f"{server.url} {server.directory}"
    if key not in _seeded:
        _seeded[key] = seed_standard_images(server)
    return _seeded[key]


@pytest.fixture
def seeded_registry(registry: RegistryServer) -> tuple[RegistryServer, SeededImages]:
    """``(registry, images)``: the plain registry with the standard images pushed."""
    return registry, seeded_images(registry)


@pytest.fixture
def seeded_any_registry(any_registry: RegistryServer) -> tuple[RegistryServer, SeededImages]:
    """Like ``seeded_registry``, for every mode."""
    return any_registry, seeded_images(any_registry)


# -- dockerd -----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def _dockerd_session() -> Iterator[DockerDaemon]:
    daemon = start_dockerd()
    try:
        yield daemon
    finally:
        daemon.stop()


@pytest.fixture
def dockerd(_dockerd_session: DockerDaemon) -> DockerDaemon:
    """The private daemon with no images or containers (so loads read every layer)."""
    _dockerd_session.remove_all_images()
    return _dockerd_session
