"""A small Docker token server (the "Bearer" realm of a registry), for tests.

It implements the two halves of the token protocol that clients use:

* ``GET /token?service=S&scope=S1&scope=S2&account=A`` with optional Basic auth
  (the "Docker" flow);
* ``POST /token`` with a form body, ``grant_type=password`` (``username``,
  ``password``) or ``grant_type=refresh_token`` (``refresh_token``), the OAuth2
  flow; ``access_type=offline`` adds a ``refresh_token`` to the reply.

Tokens are ES256 JWTs signed with an EC P-256 key. The registry trusts the
self-signed certificate of that key (``cert_path`` is its ``rootcertbundle``)
and finds it through the JWT header ``kid``, the libtrust key ID.

Everything the tests may want to vary lives in :class:`TokenPolicy` (users,
anonymous access, token lifetime, reply shape, injected failures). The server
records every request as a :class:`TokenRequest` so tests can count token
fetches and check which credentials were sent. :meth:`TokenServer.reset`
restores the policy it was started with and forgets the recorded requests.

The HTTP side is the standard library's threading HTTP server in a daemon
thread: it has no event loop of its own, so it works under any test.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime
import hashlib
import http.server
import json
import secrets
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

# Seconds of clock skew the registry (distribution 2.8) tolerates on exp and nbf.
REGISTRY_LEEWAY = 60

ALL_ACTIONS = ("pull", "push", "delete", "*")

# A grant function: (account or None for anonymous, resource type, resource name,
# requested actions) -> granted actions.
GrantFunc = Callable[[str | None, str, str, list[str]], list[str]]


def libtrust_key_id(public_key: ec.EllipticCurvePublicKey) -> str:
    """The key ID docker/libtrust derives from a public key.

    sha256 of the DER SubjectPublicKeyInfo, first 30 bytes, base32 without
    padding, in 12 groups of 4 characters joined by ``:``.
    """
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    b32 = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode("ascii").rstrip("=")
    return ":".join(b32[i : i + 4] for i in range(0, len(b32), 4))


@dataclasses.dataclass
class FailureSpec:
    """One injected failure: answer the next matching request with ``status``."""

    status: int
    body: bytes = b'{"errors":[{"code":"UNAVAILABLE","message":"injected failure"}]}'
    retry_after: str | None = None


@dataclasses.dataclass
class TokenPolicy:
    """What the token server accepts and how it answers.

    ``users`` maps user names to passwords. Anonymous requests (no credentials)
    are answered when ``allow_anonymous`` is true and get ``anonymous_actions``
    at most; wrong credentials always get 401. ``grant`` (if set) decides the
    granted actions instead of the default rule "authenticated users get what
    they ask for, anonymous users get the intersection with
    ``anonymous_actions``". ``deny_all`` answers every request with 401
    (``deny_status``).

    ``ttl`` is the real lifetime of a token in seconds: ``exp`` is written as
    ``now - 60 + ttl`` because the registry adds 60 s of leeway. The reply's
    ``expires_in`` is ``ttl`` unless ``reported_expires_in`` overrides it
    (``None`` there means "omit the field" when ``omit_expires_in`` is set).
    ``reply_fields`` says which of ``token`` / ``access_token`` the reply carries.
    """

    users: dict[str, str] = dataclasses.field(default_factory=dict)
    allow_anonymous: bool = True
    anonymous_actions: frozenset[str] = frozenset({"pull"})
    grant: GrantFunc | None = None
    deny_all: bool = False
    deny_status: int = 401
    ttl: int = 300
    reported_expires_in: float | None = None
    omit_expires_in: bool = False
    omit_issued_at: bool = False
    reply_fields: tuple[str, ...] = ("token", "access_token")
    failures: list[FailureSpec] = dataclasses.field(default_factory=list)


@dataclasses.dataclass(frozen=True)
class TokenRequest:
    """One request the token server received (recorded before answering)."""

    method: str
    path: str
    query: dict[str, list[str]]
    form: dict[str, list[str]]
    headers: dict[str, str]
    authorization: str | None
    username: str | None  # from Basic auth or the password grant
    password: str | None
    grant_type: str | None  # None for the GET flow
    service: str | None
    scopes: tuple[str, ...]
    account: str | None
    user_agent: str | None
    status: int = 0  # filled in after answering (see TokenServer.requests)
    granted: tuple[dict[str, Any], ...] = ()

    @property
    def used_basic_auth(self) -> bool:
        return (self.authorization or "").lower().startswith("basic ")


def _parse_scopes(values: Iterable[str]) -> list[tuple[str, str, list[str]]]:
    """Parse ``type:name:actions`` scopes (several may be space-separated)."""
    parsed: list[tuple[str, str, list[str]]] = []
    for value in values:
        for scope in value.split():
            # Names may contain ':' only with a port ("registry:5000/x") which
            # never appears in a scope; split type off the left, actions off the right.
            kind, sep, rest = scope.partition(":")
            name, sep2, actions = rest.rpartition(":")
            if not sep or not sep2 or not kind or not name:
                continue
            parsed.append((kind, name, [a for a in actions.split(",") if a]))
    return parsed


class TokenServer:
    """An ES256 token server on 127.0.0.1, optionally over TLS.

    Use as a context manager or call :meth:`start` / :meth:`stop`.
    """

    def __init__(
        self,
        directory: Path,
        *,
        service: str = "test-registry",
        issuer: str = "test-issuer",
        policy: TokenPolicy | None = None,
        tls_cert_pem: Path | None = None,
        tls_key_pem: Path | None = None,
    ) -> None:
        self.directory = Path(directory)
        self.service = service
        self.issuer = issuer
        self._initial_policy = policy or TokenPolicy()
        self.policy = dataclasses.replace(self._initial_policy)
        self._tls = (tls_cert_pem, tls_key_pem) if tls_cert_pem and tls_key_pem else None
        self._lock = threading.Lock()
        self._requests: list[TokenRequest] = []
        self._refresh_tokens: dict[str, str] = {}
        self._httpd: _QuietServer | None = None
        self._thread: threading.Thread | None = None
        self._key = ec.generate_private_key(ec.SECP256R1())
        self.key_id = libtrust_key_id(self._key.public_key())
        self.cert_path = self.directory / "token-signing.crt"
        self._private_pem = self._key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        self.port = 0

    # -- lifecycle -----------------------------------------------------------------

    def start(self) -> TokenServer:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.cert_path.write_bytes(self._self_signed_cert())
        httpd = _QuietServer(("127.0.0.1", 0), _make_handler(self))
        if self._tls is not None:
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(str(self._tls[0]), str(self._tls[1]))
            # Handshake lazily in the handler thread, not in accept().
            httpd.socket = ctx.wrap_socket(
                httpd.socket, server_side=True, do_handshake_on_connect=False
            )
        self._httpd = httpd
        self.port = httpd.server_address[1]
        self._thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            daemon=True,
            name=f"token-server-{self.port}",
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def __enter__(self) -> TokenServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- what tests use --------------------------------------------------------------

    @property
    def scheme(self) -> str:
        return "https" if self._tls else "http"

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    @property
    def realm(self) -> str:
        return f"{self.url}/token"

    @property
    def requests(self) -> list[TokenRequest]:
        with self._lock:
            return list(self._requests)

    @property
    def request_count(self) -> int:
        with self._lock:
            return len(self._requests)

    def requests_from(self, user_agent_prefix: str) -> list[TokenRequest]:
        return [r for r in self.requests if (r.user_agent or "").startswith(user_agent_prefix)]

    def clear_requests(self) -> None:
        with self._lock:
            self._requests.clear()

    def reset(self) -> None:
        """Back to the policy given at start; forget requests and refresh tokens."""
        with self._lock:
            self.policy = dataclasses.replace(
                self._initial_policy,
                failures=list(self._initial_policy.failures),
                users=dict(self._initial_policy.users),
            )
            self._requests.clear()
            self._refresh_tokens.clear()

    def fail_next(self, *statuses: int, retry_after: str | None = None) -> None:
        """Answer the next ``len(statuses)`` token requests with these statuses."""
        with self._lock:
            self.policy.failures.extend(FailureSpec(s, retry_after=retry_after) for s in statuses)

    def issue_token(
        self,
        access: list[dict[str, Any]],
        *,
        subject: str = "",
        ttl: int | None = None,
        audience: str | None = None,
        issuer: str | None = None,
    ) -> str:
        """Sign a token directly (no HTTP); handy to hand a client a ready token."""
        now = int(time.time())
        lifetime = self.policy.ttl if ttl is None else ttl
        claims = {
            "iss": issuer if issuer is not None else self.issuer,
            "sub": subject,
            "aud": audience if audience is not None else self.service,
            "exp": now - REGISTRY_LEEWAY + lifetime,
            "nbf": now - 1,
            "iat": now,
            "jti": secrets.token_hex(16),
            "access": access,
        }
        return jwt.encode(
            claims, self._private_pem, algorithm="ES256", headers={"kid": self.key_id}
        )

    def decode(self, token: str) -> dict[str, Any]:
        """Verify and decode a token this server issued (ignores expiry)."""
        claims: dict[str, Any] = jwt.decode(
            token,
            self._key.public_key(),
            algorithms=["ES256"],
            audience=self.service,
            options={"verify_exp": False, "verify_nbf": False},
        )
        return claims

    # -- internals ---------------------------------------------------------------------

    def _self_signed_cert(self) -> bytes:
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dockerdrag test token signer")])
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self._key, hashes.SHA256())
        )
        return cert.public_bytes(serialization.Encoding.PEM)

    def _record(self, request: TokenRequest) -> None:
        with self._lock:
            self._requests.append(request)

    def _update_last(self, request: TokenRequest, **changes: Any) -> None:
        with self._lock:
            for i in range(len(self._requests) - 1, -1, -1):
                if self._requests[i] is request:
                    self._requests[i] = dataclasses.replace(request, **changes)
                    return

    def _next_failure(self) -> FailureSpec | None:
        with self._lock:
            return self.policy.failures.pop(0) if self.policy.failures else None

    def _grant(
        self, account: str | None, scopes: list[tuple[str, str, list[str]]]
    ) -> list[dict[str, Any]]:
        policy = self.policy
        access: list[dict[str, Any]] = []
        for kind, name, actions in scopes:
            if policy.grant is not None:
                granted = policy.grant(account, kind, name, list(actions))
            elif account is None:
                granted = [a for a in actions if a in policy.anonymous_actions]
            else:
                granted = [a for a in actions if a in ALL_ACTIONS]
            if granted:
                access.append({"type": kind, "name": name, "actions": granted})
        return access

    def _handle(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        url = urllib.parse.urlsplit(path)
        query = urllib.parse.parse_qs(url.query, keep_blank_values=True)
        form: dict[str, list[str]] = {}
        if method == "POST":
            form = urllib.parse.parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
        authorization = headers.get("authorization")
        basic_user, basic_password = _parse_basic(authorization)
        grant_type = _first(form, "grant_type") if method == "POST" else None
        params = form if method == "POST" else query
        username, password = basic_user, basic_password
        if grant_type == "password":
            username, password = _first(form, "username"), _first(form, "password")
        record = TokenRequest(
            method=method,
            path=url.path,
            query=query,
            form=form,
            headers=headers,
            authorization=authorization,
            username=username,
            password=password,
            grant_type=grant_type,
            service=_first(params, "service"),
            scopes=tuple(params.get("scope", [])),
            account=_first(params, "account"),
            user_agent=headers.get("user-agent"),
        )
        self._record(record)
        status, reply_headers, reply = self._answer(record)
        granted: tuple[dict[str, Any], ...] = ()
        if status == 200:
            answer = json.loads(reply)
            token = answer.get("token") or answer.get("access_token")
            granted = tuple(self.decode(token)["access"]) if token else ()
        self._update_last(record, status=status, granted=granted)
        return status, reply_headers, reply

    def _answer(self, req: TokenRequest) -> tuple[int, dict[str, str], bytes]:
        if req.path != "/token":
            return _error(404, "NOT_FOUND", "no such endpoint")
        if req.method == "POST" and req.grant_type not in ("password", "refresh_token"):
            return _error(400, "UNSUPPORTED", f"unsupported grant_type {req.grant_type!r}")
        failure = self._next_failure()
        if failure is not None:
            headers = {"Content-Type": "application/json"}
            if failure.retry_after is not None:
                headers["Retry-After"] = failure.retry_after
            return failure.status, headers, failure.body
        policy = self.policy
        if policy.deny_all:
            return _error(policy.deny_status, "DENIED", "access denied")
        if req.service is not None and req.service != self.service:
            return _error(400, "INVALID_SERVICE", f"unknown service {req.service!r}")

        account: str | None
        if req.grant_type == "refresh_token":
            refresh = _first(req.form, "refresh_token") or ""
            with self._lock:
                account = self._refresh_tokens.get(refresh)
            if account is None:
                return _error(401, "UNAUTHORIZED", "invalid refresh token")
        elif req.username is not None or req.password is not None:
            if policy.users.get(req.username or "") != req.password or req.username is None:
                return _error(401, "UNAUTHORIZED", "invalid username or password")
            account = req.username
        elif req.authorization is not None:
            return _error(401, "UNAUTHORIZED", "unsupported authorization")
        else:
            if not policy.allow_anonymous:
                return _error(401, "UNAUTHORIZED", "authentication required")
            account = None

        access = self._grant(account, _parse_scopes(req.scopes))
        token = self.issue_token(access, subject=account or "")
        now = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
        reply: dict[str, Any] = {field: token for field in policy.reply_fields}
        if not policy.omit_expires_in:
            reply["expires_in"] = (
                policy.ttl if policy.reported_expires_in is None else policy.reported_expires_in
            )
        if not policy.omit_issued_at:
            reply["issued_at"] = now.isoformat().replace("+00:00", "Z")
        if req.method == "POST" and _first(req.form, "access_type") == "offline" and account:
            refresh = secrets.token_urlsafe(24)
            with self._lock:
                self._refresh_tokens[refresh] = account
            reply["refresh_token"] = refresh
        if req.grant_type == "refresh_token":
            reply["refresh_token"] = _first(req.form, "refresh_token")
        return 200, {"Content-Type": "application/json"}, json.dumps(reply).encode()


def _first(values: dict[str, list[str]], key: str) -> str | None:
    found = values.get(key)
    return found[0] if found else None


def _parse_basic(authorization: str | None) -> tuple[str | None, str | None]:
    if not authorization or not authorization.lower().startswith("basic "):
        return None, None
    try:
        decoded = base64.b64decode(authorization[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return "", ""
    user, _, password = decoded.partition(":")
    return user, password


def _error(status: int, code: str, message: str) -> tuple[int, dict[str, str], bytes]:
    body = json.dumps({"errors": [{"code": code, "message": message}]}).encode()
    return status, {"Content-Type": "application/json"}, body


class _QuietServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # aborted connections and failed TLS handshakes are the client's business


def _make_handler(server: TokenServer) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        timeout = 30
        # The headers and the body go out in two writes: with Nagle's algorithm the body
        # waited for the client's delayed ACK of the headers (~40 ms per keep-alive request).
        disable_nagle_algorithm = True

        def setup(self) -> None:
            super().setup()
            if isinstance(self.request, ssl.SSLSocket):
                self.request.do_handshake()

        def _serve(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(min(length, 1 << 20)) if length else b""
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, reply_headers, reply = server._handle(method, self.path, headers, body)
            self.send_response(status)
            for key, value in reply_headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def do_GET(self) -> None:
            self._serve("GET")

        def do_POST(self) -> None:
            self._serve("POST")

        def log_message(self, format: str, *args: Any) -> None:
            pass  # requests are recorded, not logged

    return Handler
