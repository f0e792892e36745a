"""Smoke tests of the test rig itself: every registry mode, the token server, the image
builders, skopeo against our registry, and the private dockerd (load, run, pull)."""

from __future__ import annotations

import base64
import gzip
import io
import json
import shutil
import ssl
import subprocess
import tarfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from email.message import Message
from pathlib import Path

import anyio
import pytest
import zstandard

from tests.support import pusher, require_binary
from tests.support.dockerd import DockerDaemon, write_minimal_archive
from tests.support.images import (
    DOCKER_LIST,
    OCI_INDEX,
    BuiltIndex,
    PushedImage,
    PushedIndex,
    SeededImages,
    build_image,
    busybox_image,
    busybox_index,
    make_layer_tar,
    multilayer_image,
    push_image,
    push_index,
    text_layer,
    uncompressed_image,
)
from tests.support.registry_server import RegistryServer
from tests.support.token_server import TokenPolicy

Seeded = tuple[RegistryServer, SeededImages]


def _get(
    url: str, *, context: ssl.SSLContext | None = None, headers: dict[str, str] | None = None
) -> tuple[int, Message, bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, context=context, timeout=30) as reply:
            return reply.status, reply.headers, reply.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.headers, exc.read()


# -- registries --------------------------------------------------------------------------


def test_push_and_fetch_back_in_every_mode(any_registry: RegistryServer) -> None:
    pushed = push_image(any_registry, "smoke/one", "v1", [text_layer("a.txt", "A\n")])

    fetched = pusher.get_manifest(any_registry, "smoke/one", "v1")
    assert fetched.body == pushed.manifest
    assert fetched.digest == pushed.manifest_digest
    assert fetched.media_type == pushed.manifest_media_type
    assert pusher.get_blob(any_registry, "smoke/one", pushed.config_digest) == pushed.config
    assert pusher.get_blob(any_registry, "smoke/one", pushed.layer_digests[0]) == (
        pushed.layers[0].blob
    )
    assert pushed.reference == f"{any_registry.host}/smoke/one:v1"

    # Without credentials the protected modes answer 401 with the right challenge.
    status, headers, _ = _get(
        f"{any_registry.url}/v2/smoke/one/manifests/v1", context=any_registry.ssl_context()
    )
    expected = {"none": 200, "basic": 401, "token": 401}[any_registry.auth]
    assert status == expected
    if any_registry.auth == "basic":
        assert headers["WWW-Authenticate"].startswith("Basic ")
    if any_registry.auth == "token":
        assert any_registry.token_server is not None
        assert headers["WWW-Authenticate"].startswith(
            f'Bearer realm="{any_registry.token_server.realm}"'
        )


def test_tls_registry_refuses_unverified_clients(tls_registry: RegistryServer) -> None:
    assert tls_registry.url.startswith("https://127.0.0.1:")
    with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
        urllib.request.urlopen(f"{tls_registry.url}/v2/", timeout=10)
    assert _get(f"{tls_registry.url}/v2/", context=tls_registry.ssl_context())[0] == 200
    # The certificate is valid for "localhost" too.
    localhost = tls_registry.url.replace("127.0.0.1", "localhost")
    assert _get(f"{localhost}/v2/", context=tls_registry.ssl_context())[0] == 200


def test_basic_auth_checks_the_password(basic_auth_registry: RegistryServer) -> None:
    url = f"{basic_auth_registry.url}/v2/"
    context = basic_auth_registry.ssl_context()

    def with_password(password: str) -> int:
        raw = f"{basic_auth_registry.username}:{password}".encode()
        return _get(
            url,
            context=context,
            headers={"Authorization": "Basic " + base64.b64encode(raw).decode()},
        )[0]

    assert basic_auth_registry.password
    assert with_password(basic_auth_registry.password) == 200
    assert with_password("wrong") == 401


def test_basic_auth_over_plain_http(basic_auth_http_registry: RegistryServer) -> None:
    pushed = push_image(basic_auth_http_registry, "smoke/basic-http", "latest")
    assert pusher.get_manifest(basic_auth_http_registry, "smoke/basic-http", "latest").digest == (
        pushed.manifest_digest
    )


def test_registry_accepts_foreign_layer_urls(registry: RegistryServer) -> None:
    foreign = text_layer("foreign.txt", "not in the registry\n")
    foreign = type(foreign)(
        foreign.tar,
        foreign.blob,
        "gzip",
        media_type="application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
        urls=("https://example.invalid/layer.tar.gz",),
    )
    pushed = push_image(registry, "smoke/foreign", "latest", [text_layer("b", "b"), foreign])
    manifest = json.loads(pusher.get_manifest(registry, "smoke/foreign", "latest").body)
    assert manifest["layers"][1]["urls"] == ["https://example.invalid/layer.tar.gz"]
    assert not pusher.blob_exists(registry, "smoke/foreign", pushed.layer_digests[1])


# -- token server --------------------------------------------------------------------------


def test_token_flow_records_requests(token_registry: RegistryServer) -> None:
    tokens = token_registry.token_server
    assert tokens is not None
    push_image(token_registry, "smoke/token", "latest")
    fetched = tokens.requests_from(pusher.USER_AGENT)
    assert fetched, "the pusher should have fetched a token"
    first = fetched[0]
    assert first.method == "GET" and first.used_basic_auth
    assert (first.username, first.password) == (token_registry.username, token_registry.password)
    assert first.account == token_registry.username
    assert first.service == "test-registry"
    assert first.scopes == ("repository:smoke/token:pull,push",)
    assert first.status == 200
    assert first.granted == (
        {"type": "repository", "name": "smoke/token", "actions": ["pull", "push"]},
    )

    # The reply shape and the JWT claims.
    query = urllib.parse.urlencode({"service": "test-registry", "scope": "repository:x/y:pull"})
    raw = f"{token_registry.username}:{token_registry.password}".encode()
    status, _, body = _get(
        f"{tokens.realm}?{query}",
        context=token_registry.ssl_context(),
        headers={"Authorization": "Basic " + base64.b64encode(raw).decode()},
    )
    assert status == 200
    answer = json.loads(body)
    assert answer["token"] == answer["access_token"]
    assert answer["expires_in"] == 300 and answer["issued_at"].endswith("Z")
    claims = tokens.decode(answer["token"])
    assert claims["aud"] == "test-registry" and claims["iss"] == "test-issuer"
    assert claims["access"] == [{"type": "repository", "name": "x/y", "actions": ["pull"]}]
    assert claims["exp"] == claims["iat"] - 60 + 300


def test_token_server_refuses_bad_credentials_and_anonymous(token_registry: RegistryServer) -> None:
    tokens = token_registry.token_server
    assert tokens is not None
    context = token_registry.ssl_context()
    query = "service=test-registry&scope=repository:smoke/x:pull"
    assert _get(f"{tokens.realm}?{query}", context=context)[0] == 401
    bad = base64.b64encode(f"{token_registry.username}:nope".encode()).decode()
    assert (
        _get(f"{tokens.realm}?{query}", context=context, headers={"Authorization": f"Basic {bad}"})[
            0
        ]
        == 401
    )

    tokens.policy.allow_anonymous = True  # reset by the fixture for the next test
    status, _, body = _get(f"{tokens.realm}?{query}", context=context)
    assert status == 200
    assert tokens.decode(json.loads(body)["token"])["access"][0]["actions"] == ["pull"]
    assert [r.status for r in tokens.requests] == [401, 401, 200]


def test_token_server_injected_failures_and_grants(token_registry: RegistryServer) -> None:
    tokens = token_registry.token_server
    assert tokens is not None
    tokens.fail_next(503, 429, retry_after="1")
    tokens.policy.grant = lambda account, kind, name, actions: ["pull"]
    context = token_registry.ssl_context()
    query = "service=test-registry&scope=repository:smoke/x:pull,push"
    statuses = [_get(f"{tokens.realm}?{query}", context=context) for _ in range(3)]
    assert [s for s, _, _ in statuses[:2]] == [503, 429]
    assert statuses[1][1]["Retry-After"] == "1"
    assert statuses[2][0] == 401  # anonymous refused; the injected failures came first


def test_oauth2_password_and_refresh_grants(token_registry: RegistryServer) -> None:
    tokens = token_registry.token_server
    assert tokens is not None
    context = token_registry.ssl_context()

    def post(form: dict[str, str]) -> tuple[int, dict[str, object]]:
        body = urllib.parse.urlencode(form).encode()
        request = urllib.request.Request(tokens.realm, data=body, method="POST")
        try:
            with urllib.request.urlopen(request, context=context, timeout=10) as reply:
                return reply.status, json.loads(reply.read())
        except urllib.error.HTTPError as exc:
            with exc:
                return exc.code, json.loads(exc.read())

    status, answer = post(
        {
            "grant_type": "password",
            "username": token_registry.username or "",
            "password": token_registry.password or "",
            "service": "test-registry",
            "scope": "repository:smoke/oauth:pull",
            "client_id": "dockerdrag",
            "access_type": "offline",
        }
    )
    assert status == 200 and "refresh_token" in answer
    status, again = post(
        {
            "grant_type": "refresh_token",
            "refresh_token": str(answer["refresh_token"]),
            "service": "test-registry",
            "scope": "repository:smoke/oauth:pull",
            "client_id": "dockerdrag",
        }
    )
    assert status == 200
    assert tokens.decode(str(again["access_token"]))["sub"] == token_registry.username
    assert post({"grant_type": "refresh_token", "refresh_token": "bogus"})[0] == 401
    assert [r.grant_type for r in tokens.requests] == ["password", "refresh_token", "refresh_token"]


def test_short_lived_tokens_expire_on_time(
    registry_factory: Callable[..., RegistryServer],
) -> None:
    server = registry_factory(auth="token", tls=False, token_policy=TokenPolicy(ttl=1))
    tokens = server.token_server
    assert tokens is not None
    token = tokens.issue_token([{"type": "repository", "name": "smoke/ttl", "actions": ["pull"]}])
    url = f"{server.url}/v2/smoke/ttl/tags/list"
    headers = {"Authorization": f"Bearer {token}"}
    assert _get(url, headers=headers)[0] == 404  # authorized; the repository is unknown
    time.sleep(1.2)  # the token's whole lifetime: nothing to poll for
    status, reply_headers, _ = _get(url, headers=headers)
    assert status == 401
    assert 'error="invalid_token"' in reply_headers["WWW-Authenticate"]


# -- images -----------------------------------------------------------------------------------


def test_images_are_deterministic() -> None:
    first = build_image([text_layer("x", "x")], cmd=["true"])
    second = build_image([text_layer("x", "x")], cmd=["true"])
    assert first == second
    assert first.manifest_digest == second.manifest_digest
    tar = make_layer_tar({"d/f": b"data"})
    with tarfile.open(fileobj=io.BytesIO(tar)) as archive:
        names = archive.getnames()
    assert names == ["d", "d/f"]


def test_multilayer_uncompressed_and_zstd_images() -> None:
    image = multilayer_image()
    assert len(image.layers) == 4 and image.layer_digests[0] == image.layer_digests[2]
    config = json.loads(image.config)
    assert config["rootfs"]["diff_ids"] == image.diff_ids
    assert sum(1 for h in config["history"] if h.get("empty_layer")) == 2
    assert sum(1 for h in config["history"] if not h.get("empty_layer")) == 4
    for built in image.layers:
        assert gzip.decompress(built.blob) == built.tar

    plain = uncompressed_image()
    assert plain.layers[0].blob == plain.layers[0].tar and plain.layers[0].tar.endswith(
        b"\0" * 3072
    )
    zstd_layer = text_layer("z", "z", "zstd")
    assert zstandard.ZstdDecompressor().decompress(zstd_layer.blob) == zstd_layer.tar


def test_multiarch_index_round_trip(registry: RegistryServer) -> None:
    for media_types, index_type in (("oci", OCI_INDEX), ("docker", DOCKER_LIST)):
        index = busybox_index(media_types)
        assert isinstance(index, BuiltIndex)
        pushed = push_index(registry, f"smoke/multiarch-{media_types}", "latest", index)
        assert isinstance(pushed, PushedIndex)
        fetched = pusher.get_manifest(registry, pushed.repo, "latest")
        assert (fetched.body, fetched.media_type) == (index.index, index_type)
        doc = json.loads(fetched.body)
        platforms = [
            (m["platform"]["os"], m["platform"]["architecture"], m["platform"].get("variant"))
            for m in doc["manifests"]
        ]
        assert platforms == [
            ("linux", "amd64", None),
            ("linux", "arm64", "v8"),
            ("linux", "arm", "v7"),
            ("unknown", "unknown", None),
        ]
        attestation = doc["manifests"][3]
        assert attestation["annotations"] == {
            "vnd.docker.reference.digest": index.images[0].manifest_digest,
            "vnd.docker.reference.type": "attestation-manifest",
        }
        arm = pushed.image("linux", "arm", "v7")
        assert pusher.get_manifest(registry, pushed.repo, arm.manifest_digest).body == arm.manifest


def test_seeded_registry(seeded_registry: Seeded) -> None:
    server, images = seeded_registry
    busybox = images["busybox"]
    assert isinstance(busybox, PushedImage)
    assert busybox.reference == f"{server.host}/test/busybox:latest"
    assert pusher.list_tags(server, "test/busybox") == ["latest"]
    for pushed in images.values():
        assert pusher.get_manifest(server, pushed.repo, pushed.tag or "").digest == pushed.digest


def test_skopeo_inspects_the_plain_registry(seeded_registry: Seeded) -> None:
    server, images = seeded_registry
    skopeo = shutil.which("skopeo")
    assert skopeo, "skopeo is missing: install Debian's skopeo (see .ci/run)"
    result = subprocess.run(
        [skopeo, "inspect", "--tls-verify=false", f"docker://{server.host}/test/busybox:latest"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    info = json.loads(result.stdout)
    assert info["Digest"] == images["busybox"].manifest_digest
    assert info["Layers"] == images["busybox"].layer_digests
    assert info["Architecture"] == "amd64"


def test_skopeo_inspects_the_token_registry(token_registry: RegistryServer) -> None:
    pushed = push_image(token_registry, "smoke/skopeo", "latest")
    certs = token_registry.directory / "skopeo-certs"
    certs.mkdir(exist_ok=True)
    assert token_registry.ca_pem_path is not None
    shutil.copy(token_registry.ca_pem_path, certs / "ca.crt")
    result = subprocess.run(
        [
            "skopeo",
            "inspect",
            "--raw",
            "--cert-dir",
            str(certs),
            "--creds",
            f"{token_registry.username}:{token_registry.password}",
            f"docker://{token_registry.host}/smoke/skopeo:latest",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert result.stdout.encode() == pushed.manifest


def test_skopeo_copy_and_umoci_unpack(seeded_registry: Seeded, tmp_path: Path) -> None:
    server, images = seeded_registry
    layout = tmp_path / "layout"
    subprocess.run(
        [
            "skopeo", "copy", "--quiet", "--src-tls-verify=false",
            f"docker://{server.host}/test/busybox-oci:latest", f"oci:{layout}:latest",
        ],
        check=True, timeout=60,
    )  # fmt: skip
    index = json.loads((layout / "index.json").read_bytes())
    assert index["manifests"][0]["digest"] == images["busybox_oci"].manifest_digest
    bundle = tmp_path / "bundle"
    subprocess.run(
        ["umoci", "unpack", "--image", f"{layout}:latest", str(bundle)],
        check=True, timeout=60, capture_output=True,
    )  # fmt: skip
    assert (bundle / "rootfs" / "bin" / "busybox").read_bytes() == Path("/bin/busybox").read_bytes()
    assert (bundle / "rootfs" / "bin" / "sh").readlink() == Path("busybox")


def test_registry_restart_keeps_port_and_data(
    registry_factory: Callable[..., RegistryServer],
) -> None:
    server = registry_factory()
    pushed = push_image(server, "smoke/restart", "latest")
    port = server.port
    server.stop_registry_process()
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"{server.url}/v2/", timeout=5)
    server.restart()
    assert server.port == port
    assert pusher.get_manifest(server, "smoke/restart", "latest").digest == pushed.digest


def test_a_missing_binary_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="install the Debian package 'nothing'"):
        require_binary("/nonexistent/dockerdrag-no-such-tool", "nothing")


@pytest.mark.anyio
async def test_anyio_plugin_runs_async_tests(registry: RegistryServer) -> None:
    status = await anyio.to_thread.run_sync(lambda: _get(f"{registry.url}/v2/")[0])
    assert status == 200


# -- dockerd ------------------------------------------------------------------------------------


def test_dockerd_loads_and_runs_busybox(dockerd: DockerDaemon, tmp_path: Path) -> None:
    image = busybox_image()
    archive = write_minimal_archive(
        tmp_path / "busybox.tar", image.config, [image.layers[0].tar], ["smoke/busybox:latest"]
    )
    assert dockerd.load(archive) == ["smoke/busybox:latest"]
    assert dockerd.image_id("smoke/busybox:latest") == image.config_digest
    assert dockerd.run("smoke/busybox:latest", "echo", "ok") == "ok\n"
    assert dockerd.run("smoke/busybox:latest", "sh", "-c", "echo $((6 * 7))") == "42\n"


def test_dockerd_pulls_from_the_plain_registry(
    dockerd: DockerDaemon, seeded_registry: Seeded, tmp_path: Path
) -> None:
    _, images = seeded_registry
    assert dockerd.image_ids() == []  # the fixture emptied the daemon
    multi = images["multiarch"]
    dockerd.pull(multi.reference)
    assert dockerd.image_id(multi.reference) == multi.images[0].config_digest
    assert dockerd.run(multi.reference, "echo", "ok") == "ok\n"
    # Every seeded image Docker 20.10 can handle (zstd needs Docker 23+).
    for name in ("busybox", "busybox_oci", "multilayer", "multilayer_oci", "uncompressed"):
        pushed = images[name]
        dockerd.pull(pushed.reference)
        assert dockerd.image_id(pushed.reference) == pushed.config_digest
    saved = dockerd.save(tmp_path / "saved.tar", multi.reference)
    with tarfile.open(saved) as archive:
        member = archive.extractfile("manifest.json")
        assert member is not None
        manifest = json.load(member)
    assert manifest[0]["RepoTags"] == [multi.reference]


def test_dockerd_pulls_with_token_auth(
    dockerd: DockerDaemon, token_registry: RegistryServer
) -> None:
    pushed = push_image(token_registry, "smoke/docker-token", "latest")
    assert token_registry.username and token_registry.password
    dockerd.login(token_registry.host, token_registry.username, token_registry.password)
    dockerd.pull(pushed.reference)
    assert dockerd.image_id(pushed.reference) == pushed.config_digest
    assert token_registry.token_server is not None
    assert any(
        r.user_agent and r.user_agent.startswith("docker/")
        for r in token_registry.token_server.requests
    )
