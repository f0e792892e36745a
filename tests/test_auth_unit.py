"""Pure parts of auth and transport rules: challenges, Docker config credentials, the token
cache (against a scripted token client), redirect/proxy/TLS decisions, redaction."""

from __future__ import annotations

import base64
import json
import os
import ssl
import stat
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from urllib.parse import urlsplit

import anyio
import pytest
import trustme

from dockerdrag import redirects, tls_proxy, transport
from dockerdrag.auth import (
    Challenge,
    RegistryAuth,
    parse_www_authenticate,
    refusal_of,
)
from dockerdrag.conventions import docker_certs_d_dirs
from dockerdrag.credentials import Credentials, load_docker_credentials
from dockerdrag.errors import (
    AuthenticationError,
    NetworkError,
    RegistryError,
    TLSError,
    UsageError,
)
from dockerdrag.retry import RetryPolicy
from dockerdrag.tokens import TokenReply, TokenRequest


def test_parse_bearer_challenge_with_commas_in_quotes() -> None:
    header = (
        'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
        'scope="repository:library/ubuntu:pull,push",error="invalid_token"'
    )
    (challenge,) = parse_www_authenticate(header)
    assert challenge.scheme == "bearer"
    assert challenge.params == {
        "realm": "https://auth.docker.io/token",
        "service": "registry.docker.io",
        "scope": "repository:library/ubuntu:pull,push",
        "error": "invalid_token",
    }


def test_parse_several_challenges_and_escapes() -> None:
    header = 'Basic realm="Registry \\"x\\"", Bearer realm="https://a/t", service=reg'
    basic, bearer = parse_www_authenticate(header)
    assert basic.scheme == "basic" and basic.params["realm"] == 'Registry "x"'
    assert bearer.scheme == "bearer" and bearer.params == {"realm": "https://a/t", "service": "reg"}


def test_parse_garbage_gives_no_params() -> None:
    assert parse_www_authenticate("") == []
    (challenge,) = parse_www_authenticate("Negotiate")
    assert challenge.scheme == "negotiate" and challenge.params == {}


def test_credentials_repr_hides_secrets() -> None:
    creds = Credentials(username="alice", password="s3cret-pw")
    assert "s3cret-pw" not in repr(creds) and "s3cret-pw" not in str(creds)
    token = Credentials(identity_token="eyJsecret")
    assert "eyJsecret" not in repr(token)


def write_config(tmp_path: Path, config: dict[str, object]) -> Path:
    (tmp_path / "config.json").write_text(json.dumps(config))
    return tmp_path


def test_config_auths_base64_and_hub_key(tmp_path: Path) -> None:
    encoded = base64.b64encode(b"bob:hunter2").decode()
    config_dir = write_config(
        tmp_path,
        {
            "auths": {
                "https://index.docker.io/v1/": {"auth": encoded},
                "reg.example:5000": {"auth": base64.b64encode(b"carol:pw").decode()},
            }
        },
    )
    hub = load_docker_credentials("registry-1.docker.io", config_dir)
    assert hub == Credentials(username="bob", password="hunter2")
    other = load_docker_credentials("reg.example:5000", config_dir)
    assert other == Credentials(username="carol", password="pw")
    assert load_docker_credentials("elsewhere.example", config_dir) is None


def test_config_identity_token(tmp_path: Path) -> None:
    config_dir = write_config(
        tmp_path, {"auths": {"https://reg.example": {"auth": "", "identitytoken": "refresh-1"}}}
    )
    found = load_docker_credentials("reg.example", config_dir)
    assert found is not None and found.identity_token == "refresh-1"


def install_helper(bin_dir: Path, name: str, script: str, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir.mkdir(exist_ok=True)
    helper = bin_dir / f"docker-credential-{name}"
    helper.write_text("#!/bin/sh\n" + script)
    helper.chmod(helper.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")


def test_cred_helper_is_run_with_server_on_stdin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "asked.txt"
    install_helper(
        tmp_path / "bin",
        "testhelper",
        f'read server; echo "$1 $server" > {log}\n'
        'echo \'{"ServerURL":"x","Username":"dave","Secret":"pw-from-helper"}\'\n',
        monkeypatch,
    )
    config_dir = write_config(tmp_path, {"credHelpers": {"reg.example:5000": "testhelper"}})
    found = load_docker_credentials("reg.example:5000", config_dir)
    assert found == Credentials(username="dave", password="pw-from-helper")
    assert log.read_text().strip() == "get reg.example:5000"


def test_creds_store_token_user_means_identity_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install_helper(
        tmp_path / "bin",
        "store",
        'read server; echo \'{"Username":"<token>","Secret":"idtok"}\'\n',
        monkeypatch,
    )
    config_dir = write_config(tmp_path, {"credsStore": "store"})
    found = load_docker_credentials("registry-1.docker.io", config_dir)
    assert found is not None and found.identity_token == "idtok" and not found.password


def test_missing_helper_is_a_clear_error(tmp_path: Path) -> None:
    config_dir = write_config(tmp_path, {"credHelpers": {"reg.example": "nonexistent-xyz"}})
    with pytest.raises(AuthenticationError, match="docker-credential-nonexistent-xyz"):
        load_docker_credentials("reg.example", config_dir)


def test_hub_cred_helper_is_asked_with_the_index_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "asked.txt"
    install_helper(
        tmp_path / "bin",
        "hub",
        f'read server; echo "$server" > {log}\necho \'{{"Username":"u","Secret":"s"}}\'\n',
        monkeypatch,
    )
    config_dir = write_config(tmp_path, {"credHelpers": {"https://index.docker.io/v1/": "hub"}})
    assert load_docker_credentials("registry-1.docker.io", config_dir) == Credentials("u", "s")
    assert log.read_text().strip() == "https://index.docker.io/v1/"


def test_creds_store_without_entry_means_anonymous(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install_helper(
        tmp_path / "bin",
        "empty",
        "read server; echo 'credentials not found in native keychain'; exit 1\n",
        monkeypatch,
    )
    encoded = base64.b64encode(b"erin:pw").decode()
    config_dir = write_config(
        tmp_path, {"credsStore": "empty", "auths": {"reg.example": {"auth": encoded}}}
    )
    # As Docker: a configured store that has no entry means anonymous, whatever `auths` holds.
    assert load_docker_credentials("reg.example", config_dir) is None
    assert load_docker_credentials("other.example", config_dir) is None


def test_failing_helper_error_names_helper_not_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install_helper(tmp_path / "bin", "broken", "echo 'boom secret-xyz'; exit 3\n", monkeypatch)
    config_dir = write_config(tmp_path, {"credsStore": "broken"})
    with pytest.raises(AuthenticationError) as info:
        load_docker_credentials("reg.example", config_dir)
    assert "docker-credential-broken" in str(info.value) and "secret-xyz" not in str(info.value)


# --------------------------------------------------------------------------- tokens


class FakeTokenClient:
    """Answers token requests from a script and records them (no network)."""

    def __init__(self, *replies: TokenReply | Exception) -> None:
        self.replies = list(replies)
        self.calls: list[dict[str, object]] = []

    async def send_token_request(self, request: TokenRequest) -> TokenReply:
        form = request.form
        self.calls.append(
            {"method": request.method, "url": request.realm, "query": list(request.query)}
            | {"headers": dict(request.headers), "form": dict(form) if form is not None else None}
        )
        await anyio.sleep(0)
        reply = self.replies.pop(0) if len(self.replies) > 1 else self.replies[0]
        if isinstance(reply, Exception):
            raise reply
        return reply


def token_reply(token: str = "tok-1", extra: Mapping[str, object] | None = None) -> TokenReply:
    return TokenReply(200, json.dumps({"token": token, **(extra or {})}).encode())


def bearer_auth(
    realm: str = "https://auth.example/token",
    credentials: Credentials | None = None,
    plain_http_allowed: Callable[[str], bool] = lambda host: False,
) -> RegistryAuth:
    return RegistryAuth(
        "reg.example",
        credentials=credentials,
        plain_http_allowed=plain_http_allowed,
        challenge=Challenge("bearer", {"realm": realm, "service": "svc"}),
        retry=RetryPolicy(base_delay=0.01),
    )


SCOPE = "repository:team/app:pull"


@pytest.mark.anyio
async def test_token_get_sends_account_and_basic_over_https() -> None:
    client = FakeTokenClient(token_reply())
    auth = bearer_auth(credentials=Credentials("alice", "pw-1"))
    assert await auth.header_for(SCOPE, client) == "Bearer tok-1"
    (call,) = client.calls
    assert call["method"] == "GET" and call["url"] == "https://auth.example/token"
    assert call["query"] == [("service", "svc"), ("account", "alice"), ("scope", SCOPE)]
    assert call["headers"] == {"Authorization": Credentials("alice", "pw-1").basic_header()}


@pytest.mark.anyio
async def test_identity_token_uses_refresh_token_post() -> None:
    client = FakeTokenClient(token_reply(extra={"access_token": "ignored"}))
    auth = bearer_auth(credentials=Credentials("alice", identity_token="refresh-9"))
    await auth.header_for(SCOPE, client)
    (call,) = client.calls
    assert call["method"] == "POST" and call["headers"] == {}
    form = call["form"]
    assert isinstance(form, dict)
    assert form["grant_type"] == "refresh_token" and form["refresh_token"] == "refresh-9"
    assert form["scope"] == SCOPE and form["service"] == "svc"


@pytest.mark.parametrize(("allowed", "sent"), [(False, False), (True, True)])
@pytest.mark.anyio
async def test_plain_http_realm_gets_credentials_only_if_named(allowed: bool, sent: bool) -> None:
    client = FakeTokenClient(token_reply())
    auth = bearer_auth(
        realm="http://auth.example:8080/token",
        credentials=Credentials("alice", "pw-1"),
        plain_http_allowed=lambda host: allowed and host == "auth.example:8080",
    )
    await auth.header_for(SCOPE, client)
    (call,) = client.calls
    assert ("Authorization" in call["headers"]) is sent  # type: ignore[operator]
    assert (("account", "alice") in call["query"]) is sent  # type: ignore[operator]


@pytest.mark.anyio
async def test_http_realm_refusal_explains_withheld_credentials() -> None:
    client = FakeTokenClient(TokenReply(401, b"{}"))
    auth = bearer_auth(realm="http://auth.example/token", credentials=Credentials("a", "pw-1"))
    with pytest.raises(AuthenticationError, match=r"insecure=\['auth\.example'\]") as info:
        await auth.header_for(SCOPE, client)
    assert "pw-1" not in str(info.value)


@pytest.mark.parametrize(
    ("reply", "lifetime"),
    [
        ({}, 60),
        ({"expires_in": 5}, 60),
        ({"expires_in": 300}, 300),
        ({"expires_in": "x"}, 60),
        ({"expires_in": True}, 60),
        ({"expires_in": float("nan")}, 60),
        ({"expires_in": float("inf")}, 60),
        ({"expires_in": -300}, 60),
        ({"expires_in": 10**30}, 3600),
    ],
    ids=["missing", "short", "normal", "string", "bool", "nan", "inf", "negative", "absurd"],
)
@pytest.mark.anyio
async def test_token_lifetime_is_clamped_to_a_sane_range(
    reply: dict[str, object], lifetime: float
) -> None:
    auth = bearer_auth()
    before = time.monotonic()
    await auth.header_for(SCOPE, FakeTokenClient(token_reply(extra=reply)))
    (cached,) = auth._tokens.values()
    assert lifetime <= cached.expires_at - before < lifetime + 5
    assert "tok-1" not in repr(cached) and "tok-1" not in repr(auth)


@pytest.mark.anyio
async def test_concurrent_callers_share_one_token_fetch() -> None:
    client = FakeTokenClient(token_reply("tok-a"), token_reply("tok-b"))
    auth = bearer_auth()
    headers: list[str | None] = []

    async def one() -> None:
        headers.append(await auth.header_for(SCOPE, client))

    async with anyio.create_task_group() as group:
        for _ in range(5):
            group.start_soon(one)
    assert headers == ["Bearer tok-a"] * 5 and len(client.calls) == 1


@pytest.mark.anyio
async def test_invalidate_keeps_a_token_fetched_meanwhile() -> None:
    client = FakeTokenClient(token_reply("tok-a"), token_reply("tok-b"))
    auth = bearer_auth()
    first = await auth.header_for(SCOPE, client)
    auth.invalidate(SCOPE, first)
    second = await auth.header_for(SCOPE, client)
    assert (first, second) == ("Bearer tok-a", "Bearer tok-b")
    auth.invalidate(SCOPE, first)  # a late 401 for the old token: keep the new one
    assert auth.cached_header(SCOPE) == "Bearer tok-b"


@pytest.mark.anyio
async def test_token_server_429_and_5xx_are_retried_with_retry_after() -> None:
    client = FakeTokenClient(
        TokenReply(429, b"", retry_after=0.0),
        TokenReply(503, b"", retry_after=0.0),
        NetworkError("connection reset"),
        token_reply(),
    )
    assert await bearer_auth().header_for(SCOPE, client) == "Bearer tok-1"
    assert len(client.calls) == 4


@pytest.mark.anyio
async def test_token_server_tls_error_is_not_retried() -> None:
    client = FakeTokenClient(TLSError("bad certificate"))
    with pytest.raises(TLSError):
        await bearer_auth().header_for(SCOPE, client)
    assert len(client.calls) == 1


@pytest.mark.parametrize(
    "body", [b"not json", b"[]", b'{"token": ""}', b'{"token": "a b"}', b'{"token": "x\\ny"}']
)
@pytest.mark.anyio
async def test_bad_token_replies_are_registry_errors(body: bytes) -> None:
    with pytest.raises(RegistryError):
        await bearer_auth().header_for(SCOPE, FakeTokenClient(TokenReply(200, body)))


def test_basic_password_refused_over_plain_http() -> None:
    auth = RegistryAuth(
        "reg.example",
        credentials=Credentials("alice", "pw-1"),
        challenge=Challenge("basic", {"realm": "r"}),
    )
    with pytest.raises(AuthenticationError, match=r"insecure=\['reg\.example'\]") as info:
        auth.cached_header(SCOPE, scheme="http")
    assert "pw-1" not in str(info.value)
    assert auth.cached_header(SCOPE) == Credentials("alice", "pw-1").basic_header()


# --------------------------------------------------------------------------- transport rules


@pytest.mark.parametrize(
    ("known", "header", "reason"),
    [
        (None, 'Bearer realm="https://a/t"', "challenge"),
        ("https://a/t", 'Bearer realm="https://a/t",error="invalid_token"', "invalid_token"),
        (
            "https://a/t",
            'Bearer realm="https://a/t",error="insufficient_scope"',
            "insufficient_scope",
        ),
        ("https://a/t", 'Bearer realm="https://a/t"', "denied"),
        ("https://a/t", 'Bearer realm="https://b/t"', "challenge"),
    ],
)
def test_refusal_of(known: str | None, header: str, reason: str) -> None:
    stored = Challenge("bearer", {"realm": known}) if known else None
    (challenge,) = parse_www_authenticate(header)
    assert refusal_of(stored, challenge).value == reason


@pytest.mark.parametrize(
    ("current", "location", "allowed"),
    [
        ("https://reg/v2/x", "https://cdn.example/blob?sig=1", True),
        ("https://reg/v2/x", "/v2/y", True),
        ("https://reg/v2/x", "http://cdn.example/blob", False),
        ("https://reg/v2/x", "ftp://cdn.example/blob", False),
        ("http://reg/v2/x", "http://cdn.example/blob", True),
    ],
)
def test_redirect_targets(current: str, location: str, allowed: bool) -> None:
    origin = urlsplit(current)
    if allowed:
        assert redirects.redirect_target(current, location, origin, "blob").startswith("http")
    else:
        with pytest.raises(RegistryError, match="refusing a redirect") as info:
            redirects.redirect_target(current, location, origin, "blob")
        assert "sig=1" not in str(info.value)


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("https://cdn.example/layer?sig=1", None),
        ("http://insecure.example:5000/layer", None),
        ("http://cdn.example/layer?sig=1", "over plain http from cdn.example"),
        ("ftp://cdn.example/layer", "not an http\\(s\\) URL"),
        ("/relative/layer", "not an http\\(s\\) URL"),
    ],
)
def test_foreign_urls_are_http_s_and_https_unless_insecure(url: str, problem: str | None) -> None:
    def insecure(host: str) -> bool:
        return host == "insecure.example:5000"

    if problem is None:
        redirects.check_foreign_url(url, "foreign layer", insecure)
        return
    with pytest.raises(RegistryError, match=problem) as info:
        redirects.check_foreign_url(url, "foreign layer", insecure)
    assert "sig=1" not in str(info.value)


def test_proxy_for_honours_no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTPS_PROXY", "proxy.example:3128")
    monkeypatch.setenv("NO_PROXY", "internal.example,127.0.0.1")
    t = transport.Transport()
    assert t.proxy_for("https://reg.example/v2/") == "http://proxy.example:3128"
    assert t.proxy_for("https://x.internal.example/v2/") is None
    assert t.proxy_for("https://127.0.0.1:5000/v2/") is None
    assert t.proxy_for("http://reg.example/v2/") is None  # no HTTP_PROXY


def test_default_certs_d_dirs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    assert docker_certs_d_dirs() == (
        Path("/etc/docker/certs.d"),
        tmp_path / "docker" / "certs.d",
    )
    assert transport.TransportConfig().certs_d_dirs[1] == tmp_path / "docker" / "certs.d"


def test_certs_d_client_cert_without_key_is_an_error(tmp_path: Path) -> None:
    host_dir = tmp_path / "reg.example:5000"
    host_dir.mkdir()
    (host_dir / "client.cert").write_text("")
    config = transport.TransportConfig(certs_d_dirs=(tmp_path,))
    with pytest.raises(TLSError, match="missing key"):
        transport.Transport(config).ssl_for("reg.example:5000")


def test_insecure_registry_gets_unverified_tls_only_when_named() -> None:
    config = transport.TransportConfig(insecure_registries=frozenset({"reg.example:5000"}))
    t = transport.Transport(config)
    assert t.ssl_for("reg.example:5000") is False
    context = t.ssl_for("other.example")
    assert isinstance(context, ssl.SSLContext) and context.verify_mode == ssl.CERT_REQUIRED


def test_hosts_without_certs_d_share_one_verifying_context(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The system CAs are loaded once per process, not once per host (registry, token
    realm, CDN); a host with a certs.d directory still gets its own context with its CA."""
    built: list[ssl.SSLContext] = []

    def counting_context() -> ssl.SSLContext:
        built.append(ssl.create_default_context())
        return built[-1]

    monkeypatch.setattr(tls_proxy, "trusting_context", counting_context)
    ca_pem, extra_ca = trustme.CA(), trustme.CA()
    ca_cert = tmp_path / "ca.pem"
    ca_pem.cert_pem.write_to_path(str(ca_cert))
    (tmp_path / "certs.d" / "own.example:5000").mkdir(parents=True)
    extra_ca.cert_pem.write_to_path(str(tmp_path / "certs.d" / "own.example:5000" / "ca.crt"))
    settings = tls_proxy.TLSSettings(
        frozenset({"insecure.example:5000"}), ca_cert, (tmp_path / "certs.d",)
    )
    assert settings.for_host("insecure.example:5000") is False
    assert built == []  # a plain-HTTP registry needs no context
    shared = settings.for_host("registry.example")
    assert settings.for_host("auth.example:443") is shared
    assert settings.default_context() is shared
    assert len(built) == 1
    own = settings.for_host("own.example:5000")
    assert isinstance(own, ssl.SSLContext) and own is not shared
    assert settings.for_host("own.example:5000") is own
    assert len(built) == 2
    assert isinstance(shared, ssl.SSLContext)
    # own: the system CAs, --ca-cert and the certs.d CA; the shared one lacks the last.
    assert own.cert_store_stats()["x509_ca"] == shared.cert_store_stats()["x509_ca"] + 1


def test_missing_ca_cert_is_a_usage_error(tmp_path: Path) -> None:
    config = transport.TransportConfig(ca_cert=tmp_path / "nope.pem", certs_d_dirs=())
    with pytest.raises(UsageError, match=r"nope\.pem"):
        transport.Transport(config).ssl_for("reg.example")


def test_proxy_userinfo_becomes_proxy_authorization(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTPS_PROXY", "http://bob:p%40ss@proxy.example:3128")
    proxy, headers = tls_proxy.Proxies().options("https://reg.example/v2/")
    assert proxy == "http://proxy.example:3128"
    assert headers == {"Proxy-Authorization": Credentials("bob", "p@ss").basic_header()}
