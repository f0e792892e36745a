"""Bearer tokens: how one is asked for, fetched (with retries) and read.

A token request goes to the realm a registry's challenge named. Basic
credentials and identity tokens go only to an https realm, or an http one the
user named insecure; otherwise the token is asked for anonymously (and a refusal
says why). The HTTP itself goes through a :class:`TokenClient` (the transport's
:class:`~dockerdrag.http_session.HttpSession`), which owns TLS, proxies and error
mapping. A token is kept for its ``expires_in`` clamped to
``[TOKEN_MIN_LIFETIME, TOKEN_MAX_LIFETIME]`` seconds (a missing, negative or
non-finite lifetime counts as the minimum, as Docker does).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import re
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol
from urllib.parse import urlsplit

from .credentials import (
    Credentials,
    Identity,
    describe_identity,
    identity_of,
    login_hint,
    login_remedies,
)
from .errors import AuthenticationError, NetworkError, RegistryError, Remedy, Setting, TLSError
from .request_retries import Answered, RetryListener, destination, retried
from .retry import RetriesExhausted, RetryPolicy

log = logging.getLogger("dockerdrag")

MAX_TOKEN_BODY = 1 << 20
TOKEN_MIN_LIFETIME = 60.0
TOKEN_MAX_LIFETIME = 3600.0
"""Longer lifetimes are cut to this: a token is asked for again at least once an hour."""

_HEADER_SAFE_RE = re.compile(r"[\x21-\x7e]+")


@dataclass(frozen=True)
class TokenReply:
    """A token server's answer as the transport read it (body capped at ``MAX_TOKEN_BODY``+1)."""

    status: int
    body: bytes = field(repr=False)
    retry_after: float | None = None


class TokenClient(Protocol):
    """The HTTP a token fetch needs; :class:`~dockerdrag.http_session.HttpSession` has it.

    ``send_token_request`` raises :class:`~dockerdrag.errors.NetworkError` (or
    ``TLSError``) when the token server cannot be reached; any HTTP status is returned.
    """

    async def send_token_request(self, request: TokenRequest) -> TokenReply:
        """Send ``request`` to its realm once (no redirects followed)."""
        ...


# Token and TokenRequest are plain slotted classes, not dataclasses: making a
# dataclass costs start-up time (benchmarks/README.md says how much), and these are
# only built and read here and in auth. Their repr leaves the secret fields out.


class Token:
    """A bearer token and when (``time.monotonic()``) it expires."""

    __slots__ = ("expires_at", "value")

    def __init__(self, value: str, expires_at: float) -> None:
        self.value = value
        self.expires_at = expires_at

    def __repr__(self) -> str:
        return f"Token(expires_at={self.expires_at!r})"

    @property
    def header(self) -> str:
        return f"Bearer {self.value}"


class TokenRequest:
    """How one token is asked for (built by :func:`token_request`)."""

    __slots__ = ("credentials", "form", "headers", "method", "query", "realm", "scope", "withheld")

    def __init__(
        self,
        method: str,
        realm: str,
        scope: str,
        query: tuple[tuple[str, str], ...],
        headers: Mapping[str, str],
        form: Mapping[str, str] | None,
        credentials: Credentials | None,  # those sent (None: anonymous)
        withheld: bool,  # credentials exist but were not sent (plain-HTTP realm)
    ) -> None:
        self.method = method
        self.realm = realm
        self.scope = scope
        self.query = query
        self.headers = headers
        self.form = form
        self.credentials = credentials
        self.withheld = withheld

    def __repr__(self) -> str:
        return (
            f"TokenRequest(method={self.method!r}, realm={self.realm!r}, scope={self.scope!r}, "
            f"query={self.query!r}, "
            f"credentials={self.credentials!r}, withheld={self.withheld!r})"
        )


def without_query(url: str) -> str:
    """``url`` without its query string and fragment (they may carry secrets)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


def token_request(
    registry_host: str,
    challenge_params: Mapping[str, str],
    scope: str,
    credentials: Credentials | None,
    plain_http_allowed: Callable[[str], bool],
) -> TokenRequest:
    """Decide how to ask the challenge's realm for ``scope``: which credentials go where."""
    realm = challenge_params.get("realm", "")
    realm_url = urlsplit(realm)
    if realm_url.scheme not in ("http", "https") or not realm_url.netloc:
        raise AuthenticationError(
            f"registry {registry_host} sent an unusable token realm "
            f"{without_query(realm) if '://' in realm else realm!r}"
        )
    secure = realm_url.scheme == "https" or plain_http_allowed(realm_url.netloc)
    withheld = credentials is not None and not secure
    if withheld:
        log.warning(
            "not sending the credentials for %s to its plain-HTTP token realm %s "
            "(name %s as insecure to allow it)",
            registry_host,
            without_query(realm),
            realm_url.netloc,
        )
        credentials = None
    service = challenge_params.get("service", "")
    scopes = scope.split()
    scope = " ".join(scopes)
    identity = identity_of(credentials)
    if identity is Identity.IDENTITY_TOKEN:
        assert credentials is not None
        form = {
            "grant_type": "refresh_token",
            "refresh_token": credentials.identity_token,
            "service": service,
            "scope": scope,
            "client_id": "dockerdrag",
        }
        return TokenRequest("POST", realm, scope, (), {}, form, credentials, False)
    query: list[tuple[str, str]] = [("service", service)] if service else []
    headers: dict[str, str] = {}
    if identity is Identity.USER:
        assert credentials is not None
        query.append(("account", credentials.username))
        headers["Authorization"] = credentials.basic_header()
    else:
        credentials = None
    query.extend(("scope", item) for item in scopes)
    return TokenRequest("GET", realm, scope, tuple(query), headers, None, credentials, withheld)


async def fetch_token(
    request: TokenRequest,
    client: TokenClient,
    retry: RetryPolicy,
    registry_host: str,
    listener: RetryListener | None = None,
) -> Token:
    """Send ``request`` (retried by :mod:`request_retries` as ``retry`` says, each retry told
    to ``listener``) and read the token it is answered with.

    A token server given up on is a :class:`~dockerdrag.retry.RetriesExhausted`: the
    registry request that waited on it is not sent again.
    """
    log.debug(
        "fetching a token from %s for %s as %s",
        request.realm,
        request.scope,
        describe_identity(request.credentials),
    )
    realm = urlsplit(request.realm)
    host, port = destination(realm)

    @contextlib.asynccontextmanager
    async def send() -> AsyncIterator[TokenReply]:
        yield await client.send_token_request(request)

    def answered(reply: TokenReply) -> Answered:
        return Answered(reply.status, reply.retry_after, host, port)

    retrying = retried(
        send,
        answered,
        policy=retry,
        attempts=retry.attempts,
        what=f"a token for {registry_host}",
        target=realm,
        listener=listener,
    )
    try:
        async with retrying as reply:
            pass
    except TLSError:
        raise
    except NetworkError as exc:
        raise RetriesExhausted(f"cannot reach the token server of {registry_host}: {exc}") from exc
    return _parse_token(_checked_body(reply, request, registry_host), registry_host)


def _checked_body(reply: TokenReply, request: TokenRequest, registry_host: str) -> bytes:
    if reply.status in (401, 403):
        raise _refusal_error(reply.status, request, registry_host)
    if reply.status != 200:
        raise RegistryError(
            f"the token server of {registry_host} ({without_query(request.realm)}) answered "
            f"HTTP {reply.status}",
            reply.status,
        )
    if len(reply.body) > MAX_TOKEN_BODY:
        raise RegistryError(f"the token server of {registry_host} sent an oversized reply")
    return reply.body


def _refusal_error(status: int, request: TokenRequest, registry_host: str) -> AuthenticationError:
    who = describe_identity(request.credentials)
    text = f"the token server of {registry_host} refused {who} (HTTP {status})"
    if request.withheld:
        remedy = Remedy(Setting.INSECURE, urlsplit(request.realm).netloc)
        return AuthenticationError(
            f"{text}; the credentials were not sent because the token realm "
            f"{without_query(request.realm)} is plain HTTP (name it with {remedy} to allow that)"
        ).suggesting(remedy)
    identity = identity_of(request.credentials)
    return AuthenticationError(f"{text}; {login_hint(identity, registry_host)}").suggesting(
        *login_remedies(identity)
    )


def _parse_token(body: bytes, registry_host: str) -> Token:
    try:
        answer = json.loads(body)
    except ValueError as exc:
        raise RegistryError(f"the token server of {registry_host} sent invalid JSON") from exc
    if not isinstance(answer, dict):
        raise RegistryError(f"the token server of {registry_host} sent invalid JSON")
    token = answer.get("token") or answer.get("access_token")
    if not isinstance(token, str) or not token:
        raise RegistryError(f"the token server of {registry_host} sent no token")
    if not _HEADER_SAFE_RE.fullmatch(token):
        raise RegistryError(f"the token server of {registry_host} sent a malformed token")
    return Token(token, time.monotonic() + token_lifetime(answer.get("expires_in")))


def token_lifetime(expires_in: object) -> float:
    """Seconds to keep a token whose reply said ``expires_in``, within the sane range."""
    if not isinstance(expires_in, int | float) or isinstance(expires_in, bool):
        return TOKEN_MIN_LIFETIME
    seconds = float(expires_in)
    if not math.isfinite(seconds):
        return TOKEN_MIN_LIFETIME
    return min(max(seconds, TOKEN_MIN_LIFETIME), TOKEN_MAX_LIFETIME)
