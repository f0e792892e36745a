"""The Python API's contract: every parameter documented, ``credentials=`` in the same
forms everywhere (bound to one registry when given without a host), and a typed error
when called from an event loop other than asyncio."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

import dockerdrag
from dockerdrag import (
    Credentials,
    DockerDragError,
    Puller,
    UnsupportedEventLoopError,
    UsageError,
    pull_image,
    pull_images,
)
from dockerdrag.parameter_docs import documented
from tests.support.archive_check import read_docker_archive
from tests.support.images import PushedImage, push_image, text_layer
from tests.support.registry_server import RegistryServer

DOCUMENTED: list[Callable[..., Any]] = [
    pull_image,
    pull_images,
    Puller,
    Puller.platforms,
    Puller.inspect,
    Puller.pull,
    Puller.pull_many,
    Puller.pull_list,
    Puller.pull_events,
]


@pytest.mark.parametrize("function", DOCUMENTED, ids=lambda f: f.__qualname__)
def test_every_parameter_is_documented(function: Callable[..., Any]) -> None:
    doc = inspect.getdoc(function) or ""
    target = function.__init__ if isinstance(function, type) else function  # type: ignore[misc]
    parameters = [name for name in inspect.signature(target).parameters if name != "self"]
    assert parameters
    missing = [name for name in parameters if f"``{name}``" not in doc]
    assert not missing, f"{function.__qualname__} does not document {missing}"


@pytest.mark.parametrize("function", [pull_image, pull_images, Puller])
def test_help_shows_each_client_option_in_full(function: Callable[..., Any]) -> None:
    # One text per parameter (dockerdrag.parameter_docs), shown wherever it is taken.
    doc = " ".join((inspect.getdoc(function) or "").split())
    assert "``insecure``: registries (``host[:port]``) that may be reached over plain" in doc
    assert "as for" not in doc  # no "see elsewhere" for a parameter
    assert "``credentials``: a mapping of registry hosts" in doc


def test_a_parameter_without_a_text_is_refused() -> None:
    def takes(reference: str, colour: str) -> None:
        """Takes a colour."""

    with pytest.raises(TypeError, match=r"\['colour'\]"):
        documented()(takes)
    documented(colour="the colour to pull in.")(takes)
    assert "``colour``: the colour to pull in." in (takes.__doc__ or "")
    assert "``reference``: the image:" in (takes.__doc__ or "")


@pytest.fixture
def private(
    basic_auth_registry: RegistryServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> tuple[RegistryServer, PushedImage, Credentials]:
    """A htpasswd registry, an image in it and its credentials; no Docker config."""
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "no-docker-config"))
    server = basic_auth_registry
    assert server.username and server.password
    pushed = push_image(server, "test/forms", "v1", [text_layer("f.txt", "forms\n")])
    return server, pushed, Credentials(username=server.username, password=server.password)


@pytest.mark.parametrize("form", ["bare", "by-host"])
def test_credentials_take_the_same_forms_everywhere(
    private: tuple[RegistryServer, PushedImage, Credentials], tmp_path: Path, form: str
) -> None:
    server, pushed, credentials = private
    given: Any = credentials if form == "bare" else {server.host: credentials}
    common: dict[str, Any] = {
        "ca_cert": server.ca_pem_path,
        "cache_dir": tmp_path / "cache",
        "credentials": given,
    }

    async def main() -> None:
        await pull_image(pushed.reference, output=tmp_path / "a.tar", **common)
        await pull_images([pushed.reference], output=tmp_path / "b.tar", **common)
        async with Puller(**common) as puller:
            await puller.pull(pushed.reference, output=tmp_path / "c.tar")
            found = await puller.inspect(pushed.reference)
            assert str(found.digest) == pushed.manifest_digest

    anyio.run(main)
    for name in ("a", "b", "c"):
        (image,) = read_docker_archive(tmp_path / f"{name}.tar")
        assert image.config == pushed.config


def test_bare_credentials_never_reach_a_second_registry(
    private: tuple[RegistryServer, PushedImage, Credentials],
    registry: RegistryServer,
    tmp_path: Path,
) -> None:
    server, pushed, credentials = private
    elsewhere = push_image(registry, "test/elsewhere", "v1", [text_layer("e.txt", "e\n")])

    async def main() -> None:
        async with Puller(
            ca_cert=server.ca_pem_path,
            insecure=[registry.host],
            cache_dir=tmp_path / "cache",
            credentials=credentials,
        ) as puller:
            await puller.pull(pushed.reference, output=tmp_path / "a.tar")
            with pytest.raises(UsageError, match=f"given for one registry \\({server.host}\\)"):
                await puller.pull(elsewhere.reference, output=tmp_path / "b.tar")
        with pytest.raises(UsageError, match="given for one registry"):
            await pull_images(
                [pushed.reference, elsewhere.reference],
                output=tmp_path / "c.tar",
                ca_cert=server.ca_pem_path,
                insecure=[registry.host],
                cache_dir=tmp_path / "cache",
                credentials=credentials,
            )

    logged = len(registry.log_text())
    anyio.run(main)
    assert not (tmp_path / "b.tar").exists() and not (tmp_path / "c.tar").exists()
    assert "/v2/test/elsewhere" not in registry.log_text()[logged:]


def test_another_event_loop_gets_a_typed_error(registry: RegistryServer, tmp_path: Path) -> None:
    pushed = push_image(registry, "test/loop", "v1", [text_layer("l.txt", "loop\n")])
    options: dict[str, Any] = {"insecure": [registry.host], "cache_dir": tmp_path / "cache"}

    async def with_function() -> None:
        await pull_image(pushed.reference, output=tmp_path / "x.tar", **options)

    async def with_client() -> None:
        async with Puller(**options) as puller:
            await puller.pull(pushed.reference, output=tmp_path / "x.tar")

    for main in (with_function, with_client):
        with pytest.raises(UnsupportedEventLoopError, match="dockerdrag runs on asyncio") as info:
            anyio.run(main, backend="trio")
        assert isinstance(info.value, DockerDragError)
    assert "UnsupportedEventLoopError" in dockerdrag.__all__
    assert not (tmp_path / "x.tar").exists()
    anyio.run(with_function)  # the same on asyncio works
    assert (tmp_path / "x.tar").exists()


def test_the_api_runs_on_uvloop(
    registry: RegistryServer, tls_registry: RegistryServer, tmp_path: Path
) -> None:
    """uvloop's loop (the command's for plain HTTP) serves the API over plain HTTP and
    over TLS, and writes the archive asyncio's does."""

    async def pull(reference: str, output: Path, cache: Path) -> None:
        await pull_image(
            reference,
            output=output,
            insecure=[registry.host],
            ca_cert=tls_registry.ca_pem_path,
            cache_dir=cache,
        )

    for server in (registry, tls_registry):
        pushed = push_image(server, "test/uvloop", "v1", [text_layer("u.txt", "uv\n")])
        written: dict[str, bytes] = {}
        for loop in ("asyncio", "uvloop"):
            output = tmp_path / f"{server.port}-{loop}.tar"
            options = {"use_uvloop": loop == "uvloop"}
            anyio.run(pull, pushed.reference, output, tmp_path / loop, backend_options=options)
            written[loop] = output.read_bytes()
        assert written["uvloop"] == written["asyncio"]
        (archived,) = read_docker_archive(tmp_path / f"{server.port}-uvloop.tar")
        assert archived.config == pushed.config
