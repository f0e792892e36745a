"""Run a real ``docker-registry`` (distribution 2.8.2) on 127.0.0.1 for tests.

Four modes, chosen by :func:`start_registry`'s ``auth`` and ``tls`` arguments:

* ``auth="none"``: anonymous, plain HTTP by default (``tls=True`` for HTTPS);
* ``auth="basic"``: htpasswd (bcrypt) Basic auth, HTTPS by default (the registry
  also serves htpasswd over plain HTTP, ``tls=False``);
* ``auth="token"``: Bearer tokens from a :class:`~tests.support.token_server.TokenServer`;
  by default both the registry and the token realm are HTTPS (clients must not send
  credentials to an http realm) and the token server requires the credentials.

The registry listens on port 0; the real port is read from its log line
``listening on 127.0.0.1:PORT``, so there is no free-port race. TLS material
comes from ``trustme``: one CA per registry, ``ca_pem_path`` is its PEM, and the
server certificate is valid for ``127.0.0.1`` and ``localhost``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import re
import secrets
import signal
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

import trustme

from . import parent_death_signal, require_binary, stop_process
from .token_server import TokenPolicy, TokenServer

REGISTRY_BINARY = "/usr/bin/docker-registry"
HTPASSWD_BINARY = "/usr/bin/htpasswd"
DEFAULT_USERNAME = "alice"
TOKEN_SERVICE = "test-registry"
TOKEN_ISSUER = "test-issuer"

AuthMode = Literal["none", "basic", "token"]

_LISTENING = re.compile(r"listening on 127\.0\.0\.1:(\d+)")


@dataclasses.dataclass
class RegistryServer:
    """A running registry. ``host`` is ``127.0.0.1:PORT`` (the reference prefix)."""

    host: str
    url: str
    scheme: str
    auth: AuthMode
    directory: Path
    data_dir: Path
    config_path: Path
    log_path: Path
    ca_pem_path: Path | None = None
    username: str | None = None
    password: str | None = None
    token_server: TokenServer | None = None
    process: subprocess.Popen[bytes] | None = dataclasses.field(default=None, repr=False)
    ca: trustme.CA | None = dataclasses.field(default=None, repr=False)
    binary: str = dataclasses.field(default=REGISTRY_BINARY, repr=False)

    @property
    def port(self) -> int:
        return int(self.host.rsplit(":", 1)[1])

    @property
    def tls(self) -> bool:
        return self.scheme == "https"

    @property
    def insecure(self) -> bool:
        """True when a client must treat this host as an insecure (http) registry."""
        return not self.tls

    def ref(self, repo: str, tag: str = "latest") -> str:
        """``127.0.0.1:PORT/repo:tag`` (or ``@digest`` when tag starts with ``sha256:``)."""
        sep = "@" if tag.startswith("sha256:") else ":"
        return f"{self.host}/{repo}{sep}{tag}"

    def ssl_context(self) -> ssl.SSLContext | None:
        """A client context trusting this registry's CA (None for plain HTTP)."""
        if self.ca_pem_path is None:
            return None
        return ssl.create_default_context(cafile=str(self.ca_pem_path))

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def reset(self) -> None:
        """Reset per-test state (the token server's policy and request log)."""
        if self.token_server is not None:
            self.token_server.reset()

    def stop(self) -> None:
        """Stop the registry and its token server (idempotent)."""
        self.stop_registry_process()
        if self.token_server is not None:
            self.token_server.stop()

    def stop_registry_process(self) -> None:
        """Stop only the registry process (its port then refuses connections)."""
        if self.process is not None:
            stop_process(self.process, timeout=5)
            self.process = None

    def restart(self, *, timeout: float = 15.0) -> None:
        """Restart the registry process on the same port with the same storage."""
        self.stop_registry_process()
        self._spawn(self.port, timeout)

    def _spawn(self, port: int, timeout: float) -> None:
        config = json.loads(self.config_path.read_text())
        config["http"]["addr"] = f"127.0.0.1:{port}"
        self.config_path.write_text(json.dumps(config, indent=2))  # JSON is valid YAML
        log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [self.binary, "serve", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.directory,
                preexec_fn=parent_death_signal(signal.SIGKILL),
            )
        try:
            port = self._wait_for_port(self.process, log_offset, timeout)
            self.host = f"127.0.0.1:{port}"
            self.url = f"{self.scheme}://{self.host}"
            self._wait_for_v2(self.process, timeout)
        except BaseException:
            self.stop_registry_process()
            raise

    def _wait_for_port(
        self, process: subprocess.Popen[bytes], log_offset: int, timeout: float
    ) -> int:
        deadline = time.monotonic() + timeout
        while True:
            # log_offset counts bytes: slice the bytes, then decode (the log holds "µs").
            new_output = self.log_path.read_bytes()[log_offset:] if self.log_path.exists() else b""
            match = _LISTENING.search(new_output.decode(errors="replace"))
            if match:
                return int(match.group(1))
            if process.poll() is not None:
                raise RuntimeError(
                    f"docker-registry exited with {process.returncode}:\n{self.log_text()}"
                )
            if time.monotonic() > deadline:
                raise RuntimeError(f"docker-registry did not start listening:\n{self.log_text()}")
            time.sleep(0.01)

    def _wait_for_v2(self, process: subprocess.Popen[bytes], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        context = self.ssl_context()
        last_error: Exception | None = None
        while time.monotonic() < deadline and process.poll() is None:
            try:
                with urllib.request.urlopen(f"{self.url}/v2/", timeout=2, context=context):
                    return
            except urllib.error.HTTPError as exc:
                exc.close()
                if exc.code == 401:
                    return
                last_error = exc
            except OSError as exc:
                last_error = exc
            time.sleep(0.01)
        raise RuntimeError(f"registry /v2/ not ready ({last_error!r}):\n{self.log_text()}")


def _deep_merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _deep_merge(base[key], value)
        else:
            base[key] = value
    return base


def _write_htpasswd(path: Path, username: str, password: str) -> None:
    htpasswd = require_binary(HTPASSWD_BINARY, "apache2-utils")
    line = subprocess.run(
        [htpasswd, "-Bbn", username, password], check=True, capture_output=True, text=True
    ).stdout.strip()
    path.write_text(line + "\n")


def start_registry(
    directory: Path,
    *,
    auth: AuthMode = "none",
    tls: bool | None = None,
    username: str = DEFAULT_USERNAME,
    password: str | None = None,
    token_policy: TokenPolicy | None = None,
    token_tls: bool | None = None,
    extra_config: Mapping[str, Any] | None = None,
    ca: trustme.CA | None = None,
    startup_timeout: float = 15.0,
) -> RegistryServer:
    """Start a registry in ``directory`` (created) and wait until ``/v2/`` answers.

    ``tls`` defaults to False for ``auth="none"`` and True otherwise. For token auth
    ``token_policy`` defaults to "the configured user gets every action it asks for,
    anonymous requests are refused"; ``token_tls`` defaults to ``tls``.
    """
    binary = require_binary(REGISTRY_BINARY, "docker-registry")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if tls is None:
        tls = auth != "none"
    if auth != "none" and password is None:
        password = "pw-" + secrets.token_urlsafe(12)

    data_dir = directory / "data"
    data_dir.mkdir(exist_ok=True)
    config: dict[str, Any] = {
        "version": 0.1,
        "log": {"level": "info", "accesslog": {"disabled": True}},
        "storage": {
            "filesystem": {"rootdirectory": str(data_dir)},
            "delete": {"enabled": True},
            "maintenance": {"uploadpurging": {"enabled": False}},
        },
        "http": {"addr": "127.0.0.1:0", "secret": secrets.token_hex(16)},
        # Accept manifests whose layers carry foreign "urls".
        "validation": {"manifests": {"urls": {"allow": ["^https?://"]}}},
    }

    ca_pem_path: Path | None = None
    need_ca = tls or (auth == "token" and (token_tls if token_tls is not None else tls))
    cert_pem = key_pem = None
    if need_ca:
        ca = ca or trustme.CA()
        ca_pem_path = directory / "ca.pem"
        ca.cert_pem.write_to_path(str(ca_pem_path))
        leaf = ca.issue_cert("127.0.0.1", "localhost")
        cert_pem, key_pem = directory / "server.crt", directory / "server.key"
        # The chain (leaf + intermediates, if any) goes in the certificate file.
        cert_pem.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
        leaf.private_key_pem.write_to_path(str(key_pem))
        if tls:
            config["http"]["tls"] = {"certificate": str(cert_pem), "key": str(key_pem)}

    token_server: TokenServer | None = None
    server_username: str | None = None
    if auth == "basic":
        assert password is not None
        htpasswd_path = directory / "htpasswd"
        _write_htpasswd(htpasswd_path, username, password)
        config["auth"] = {"htpasswd": {"realm": "test-registry", "path": str(htpasswd_path)}}
        server_username = username
    elif auth == "token":
        assert password is not None
        policy = token_policy or TokenPolicy(users={username: password}, allow_anonymous=False)
        use_token_tls = tls if token_tls is None else token_tls
        token_server = TokenServer(
            directory / "token",
            service=TOKEN_SERVICE,
            issuer=TOKEN_ISSUER,
            policy=policy,
            tls_cert_pem=cert_pem if use_token_tls else None,
            tls_key_pem=key_pem if use_token_tls else None,
        ).start()
        config["auth"] = {
            "token": {
                "realm": token_server.realm,
                "service": TOKEN_SERVICE,
                "issuer": TOKEN_ISSUER,
                "rootcertbundle": str(token_server.cert_path),
            }
        }
        server_username = username
    elif auth != "none":
        raise ValueError(f"unknown auth mode {auth!r}")

    if extra_config:
        _deep_merge(config, extra_config)
    config_path = directory / "config.yml"
    config_path.write_text(json.dumps(config, indent=2))
    server = RegistryServer(
        host="",
        url="",
        scheme="https" if tls else "http",
        auth=auth,
        directory=directory,
        data_dir=data_dir,
        config_path=config_path,
        log_path=directory / "registry.log",
        ca_pem_path=ca_pem_path,
        username=server_username,
        password=password if server_username else None,
        token_server=token_server,
        ca=ca,
        binary=binary,
    )
    try:
        server._spawn(0, startup_timeout)
    except BaseException:
        server.stop()
        raise
    return server


@contextlib.contextmanager
def running_registry(directory: Path, **kwargs: Any) -> Iterator[RegistryServer]:
    """``start_registry`` as a context manager; stops the registry (and token server)."""
    server = start_registry(directory, **kwargs)
    try:
        yield server
    finally:
        server.stop()
