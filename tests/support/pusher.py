"""A tiny registry client on urllib, independent of dockerdrag, to seed and inspect.

It works against every mode of :mod:`tests.support.registry_server`: on a 401 it
answers a ``Basic`` challenge with the registry's credentials, or fetches a token
from a ``Bearer`` realm (``pull,push`` scope, Basic credentials when it has any)
and retries once. HTTPS is verified against the registry's CA.

Every function takes the registry as its first argument: anything with ``url``,
``ca_pem_path``, ``username`` and ``password`` attributes (a ``RegistryServer``,
or a :class:`Endpoint` for a proxy in front of one).

Requests carry ``User-Agent: dockerdrag-test-pusher`` so the token server's log
can tell them apart from the client under test (``TokenServer.requests_from``).
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import re
import ssl
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Protocol

USER_AGENT = "dockerdrag-test-pusher/1"

MANIFEST_ACCEPT = ", ".join(
    [
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    ]
)


class RegistryLike(Protocol):
    @property
    def url(self) -> str: ...
    @property
    def ca_pem_path(self) -> Path | None: ...
    @property
    def username(self) -> str | None: ...
    @property
    def password(self) -> str | None: ...


@dataclasses.dataclass(frozen=True)
class Endpoint:
    """A registry address with credentials, e.g. a fault proxy in front of a registry."""

    url: str
    ca_pem_path: Path | None = None
    username: str | None = None
    password: str | None = None


class RegistryHTTPError(Exception):
    """A registry answered with an unexpected status."""

    def __init__(self, method: str, url: str, status: int, body: bytes) -> None:
        super().__init__(f"{method} {url} -> {status}: {body[:500]!r}")
        self.status = status
        self.body = body


@dataclasses.dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes


@dataclasses.dataclass(frozen=True)
class FetchedManifest:
    body: bytes
    media_type: str
    digest: str  # sha256 of body


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


_CHALLENGE_PARAM = re.compile(r'(\w+)="([^"]*)"')
_tokens_lock = threading.Lock()
# (registry url, scopes) -> (Authorization header value, monotonic expiry)
_tokens: dict[tuple[str, tuple[str, ...]], tuple[str, float]] = {}


def _ssl_context(registry: RegistryLike) -> ssl.SSLContext | None:
    if registry.ca_pem_path is None:
        return None
    return ssl.create_default_context(cafile=str(registry.ca_pem_path))


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


def _raw(
    registry: RegistryLike,
    method: str,
    url: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    request = urllib.request.Request(url, data=body, method=method)
    request.add_header("User-Agent", USER_AGENT)
    for key, value in (headers or {}).items():
        request.add_header(key, value)
    opener = urllib.request.build_opener(
        urllib.request.HTTPSHandler(context=_ssl_context(registry)), _NoRedirect()
    )
    try:
        with opener.open(request, timeout=60) as reply:
            return Response(reply.status, _lower(reply.headers.items()), reply.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return Response(exc.code, _lower(exc.headers.items()), exc.read())


def _lower(items: object) -> dict[str, str]:
    return {k.lower(): v for k, v in items}  # type: ignore[attr-defined]


def _basic(registry: RegistryLike) -> str | None:
    if registry.username is None:
        return None
    raw = f"{registry.username}:{registry.password or ''}".encode()
    return "Basic " + base64.b64encode(raw).decode("ascii")


def _fetch_token(registry: RegistryLike, challenge: str, scopes: tuple[str, ...]) -> str:
    params = dict(_CHALLENGE_PARAM.findall(challenge))
    realm = params.get("realm")
    if not realm:
        raise RuntimeError(f"Bearer challenge without realm: {challenge!r}")
    query = [("scope", scope) for scope in scopes]
    if "service" in params:
        query.append(("service", params["service"]))
    if registry.username:
        query.append(("account", registry.username))
    headers = {}
    basic = _basic(registry)
    if basic:
        headers["Authorization"] = basic
    url = realm + ("&" if "?" in realm else "?") + urllib.parse.urlencode(query)
    reply = _raw(registry, "GET", url, headers=headers)
    if reply.status != 200:
        raise RegistryHTTPError("GET", realm, reply.status, reply.body)
    answer = json.loads(reply.body)
    token = answer.get("token") or answer.get("access_token")
    lifetime = float(answer.get("expires_in") or 60)
    value = f"Bearer {token}"
    with _tokens_lock:
        _tokens[(registry.url, scopes)] = (value, time.monotonic() + lifetime - 5)
    return value


def _covers(scopes: tuple[str, ...], wanted: str) -> bool:
    """Whether ``scopes`` already ask for every action of the ``wanted`` scope."""
    resource, _, actions = wanted.rpartition(":")
    for scope in scopes:
        have_resource, _, have_actions = scope.rpartition(":")
        if have_resource == resource and set(actions.split(",")) <= set(have_actions.split(",")):
            return True
    return False


def request(
    registry: RegistryLike,
    method: str,
    path: str,
    *,
    repo: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    actions: str = "pull,push",
    extra_scopes: tuple[str, ...] = (),
) -> Response:
    """``method`` on ``path`` (relative to the registry, or an absolute URL), with auth."""
    url = path if "://" in path else registry.url + path
    scopes = (f"repository:{repo}:{actions}", *extra_scopes)
    headers = dict(headers or {})
    with _tokens_lock:
        cached = _tokens.get((registry.url, scopes))
    if cached and cached[1] > time.monotonic():
        headers["Authorization"] = cached[0]
    reply = _raw(registry, method, url, body, headers)
    if reply.status != 401:
        return reply
    challenge = reply.headers.get("www-authenticate", "")
    if challenge.lower().startswith("basic"):
        auth = _basic(registry)
        if auth is None:
            return reply
        with _tokens_lock:
            _tokens[(registry.url, scopes)] = (auth, float("inf"))
    elif challenge.lower().startswith("bearer"):
        # The scopes we ask for, plus whatever else the registry says it needs.
        wanted = dict(_CHALLENGE_PARAM.findall(challenge)).get("scope")
        token_scopes = scopes
        if wanted and not _covers(scopes, wanted):
            token_scopes = (*scopes, wanted)
        auth = _fetch_token(registry, challenge, token_scopes)
        with _tokens_lock:
            _tokens[(registry.url, scopes)] = _tokens[(registry.url, token_scopes)]
    else:
        return reply
    headers["Authorization"] = auth
    return _raw(registry, method, url, body, headers)


def _expect(reply: Response, method: str, path: str, *statuses: int) -> Response:
    if reply.status not in statuses:
        raise RegistryHTTPError(method, path, reply.status, reply.body)
    return reply


def blob_exists(registry: RegistryLike, repo: str, digest: str) -> bool:
    path = f"/v2/{repo}/blobs/{digest}"
    reply = request(registry, "HEAD", path, repo=repo)
    return _expect(reply, "HEAD", path, 200, 404).status == 200


def mount_blob(registry: RegistryLike, repo: str, digest: str, from_repo: str) -> bool:
    """Cross-repository mount; True if mounted (False: the registry started an upload)."""
    path = f"/v2/{repo}/blobs/uploads/?" + urllib.parse.urlencode(
        {"mount": digest, "from": from_repo}
    )
    reply = request(
        registry,
        "POST",
        path,
        repo=repo,
        body=b"",
        extra_scopes=(f"repository:{from_repo}:pull",),
    )
    _expect(reply, "POST", path, 201, 202)
    if reply.status == 202:  # not mounted: cancel the upload it opened
        location = urllib.parse.urljoin(registry.url + path, reply.headers["location"])
        request(registry, "DELETE", location, repo=repo)
    return reply.status == 201


def push_blob(
    registry: RegistryLike, repo: str, data: bytes, *, mount_from: str | None = None
) -> str:
    """Upload ``data`` monolithically (skipped if the blob exists); returns its digest."""
    digest = sha256_digest(data)
    if blob_exists(registry, repo, digest):
        return digest
    if mount_from is not None and mount_blob(registry, repo, digest, mount_from):
        return digest
    start = f"/v2/{repo}/blobs/uploads/"
    reply = _expect(request(registry, "POST", start, repo=repo, body=b""), "POST", start, 202)
    location = urllib.parse.urljoin(registry.url + start, reply.headers["location"])
    sep = "&" if urllib.parse.urlsplit(location).query else "?"
    put_url = f"{location}{sep}digest={urllib.parse.quote(digest)}"
    reply = request(
        registry,
        "PUT",
        put_url,
        repo=repo,
        body=data,
        headers={"Content-Type": "application/octet-stream"},
    )
    _expect(reply, "PUT", put_url, 201)
    return digest


def push_manifest(registry: RegistryLike, repo: str, ref: str, body: bytes, media_type: str) -> str:
    """PUT a manifest or index under ``ref`` (a tag or its digest); returns its digest."""
    path = f"/v2/{repo}/manifests/{ref}"
    reply = request(
        registry, "PUT", path, repo=repo, body=body, headers={"Content-Type": media_type}
    )
    _expect(reply, "PUT", path, 201)
    digest = sha256_digest(body)
    served = reply.headers.get("docker-content-digest")
    if served is not None and served != digest:
        raise RuntimeError(f"registry computed {served} for a manifest we hashed as {digest}")
    return digest


def get_manifest(
    registry: RegistryLike, repo: str, ref: str, *, accept: str = MANIFEST_ACCEPT
) -> FetchedManifest:
    path = f"/v2/{repo}/manifests/{ref}"
    reply = request(registry, "GET", path, repo=repo, actions="pull", headers={"Accept": accept})
    _expect(reply, "GET", path, 200)
    return FetchedManifest(
        reply.body, reply.headers.get("content-type", ""), sha256_digest(reply.body)
    )


def get_blob(registry: RegistryLike, repo: str, digest: str) -> bytes:
    path = f"/v2/{repo}/blobs/{digest}"
    reply = request(registry, "GET", path, repo=repo, actions="pull")
    if reply.status in (301, 302, 307, 308):
        reply = _raw(registry, "GET", reply.headers["location"])
    return _expect(reply, "GET", path, 200).body


def delete_manifest(registry: RegistryLike, repo: str, digest: str) -> None:
    path = f"/v2/{repo}/manifests/{digest}"
    _expect(request(registry, "DELETE", path, repo=repo, actions="delete"), "DELETE", path, 202)


def delete_blob(registry: RegistryLike, repo: str, digest: str) -> None:
    path = f"/v2/{repo}/blobs/{digest}"
    _expect(request(registry, "DELETE", path, repo=repo, actions="delete"), "DELETE", path, 202)


def list_tags(registry: RegistryLike, repo: str) -> list[str]:
    path = f"/v2/{repo}/tags/list"
    reply = _expect(request(registry, "GET", path, repo=repo, actions="pull"), "GET", path, 200)
    return list(json.loads(reply.body).get("tags") or [])
