"""Registry authentication: credentials, ``WWW-Authenticate`` challenges, tokens.

Credentials are looked up in Docker's order: explicit ones first, then
``$DOCKER_CONFIG/config.json`` (``credHelpers``, ``credsStore``, ``auths``).
Bearer tokens are cached per (realm, service, scope) for ``max(expires_in, 60)``
seconds (refreshed 10 s early), with one fetch in flight per key. The HTTP of a
token fetch goes through a :class:`TokenClient` (the transport), which owns TLS,
proxies and error mapping; this module decides which credentials go where:
Basic credentials and identity tokens only to an https realm, or an http one the
user named insecure. Secrets never appear in ``repr()``, exceptions or logs.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import random
import re
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

import anyio

from .errors import AuthenticationError, NetworkError, RegistryError, TLSError

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


# --------------------------------------------------------------------------- tokens


@dataclass(frozen=True)
class TokenReply:
    """A token server's answer as the transport read it (body capped at ``MAX_TOKEN_BODY``+1)."""

    status: int
    body: bytes = field(repr=False)
    retry_after: float | None = None


class TokenClient(Protocol):
    """The HTTP a :class:`RegistryAuth` needs; :class:`~dockerdrag.transport.Transport` has it.

    ``token_request`` raises :class:`~dockerdrag.errors.NetworkError` (or ``TLSError``)
    when the token server cannot be reached; any HTTP status is returned.
    """

    async def token_request(
        self,
        method: str,
        url: str,
        *,
        query: Sequence[tuple[str, str]],
        headers: Mapping[str, str],
        form: Mapping[str, str] | None,
    ) -> TokenReply:
        """Send one request to a token realm (no redirects followed)."""
        ...


TOKEN_RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
TOKEN_ATTEMPTS = 4
TOKEN_MAX_RETRY_AFTER = 60.0


# _CachedToken and _TokenRequest are plain slotted classes, not dataclasses: making a
# dataclass costs ~0.4 ms of start-up each, and these are only built and read here.
# Their repr is the dataclass one without the secret fields.


class _CachedToken:
    """A bearer token and when (``time.monotonic()``) it is to be renewed."""

    __slots__ = ("expires_at", "value")

    def __init__(self, value: str, expires_at: float) -> None:
        self.value = value
        self.expires_at = expires_at

    def __repr__(self) -> str:
        return f"_CachedToken(expires_at={self.expires_at!r})"

    @property
    def header(self) -> str:
        return f"Bearer {self.value}"


class _TokenRequest:
    """How one token is asked for (built by :meth:`RegistryAuth._token_request`)."""

    __slots__ = ("form", "headers", "method", "query", "realm", "who", "withheld")

    def __init__(
        self,
        method: str,
        realm: str,
        query: tuple[tuple[str, str], ...],
        headers: Mapping[str, str],
        form: Mapping[str, str] | None,
        who: str,  # "user 'alice'", "an identity token" or "anonymous access", for messages
        withheld: bool,  # credentials exist but were not sent (plain-HTTP realm)
    ) -> None:
        self.method = method
        self.realm = realm
        self.query = query
        self.headers = headers
        self.form = form
        self.who = who
        self.withheld = withheld

    def __repr__(self) -> str:
        return (
            f"_TokenRequest(method={self.method!r}, realm={self.realm!r}, "
            f"query={self.query!r}, who={self.who!r}, withheld={self.withheld!r})"
        )


def _never(_host: str) -> bool:
    return False


def _without_query(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


@dataclass
class RegistryAuth:
    """Authorization state for one registry host: its challenge, credentials, tokens.

    ``plain_http_allowed(host)`` says whether the user named ``host`` insecure; only
    then does a plain-HTTP token realm receive credentials. ``credentials_allowed``
    is False when the registry itself is reached over plain HTTP without being named
    insecure (never sends a password in the clear).
    """

    registry_host: str
    credentials: Credentials | None = None
    credentials_allowed: bool = True
    plain_http_allowed: Callable[[str], bool] = _never
    challenge: Challenge | None = None
    credentials_resolved: bool = False  # explicit or Docker-config lookup done
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
                return token.header
        return None

    def _basic_header(self) -> str | None:
        if self.credentials is None or not self.credentials.username:
            return None
        if not self.credentials_allowed:
            raise AuthenticationError(
                f"refusing to send a password to {self.registry_host} over plain HTTP; "
                f"use https or name it with --insecure {self.registry_host}"
            )
        return self.credentials.basic_header()

    def invalidate(self, scope: str, sent: str | None = None) -> None:
        """Forget the cached token for ``scope`` (after a 401 ``invalid_token``).

        With ``sent`` (the header of the refused request) a token fetched meanwhile
        by a concurrent request is kept.
        """
        key = self._key(scope)
        cached = self._tokens.get(key)
        if cached is not None and (sent is None or cached.header == sent):
            del self._tokens[key]

    async def header_for(self, scope: str, client: TokenClient) -> str | None:
        """The Authorization header for ``scope``, fetching a token if needed.

        One fetch per (realm, service, scope) is in flight at a time; concurrent
        callers wait for it and share the token.
        """
        cached = self.cached_header(scope)
        if cached is not None or self.challenge is None or self.challenge.scheme != "bearer":
            return cached
        key = self._key(scope)
        lock = self._locks.setdefault(key, anyio.Lock())
        async with lock:
            cached = self.cached_header(scope)
            if cached is not None:
                return cached
            token = await self._fetch_token(scope, client)
            self._tokens[key] = token
            return token.header

    async def _fetch_token(self, scope: str, client: TokenClient) -> _CachedToken:
        request = self._token_request(scope)
        log.debug(
            "fetching a token from %s for %s as %s",
            request.realm,
            " ".join(scope.split()),
            request.who,
        )
        body = await self._send_with_retries(request, client)
        return self._parse_token(body)

    def _token_request(self, scope: str) -> _TokenRequest:
        """Decide how to ask the realm for ``scope``: which credentials go where."""
        assert self.challenge is not None
        params = self.challenge.params
        realm = params.get("realm", "")
        realm_url = urlsplit(realm)
        if realm_url.scheme not in ("http", "https") or not realm_url.netloc:
            raise AuthenticationError(
                f"registry {self.registry_host} sent an unusable token realm "
                f"{_without_query(realm) if '://' in realm else realm!r}"
            )
        credentials = self.credentials if self.credentials_allowed else None
        secure = realm_url.scheme == "https" or self.plain_http_allowed(realm_url.netloc)
        withheld = credentials is not None and not secure
        if withheld:
            log.warning(
                "not sending the credentials for %s to its plain-HTTP token realm %s "
                "(name %s with --insecure to allow it)",
                self.registry_host,
                _without_query(realm),
                realm_url.netloc,
            )
            credentials = None
        service = params.get("service", "")
        scopes = scope.split()
        query: list[tuple[str, str]] = [("service", service)] if service else []
        if credentials is not None and credentials.identity_token:
            form = {
                "grant_type": "refresh_token",
                "refresh_token": credentials.identity_token,
                "service": service,
                "scope": " ".join(scopes),
                "client_id": "dockerdrag",
            }
            return _TokenRequest("POST", realm, (), {}, form, "an identity token", False)
        headers: dict[str, str] = {}
        who = "anonymous access"
        if credentials is not None and credentials.username:
            query.append(("account", credentials.username))
            headers["Authorization"] = credentials.basic_header()
            who = f"user {credentials.username!r}"
        query.extend(("scope", item) for item in scopes)
        return _TokenRequest("GET", realm, tuple(query), headers, None, who, withheld)

    async def _send_with_retries(self, request: _TokenRequest, client: TokenClient) -> bytes:
        """The token server's 200 body; retries connection errors, 408, 429 and 5xx."""
        for attempt in range(TOKEN_ATTEMPTS):
            last = attempt + 1 == TOKEN_ATTEMPTS
            try:
                reply = await client.token_request(
                    request.method,
                    request.realm,
                    query=request.query,
                    headers=request.headers,
                    form=request.form,
                )
            except TLSError:
                raise
            except NetworkError as exc:
                if last:
                    raise NetworkError(
                        f"cannot reach the token server of {self.registry_host}: {exc}"
                    ) from exc
                await anyio.sleep(_token_backoff(attempt, None))
                continue
            if reply.status in TOKEN_RETRY_STATUSES and not last:
                log.debug(
                    "token server of %s answered HTTP %s; retrying",
                    self.registry_host,
                    reply.status,
                )
                await anyio.sleep(_token_backoff(attempt, reply.retry_after))
                continue
            return self._check_reply(reply, request)
        raise AssertionError("unreachable")

    def _check_reply(self, reply: TokenReply, request: _TokenRequest) -> bytes:
        host = self.registry_host
        if reply.status in (401, 403):
            raise AuthenticationError(self._refusal_message(reply.status, request))
        if reply.status != 200:
            raise RegistryError(
                f"the token server of {host} ({_without_query(request.realm)}) answered "
                f"HTTP {reply.status}",
                reply.status,
            )
        if len(reply.body) > MAX_TOKEN_BODY:
            raise RegistryError(f"the token server of {host} sent an oversized reply")
        return reply.body

    def _refusal_message(self, status: int, request: _TokenRequest) -> str:
        text = f"the token server of {self.registry_host} refused {request.who} (HTTP {status})"
        if request.withheld:
            realm_host = urlsplit(request.realm).netloc
            return (
                f"{text}; the credentials were not sent because the token realm "
                f"{_without_query(request.realm)} is plain HTTP (name it with "
                f"--insecure {realm_host} to allow that)"
            )
        if request.who == "anonymous access":
            return (
                f"{text}; log in with 'docker login {self.registry_host}' or pass "
                "--username and --password-stdin"
            )
        return f"{text}; check the username and password"

    def _parse_token(self, body: bytes) -> _CachedToken:
        host = self.registry_host
        try:
            answer = json.loads(body)
        except ValueError as exc:
            raise RegistryError(f"the token server of {host} sent invalid JSON") from exc
        if not isinstance(answer, dict):
            raise RegistryError(f"the token server of {host} sent invalid JSON")
        token = answer.get("token") or answer.get("access_token")
        if not isinstance(token, str) or not token:
            raise RegistryError(f"the token server of {host} sent no token")
        if not _HEADER_SAFE_RE.fullmatch(token):
            raise RegistryError(f"the token server of {host} sent a malformed token")
        expires_in = answer.get("expires_in")
        lifetime = (
            float(expires_in)
            if isinstance(expires_in, int | float) and not isinstance(expires_in, bool)
            else TOKEN_MIN_LIFETIME
        )
        lifetime = max(lifetime, TOKEN_MIN_LIFETIME)
        return _CachedToken(token, time.monotonic() + lifetime)


_HEADER_SAFE_RE = re.compile(r"[\x21-\x7e]+")


def _token_backoff(attempt: int, retry_after: float | None) -> float:
    """Seconds before token retry ``attempt``: ``Retry-After`` (capped) or 0.5 s doubling."""
    if retry_after is not None:
        return min(max(retry_after, 0.0), TOKEN_MAX_RETRY_AFTER)
    return random.uniform(0, min(8.0, 0.5 * 2**attempt))
