"""Docker Hub's anonymous flow: 401 challenge -> anonymous token per scope -> pull.

Docker Hub answers `/v2/` with `WWW-Authenticate: Bearer realm=...,service=...`
and hands anonymous pull tokens for public repositories. The local registry is
configured the same way (token auth, anonymous pulls allowed).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from dockerdrag import Puller
from tests.support.archive_check import read_docker_archive
from tests.support.images import push_image, text_layer
from tests.support.registry_server import TOKEN_SERVICE, RegistryServer
from tests.support.token_server import TokenPolicy

pytestmark = pytest.mark.anyio


async def test_anonymous_token_is_fetched_once_per_scope(
    registry_factory: Callable[..., RegistryServer], tmp_path: Path
) -> None:
    server = registry_factory(
        auth="token",
        tls=False,
        token_tls=False,
        token_policy=TokenPolicy(users={"pusher": "pw-push"}, allow_anonymous=True),
        username="pusher",
        password="pw-push",
    )
    layers = [text_layer(f"f{i}.txt", f"layer {i}\n") for i in range(4)]
    one = push_image(server, "public/one", "latest", layers)
    two = push_image(server, "public/two", "latest", layers[:2])
    assert server.token_server is not None
    server.token_server.clear_requests()
    options: dict[str, Any] = {
        "insecure": [server.host],
        "cache_dir": tmp_path / "cache",
        "use_docker_config": False,
    }
    async with Puller(**options) as puller:
        await puller.pull(one.reference, output=tmp_path / "one.tar")
        await puller.pull(two.reference, output=tmp_path / "two.tar")
    requests = server.token_server.requests
    # One anonymous token per repository scope, reused for manifest, config and every layer.
    assert [r.scopes for r in requests] == [
        ("repository:public/one:pull",),
        ("repository:public/two:pull",),
    ]
    assert all(r.authorization is None and r.username is None for r in requests)
    assert all(r.service == TOKEN_SERVICE and r.account is None for r in requests)
    assert read_docker_archive(tmp_path / "one.tar")[0].diff_ids == one.diff_ids
    assert read_docker_archive(tmp_path / "two.tar")[0].diff_ids == two.diff_ids
