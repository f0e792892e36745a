"""Registry authorization: ``WWW-Authenticate`` challenges, the answer to a 401, tokens.

:class:`RegistryAuth` is the one owner of a registry host's authorization state:
the challenge it answers with, its credentials (explicit, or looked up in
Docker's config on the first challenge, see :mod:`credentials`) and its bearer
tokens, cached per (realm, service, scope) with one fetch in flight per key
(:mod:`tokens`). The transport asks it for each request's ``Authorization`` and
hands it every 401 (:class:`RequestAuthorization`); nothing else changes this state.

A challenge becomes the host's only once a request answered under it was
accepted: a bad challenge (an unusable realm, a token server that refuses) fails
the request that met it and leaves later requests to the same host unharmed.
"""

from __future__ import annotations

import enum
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

import anyio

from .credentials import (
    LOG_IN,
    Credentials,
    Identity,
    describe_identity,
    identity_of,
    load_docker_credentials,
    login_hint,
    login_remedies,
)
from .errors import AuthenticationError, DockerDragError, PullAccessDeniedError, Remedy, Setting
from .request_retries import RetryListener
from .retry import RetryPolicy
from .tokens import Token, TokenClient, fetch_token, token_request

TOKEN_REFRESH_MARGIN = 10.0
"""Seconds before its expiry a cached token is no longer sent (it is fetched anew)."""


class Challenge(NamedTuple):
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
    """The token scope for a repository (``actions``: ``pull``, or ``push,pull``)."""
    return f"repository:{repository}:{actions}"


class Refusal(enum.Enum):
    """What a 401 says about the request it refused."""

    NEW_CHALLENGE = "challenge"  # a challenge the request was not made for
    INVALID_TOKEN = "invalid_token"  # the token expired or was revoked
    INSUFFICIENT_SCOPE = "insufficient_scope"  # the token lacks the access asked for
    DENIED = "denied"  # the answer to what was asked for is no


def refusal_of(known: Challenge | None, challenge: Challenge) -> Refusal:
    """What the 401 carrying ``challenge`` means for a request made under ``known``."""
    if (
        known is None
        or known.scheme != challenge.scheme
        or known.params.get("realm") != challenge.params.get("realm")
    ):
        return Refusal.NEW_CHALLENGE
    error = challenge.params.get("error", "")
    if error == "invalid_token":
        return Refusal.INVALID_TOKEN
    if error == "insufficient_scope":
        return Refusal.INSUFFICIENT_SCOPE
    return Refusal.DENIED


def _kept_challenge(challenge: Challenge) -> Challenge:
    """What to remember of a challenge: Bearer keeps only realm and service."""
    if challenge.scheme != "bearer":
        return challenge
    kept = {k: v for k, v in challenge.params.items() if k in ("realm", "service")}
    return Challenge(challenge.scheme, kept)


def _never(_host: str) -> bool:
    return False


@dataclass
class RegistryAuth:
    """Authorization state for one registry host: its challenge, credentials, tokens.

    ``plain_http_allowed(host)`` says whether the user named ``host`` insecure; only
    then does a plain-HTTP registry or token realm receive credentials. With
    ``use_docker_config`` and no ``credentials``, Docker's config is read on the
    first challenge. ``retry`` governs token requests; ``on_retry``, if set, hears of each
    token request about to be retried.
    """

    registry_host: str
    credentials: Credentials | None = None
    plain_http_allowed: Callable[[str], bool] = _never
    challenge: Challenge | None = None
    use_docker_config: bool = False
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    on_retry: RetryListener | None = None
    _credentials_resolved: bool = field(default=False, init=False)
    _credentials_lock: anyio.Lock = field(default_factory=anyio.Lock, init=False)
    _tokens: dict[tuple[str, str, str], Token] = field(default_factory=dict, init=False)
    _locks: dict[tuple[str, str, str], anyio.Lock] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        self._credentials_resolved = self.credentials is not None or not self.use_docker_config

    def __repr__(self) -> str:
        scheme = self.challenge.scheme if self.challenge else None
        return (
            f"RegistryAuth({self.registry_host!r}, scheme={scheme!r}, "
            f"credentials={self.credentials!r})"
        )

    def for_request(self, scope: str, what: str, scheme: str) -> RequestAuthorization:
        """The authorization of one request for ``what`` (sent over ``scheme``)."""
        return RequestAuthorization(self, scope, what, scheme)

    def cached_header(
        self, scope: str, *, scheme: str = "https", challenge: Challenge | None = None
    ) -> str | None:
        """The Authorization header we can send right now without a request, if any.

        ``challenge`` is the one to answer (default: the host's).
        """
        challenge = challenge or self.challenge
        if challenge is None:
            return None
        if challenge.scheme == "basic":
            return self._basic_header(scheme)
        if challenge.scheme == "bearer":
            token = self._tokens.get(_token_key(challenge, scope))
            if token and token.expires_at - TOKEN_REFRESH_MARGIN > time.monotonic():
                return token.header
        return None

    def _basic_header(self, scheme: str) -> str | None:
        if self.credentials is None or not self.credentials.username:
            return None
        if scheme != "https" and not self.plain_http_allowed(self.registry_host):
            remedy = Remedy(Setting.INSECURE, self.registry_host)
            raise AuthenticationError(
                f"refusing to send a password to {self.registry_host} over plain HTTP; "
                f"use https or name it with {remedy}"
            ).suggesting(remedy)
        return self.credentials.basic_header()

    def invalidate(
        self, scope: str, sent: str | None = None, challenge: Challenge | None = None
    ) -> None:
        """Forget the cached token for ``scope`` (after a 401 ``invalid_token``).

        With ``sent`` (the header of the refused request) a token fetched meanwhile
        by a concurrent request is kept.
        """
        key = _token_key(challenge or self.challenge, scope)
        cached = self._tokens.get(key)
        if cached is not None and (sent is None or cached.header == sent):
            del self._tokens[key]

    async def header_for(
        self,
        scope: str,
        client: TokenClient,
        *,
        scheme: str = "https",
        challenge: Challenge | None = None,
    ) -> str | None:
        """The Authorization header for ``scope``, fetching a token if needed.

        One fetch per (realm, service, scope) is in flight at a time; concurrent
        callers wait for it and share the token.
        """
        challenge = challenge or self.challenge
        cached = self.cached_header(scope, scheme=scheme, challenge=challenge)
        if cached is not None or challenge is None or challenge.scheme != "bearer":
            return cached
        key = _token_key(challenge, scope)
        lock = self._locks.setdefault(key, anyio.Lock())
        async with lock:
            cached = self.cached_header(scope, scheme=scheme, challenge=challenge)
            if cached is not None:
                return cached
            request = token_request(
                self.registry_host,
                challenge.params,
                scope,
                self.credentials,
                self.plain_http_allowed,
            )
            token = await fetch_token(
                request, client, self.retry, self.registry_host, self.on_retry
            )
            self._tokens[key] = token
            return token.header

    async def ensure_credentials(self) -> None:
        """Look the host up in Docker's config.json once (helpers run in a thread)."""
        if self._credentials_resolved:
            return
        async with self._credentials_lock:
            if not self._credentials_resolved:
                self.credentials = await anyio.to_thread.run_sync(
                    load_docker_credentials, self.registry_host
                )
                self._credentials_resolved = True


def _pulled_repository(scope: str) -> str | None:
    """``library/busybox`` of the one scope ``repository:library/busybox:pull``, else None."""
    kind, _, rest = scope.partition(":")
    name, _, actions = rest.rpartition(":")
    if " " in scope or kind != "repository" or not name or "pull" not in actions.split(","):
        return None
    return name


def _token_key(challenge: Challenge | None, scope: str) -> tuple[str, str, str]:
    params = challenge.params if challenge else {}
    return (params.get("realm", ""), params.get("service", ""), scope)


class RequestAuthorization:
    """One request's way through a registry's challenges.

    :meth:`header` gives the ``Authorization`` to send; each 401 goes to
    :meth:`refused`, which answers a new challenge, an expired token
    (``invalid_token``) and a token lacking the scope (``insufficient_scope``) once
    each, and raises :class:`AuthenticationError` for anything else or the same
    again; :meth:`accepted` tells that the registry took the request.
    """

    def __init__(self, auth: RegistryAuth, scope: str, what: str, scheme: str) -> None:
        self.auth = auth
        self.scope = scope
        self.what = what
        self.scheme = scheme
        self.challenge = auth.challenge
        self._answered: set[Refusal] = set()

    async def header(self, client: TokenClient) -> str | None:
        """The ``Authorization`` to send next (None: none)."""
        return await self.auth.header_for(
            self.scope, client, scheme=self.scheme, challenge=self.challenge
        )

    def accepted(self) -> None:
        """The registry answered with something other than 401: the host's later requests
        answer the challenge this one did."""
        if self.challenge is not None:
            self.auth.challenge = self.challenge

    async def refused(self, challenge_header: str, sent: str | None) -> None:
        """Take in a 401 (its ``WWW-Authenticate`` and the ``Authorization`` it refused).

        Returns when the request is worth sending again; raises otherwise.
        """
        host = self.auth.registry_host
        challenges = parse_www_authenticate(challenge_header)
        challenge = next((c for c in challenges if c.scheme == "bearer"), None) or next(
            (c for c in challenges if c.scheme == "basic"), None
        )
        if challenge is None:
            raise AuthenticationError(
                f"{host} requires authentication for {self.what} but offers "
                "neither Bearer nor Basic authentication"
            )
        await self.auth.ensure_credentials()
        refusal = refusal_of(self.challenge, challenge)
        if refusal in self._answered or refusal is Refusal.DENIED:
            raise self._refusal_error(challenge, refusal)
        self._answered.add(refusal)
        if refusal is Refusal.NEW_CHALLENGE:
            self.challenge = _kept_challenge(challenge)
        credentials = self.auth.credentials
        if challenge.scheme == "basic" and (credentials is None or not credentials.username):
            raise AuthenticationError(
                f"{host} requires a username and password for {self.what}; "
                f"log in with 'docker login {host}' or pass {LOG_IN}"
            ).suggesting(LOG_IN)
        self.auth.invalidate(self.scope, sent, self.challenge)
        if refusal is Refusal.INSUFFICIENT_SCOPE and challenge.params.get("scope"):
            self.scope = challenge.params["scope"]

    def _refusal_error(self, challenge: Challenge, refusal: Refusal) -> DockerDragError:
        """A final 401: in Docker's words when a pull without credentials was refused a
        repository (it may not exist: Docker Hub answers both alike), else an
        AuthenticationError."""
        host = self.auth.registry_host
        repository = _pulled_repository(self.scope)
        anonymous = identity_of(self.auth.credentials) is Identity.ANONYMOUS
        no_access = refusal in (Refusal.INSUFFICIENT_SCOPE, Refusal.DENIED)
        if anonymous and no_access and repository is not None:
            return PullAccessDeniedError(
                f"pull access denied for {repository} on {host}: the repository does not "
                f"exist or may require 'docker login {host}' (or {LOG_IN})"
            ).suggesting(LOG_IN)
        return AuthenticationError(self._refusal_message(challenge, refusal)).suggesting(
            *login_remedies(identity_of(self.auth.credentials))
        )

    def _refusal_message(self, challenge: Challenge, refusal: Refusal) -> str:
        """An actionable message for a final 401 (never contains a secret)."""
        host = self.auth.registry_host
        credentials = self.auth.credentials
        text = f"authentication to {host} failed for {self.what}"
        if refusal is Refusal.INSUFFICIENT_SCOPE:
            detail = f"the registry granted no access to {self.scope}"
        elif refusal is Refusal.INVALID_TOKEN:
            detail = "the registry rejected a freshly issued token (invalid_token)"
        else:
            error = challenge.params.get("error", "")
            detail = f"the registry refused {describe_identity(credentials)}" + (
                f" ({error})" if error else ""
            )
        return f"{text}: {detail}; {login_hint(identity_of(credentials), host)}"
