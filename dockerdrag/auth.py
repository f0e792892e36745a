"""Registry authentication: credentials, ``WWW-Authenticate`` challenges, tokens.

Credentials are looked up in Docker's order: explicit ones first, then
``$DOCKER_CONFIG/config.json`` (``credHelpers``, ``credsStore``, ``auths``).
Bearer tokens are cached per (realm, service, scope) until shortly before they
expire, with one fetch in flight per key. Secrets never appear in ``repr()``,
exceptions or logs.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import anyio

from .errors import AuthenticationError, NetworkError, RegistryError

log = logging.getLogger("dockerdrag")

DOCKER_HUB_AUTH_KEY = "https://index.docker.io/v1/"
DOCKER_HUB_HOSTS = frozenset({"registry-1.docker.io", "docker.io", "index.docker.io"})
MAX_TOKEN_BODY = 1 << 20
TOKEN_MIN_LIFETIME = 60.0
TOKEN_REFRESH_MARGIN = 10.0


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


@dataclass(frozen=True)
class Challenge:
    """One challenge of a ``WWW-Authenticate`` header."""

    scheme: str  # lowercased: "bearer", "basic"
    params: Mapping[str, str]


_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_QUOTED = r'"(?:[^"\\]|\\.)*"'
_PARAM_RE = re.compile(rf"\s*({_TOKEN})\s*=\s*({_QUOTED}|{_TOKEN})\s*")
_SCHEME_RE = re.compile(rf"\s*({_TOKEN})(?:\s+|$)")


def parse_www_authenticate(header: str) -> list[Challenge]:
    """Parse a ``WWW-Authenticate`` header (RFC 7235) into challenges.

    Quoted values may contain commas and escaped quotes; several challenges may
    share one header.
    """
    challenges: list[Challenge] = []
    pos = 0
    text = header.strip()
    while pos < len(text):
        while pos < len(text) and text[pos] in ", \t":
            pos += 1
        scheme_match = _SCHEME_RE.match(text, pos)
        if not scheme_match:
            break
        scheme = scheme_match.group(1).lower()
        pos = scheme_match.end()
        params: dict[str, str] = {}
        while pos < len(text):
            param_match = _PARAM_RE.match(text, pos)
            if not param_match:
                break
            key, value = param_match.group(1).lower(), param_match.group(2)
            if value.startswith('"'):
                value = re.sub(r"\\(.)", r"\1", value[1:-1])
            params[key] = value
            pos = param_match.end()
            if pos < len(text) and text[pos] == ",":
                pos += 1
        challenges.append(Challenge(scheme, params))
    return challenges


def repository_scope(repository: str, actions: str = "pull") -> str:
    """The token scope for reading a repository."""
    return f"repository:{repository}:{actions}"


# --------------------------------------------------------------------------- credentials


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
    program = f"docker-credential-{helper}"
    try:
        completed = subprocess.run(
            [program, "get"], input=server.encode(), capture_output=True, timeout=60, check=False
        )
    except FileNotFoundError as exc:
        raise AuthenticationError(
            f"credential helper {program!r} (configured for {server}) is not on PATH"
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
        found = _run_credential_helper(store, keys[0])
        if found is not None:
            return found
    auths = config.get("auths") or {}
    if isinstance(auths, dict):
        wanted = {_normalise_config_key(key) for key in keys}
        for key, entry in auths.items():
            if _normalise_config_key(str(key)) in wanted:
                credentials = _credentials_from_auth_entry(entry)
                if credentials is not None:
                    return credentials
    return None


# --------------------------------------------------------------------------- tokens


@dataclass
class _CachedToken:
    value: str
    expires_at: float


@dataclass
class RegistryAuth:
    """Authorization state for one registry host: its challenge, credentials, tokens."""

    registry_host: str
    credentials: Credentials | None = None
    credentials_allowed: bool = True  # False when the registry is plain http and not insecure
    realm_trusted: frozenset[str] = frozenset()  # http realms allowed (insecure registries)
    challenge: Challenge | None = None
    _tokens: dict[tuple[str, str, str], _CachedToken] = field(default_factory=dict)
    _locks: dict[tuple[str, str, str], anyio.Lock] = field(default_factory=dict)

    def __repr__(self) -> str:
        scheme = self.challenge.scheme if self.challenge else None
        return (
            f"RegistryAuth({self.registry_host!r}, scheme={scheme!r}, "
            f"credentials={self.credentials!r})"
        )

    def _key(self, scope: str) -> tuple[str, str, str]:
        params = self.challenge.params if self.challenge else {}
        return (params.get("realm", ""), params.get("service", ""), scope)

    def cached_header(self, scope: str) -> str | None:
        """The Authorization header we can send right now without a request, if any."""
        if self.challenge is None:
            return None
        if self.challenge.scheme == "basic":
            return self._basic_header()
        if self.challenge.scheme == "bearer":
            token = self._tokens.get(self._key(scope))
            if token and token.expires_at - TOKEN_REFRESH_MARGIN > time.monotonic():
                return f"Bearer {token.value}"
        return None

    def _basic_header(self) -> str | None:
        if self.credentials is None or not self.credentials.username:
            return None
        if not self.credentials_allowed:
            raise AuthenticationError(
                f"refusing to send a password to {self.registry_host} over plain HTTP; "
                "use https or name it with --insecure"
            )
        return self.credentials.basic_header()

    def invalidate(self, scope: str) -> None:
        """Forget the cached token for ``scope`` (after a 401 ``invalid_token``)."""
        self._tokens.pop(self._key(scope), None)

    async def header_for(self, scope: str, session: aiohttp.ClientSession) -> str | None:
        """The Authorization header for ``scope``, fetching a token if needed."""
        cached = self.cached_header(scope)
        if cached is not None or self.challenge is None or self.challenge.scheme != "bearer":
            return cached
        key = self._key(scope)
        lock = self._locks.setdefault(key, anyio.Lock())
        async with lock:
            cached = self.cached_header(scope)
            if cached is not None:
                return cached
            token = await self._fetch_token(scope, session)
            self._tokens[key] = token
            return f"Bearer {token.value}"

    async def _fetch_token(self, scope: str, session: aiohttp.ClientSession) -> _CachedToken:
        assert self.challenge is not None
        params = self.challenge.params
        realm = params.get("realm", "")
        realm_url = urlsplit(realm)
        if realm_url.scheme not in ("http", "https") or not realm_url.netloc:
            raise AuthenticationError(
                f"registry {self.registry_host} sent an unusable token realm {realm!r}"
            )
        secure_realm = realm_url.scheme == "https" or realm_url.netloc in self.realm_trusted
        credentials = self.credentials if (secure_realm and self.credentials_allowed) else None
        query = {"scope": scope}
        if params.get("service"):
            query["service"] = params["service"]
        headers: dict[str, str] = {}
        form: dict[str, str] | None = None
        if credentials and credentials.identity_token:
            form = {
                "grant_type": "refresh_token",
                "refresh_token": credentials.identity_token,
                "service": params.get("service", ""),
                "scope": scope,
                "client_id": "dockerdrag",
                "access_type": "offline",
            }
        elif credentials and credentials.username:
            query["account"] = credentials.username
            headers["Authorization"] = credentials.basic_header()
        log.debug("fetching token from %s for scope %s", realm, scope)
        body = await self._request_token(session, realm, query, headers, form)
        return self._parse_token(body)

    async def _request_token(
        self,
        session: aiohttp.ClientSession,
        realm: str,
        query: dict[str, str],
        headers: dict[str, str],
        form: dict[str, str] | None,
    ) -> bytes:
        attempts = 4
        for attempt in range(attempts):
            try:
                if form is not None:
                    request = session.post(realm, data=form, headers=headers, allow_redirects=False)
                else:
                    request = session.get(
                        realm, params=query, headers=headers, allow_redirects=False
                    )
                async with request as response:
                    body = await response.content.read(MAX_TOKEN_BODY + 1)
                    status = response.status
            except aiohttp.ClientError as exc:
                if attempt + 1 < attempts:
                    await anyio.sleep(0.5 * 2**attempt)
                    continue
                raise NetworkError(
                    f"cannot reach the token server of {self.registry_host}: {exc}"
                ) from exc
            if status in (429, 500, 502, 503, 504) and attempt + 1 < attempts:
                await anyio.sleep(0.5 * 2**attempt)
                continue
            if status in (401, 403):
                who = "anonymous access" if not headers and form is None else "the credentials"
                raise AuthenticationError(
                    f"the token server for {self.registry_host} refused {who} (HTTP {status})"
                )
            if status != 200:
                raise RegistryError(
                    f"the token server for {self.registry_host} answered HTTP {status}", status
                )
            if len(body) > MAX_TOKEN_BODY:
                raise RegistryError(
                    f"the token server for {self.registry_host} sent an oversized reply"
                )
            return body
        raise AssertionError("unreachable")

    def _parse_token(self, body: bytes) -> _CachedToken:
        try:
            answer = json.loads(body)
        except ValueError as exc:
            raise RegistryError(
                f"the token server for {self.registry_host} sent invalid JSON"
            ) from exc
        if not isinstance(answer, dict):
            raise RegistryError(f"the token server for {self.registry_host} sent invalid JSON")
        token = answer.get("token") or answer.get("access_token")
        if not isinstance(token, str) or not token:
            raise RegistryError(f"the token server for {self.registry_host} sent no token")
        expires_in = answer.get("expires_in")
        lifetime = (
            float(expires_in)
            if isinstance(expires_in, int | float) and not isinstance(expires_in, bool)
            else TOKEN_MIN_LIFETIME
        )
        lifetime = max(lifetime, TOKEN_MIN_LIFETIME)
        return _CachedToken(token, time.monotonic() + lifetime)
