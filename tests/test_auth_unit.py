"""Pure parts of auth: challenge parsing, Docker config credentials, redaction."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import pytest

from dockerdrag.auth import Credentials, load_docker_credentials, parse_www_authenticate
from dockerdrag.errors import AuthenticationError


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
