"""Registry credentials: who a request speaks for, and Docker's ways of storing them.

Credentials are looked up in Docker's order: explicit ones first (the caller's),
then ``$DOCKER_CONFIG/config.json`` (``credHelpers``, ``credsStore``, ``auths``).
Secrets never appear in ``repr()``, exceptions or logs.
"""

from __future__ import annotations

import base64
import enum
import json
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from .errors import AuthenticationError, Remedy, Setting

DOCKER_HUB_AUTH_KEY = "https://index.docker.io/v1/"
DOCKER_HUB_HOSTS = frozenset({"registry-1.docker.io", "docker.io", "index.docker.io"})


@dataclass(frozen=True)
class Credentials:
    """A username with a password, or an identity (refresh) token."""

    username: str = ""
    password: str = field(default="", repr=False)
    identity_token: str = field(default="", repr=False)

    def __repr__(self) -> str:
        secret = "identity_token=***" if self.identity_token else "password=***"
        return f"Credentials(username={self.username!r}, {secret})"

    def basic_header(self) -> str:
        """The value of a Basic ``Authorization`` header."""
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode("ascii")


class Identity(enum.Enum):
    """Whom a request speaks for; decides what a refusal says and suggests."""

    ANONYMOUS = enum.auto()
    USER = enum.auto()
    IDENTITY_TOKEN = enum.auto()


def identity_of(credentials: Credentials | None) -> Identity:
    """Whom requests made with ``credentials`` speak for (an identity token wins)."""
    if credentials is None:
        return Identity.ANONYMOUS
    if credentials.identity_token:
        return Identity.IDENTITY_TOKEN
    return Identity.USER if credentials.username else Identity.ANONYMOUS


def describe_identity(credentials: Credentials | None) -> str:
    """``user 'alice'``, ``the identity token`` or ``anonymous access``, for messages."""
    identity = identity_of(credentials)
    if identity is Identity.USER:
        assert credentials is not None
        return f"user {credentials.username!r}"
    return "the identity token" if identity is Identity.IDENTITY_TOKEN else "anonymous access"


LOG_IN = Remedy(Setting.CREDENTIALS)


def login_hint(identity: Identity, registry_host: str) -> str:
    """What to do after a refusal: log in (anonymous: :func:`login_remedies`), or check the
    credentials."""
    if identity is Identity.ANONYMOUS:
        return f"log in with 'docker login {registry_host}' or pass {LOG_IN}"
    return "check the username and password"


def login_remedies(identity: Identity) -> tuple[Remedy, ...]:
    """The remedies :func:`login_hint` words for ``identity``."""
    return (LOG_IN,) if identity is Identity.ANONYMOUS else ()


def docker_config_dir() -> Path:
    """``$DOCKER_CONFIG`` or ``~/.docker``."""
    configured = os.environ.get("DOCKER_CONFIG")
    return Path(configured) if configured else Path.home() / ".docker"


def _config_keys_for(registry_host: str) -> list[str]:
    if registry_host in DOCKER_HUB_HOSTS:
        return [DOCKER_HUB_AUTH_KEY, "index.docker.io", "docker.io", "registry-1.docker.io"]
    return [registry_host, f"https://{registry_host}", f"http://{registry_host}"]


def _normalise_config_key(key: str) -> str:
    if "://" in key:
        key = urlsplit(key).netloc
    return key.rstrip("/")


def _run_credential_helper(helper: str, server: str) -> Credentials | None:
    """Ask ``docker-credential-<helper>`` (``desktop``, ``wincred``, ``osxkeychain``, ...).

    The helper is looked up on ``PATH`` as a shell would (with ``PATHEXT`` on Windows,
    where Docker Desktop installs ``docker-credential-desktop.exe``) and run by its
    full path.
    """
    program = f"docker-credential-{helper}"
    found = shutil.which(program)
    if found is None:
        raise AuthenticationError(
            f"credential helper {program!r} (configured for {server}) is not on PATH"
        )
    try:
        completed = subprocess.run(
            [found, "get"], input=server.encode(), capture_output=True, timeout=60, check=False
        )
    except OSError as exc:
        raise AuthenticationError(
            f"credential helper {program!r} (configured for {server}) cannot run: {exc.strerror}"
        ) from exc
    except subprocess.TimeoutExpired as exc:
        raise AuthenticationError(f"credential helper {program!r} timed out") from exc
    if completed.returncode != 0:
        message = completed.stdout.decode(errors="replace").strip()
        if "credentials not found" in message.lower():
            return None
        raise AuthenticationError(
            f"credential helper {program!r} failed for {server} (exit {completed.returncode})"
        )
    try:
        answer = json.loads(completed.stdout)
        username, secret = str(answer.get("Username", "")), str(answer.get("Secret", ""))
    except (ValueError, AttributeError) as exc:
        raise AuthenticationError(f"credential helper {program!r} returned invalid JSON") from exc
    if username == "<token>":
        return Credentials(identity_token=secret)
    return Credentials(username=username, password=secret)


def _credentials_from_auth_entry(entry: object) -> Credentials | None:
    if not isinstance(entry, dict):
        return None
    identity = entry.get("identitytoken")
    encoded = entry.get("auth")
    username, password = str(entry.get("username", "")), str(entry.get("password", ""))
    if isinstance(encoded, str) and encoded:
        try:
            decoded = base64.b64decode(encoded).decode()
        except (ValueError, UnicodeDecodeError) as exc:
            raise AuthenticationError("invalid base64 'auth' entry in docker config") from exc
        username, _, password = decoded.partition(":")
    if isinstance(identity, str) and identity:
        return Credentials(username=username, identity_token=identity)
    if username or password:
        return Credentials(username=username, password=password)
    return None


def load_docker_credentials(
    registry_host: str, config_dir: Path | None = None
) -> Credentials | None:
    """Credentials for ``registry_host`` from Docker's config.json, as Docker looks them up."""
    path = (config_dir or docker_config_dir()) / "config.json"
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise AuthenticationError(f"cannot read Docker config {path}: {exc}") from exc
    if not isinstance(config, dict):
        return None
    keys = _config_keys_for(registry_host)
    helpers = config.get("credHelpers") or {}
    if isinstance(helpers, dict):
        for key in keys:
            helper = helpers.get(key) or helpers.get(_normalise_config_key(key))
            if isinstance(helper, str) and helper:
                return _run_credential_helper(helper, key)
    store = config.get("credsStore")
    if isinstance(store, str) and store:
        # As Docker: with a credentials store, only the store answers ("not found" means
        # anonymous; `auths` then holds only empty markers written by `docker login`).
        return _run_credential_helper(store, keys[0])
    auths = config.get("auths") or {}
    if isinstance(auths, dict):
        wanted = {_normalise_config_key(key) for key in keys}
        for key, entry in auths.items():
            if _normalise_config_key(str(key)) in wanted:
                credentials = _credentials_from_auth_entry(entry)
                if credentials is not None:
                    return credentials
    return None
