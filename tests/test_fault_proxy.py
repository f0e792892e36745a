"""Tests of the test rig itself: the fault proxy and the header recorder.

A real ``docker-registry`` is started by a small local fixture (the shared registry fixtures live
elsewhere); clients are urllib, http.client and aiohttp, never dockerdrag.
"""

from __future__ import annotations

import asyncio
import hashlib
import http.client
import json
import random
import socket
import ssl
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import Message
from email.utils import parsedate_to_datetime
from pathlib import Path
from urllib.parse import urljoin

import aiohttp
import pytest
import trustme
from multidict import CIMultiDictProxy

from tests.support.fault_proxy import (
    FaultProxy,
    WrongContentRange,
    drop_after,
    flip_byte,
    ignore_range,
    lie_content_length,
    redirect,
    replace_body,
    stall,
    status,
    strip_content_length,
    swap_body,
    throttle,
    wrong_content_range,
)
from tests.support.header_recorder import HeaderRecorder

REGISTRY_BINARY = "/usr/bin/docker-registry"
REPO = "rig/fault-proxy"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
BLOB = random.Random(20240601).randbytes(300_000)
CONFIG = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {}}).encode()


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------------------------------
# Local fixtures: one registry for this module, an image in it, a proxy per test
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Seeded:
    """What the module's registry holds."""

    registry: str
    blob_digest: str
    config_digest: str
    manifest: bytes
    manifest_digest: str

    def blob_path(self, digest: str | None = None) -> str:
        return f"/v2/{REPO}/blobs/{digest or self.blob_digest}"

    @property
    def manifest_path(self) -> str:
        return f"/v2/{REPO}/manifests/v1"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _push_blob(base: str, repo: str, data: bytes) -> str:
    """Monolithic upload: POST an upload session, then PUT the bytes with ``?digest=``."""
    digest = _digest(data)
    post = urllib.request.Request(f"{base}/v2/{repo}/blobs/uploads/", data=b"", method="POST")
    with urllib.request.urlopen(post, timeout=10) as resp:
        assert resp.status == 202
        location = urljoin(base, str(resp.headers["Location"]))
    sep = "&" if "?" in location else "?"
    put = urllib.request.Request(
        f"{location}{sep}digest={digest}",
        data=data,
        method="PUT",
        headers={"Content-Type": "application/octet-stream"},
    )
    with urllib.request.urlopen(put, timeout=10) as resp:
        assert resp.status == 201
    return location


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seeded]:
    """A ``docker-registry`` on a free port holding one OCI image (one layer) as ``REPO:v1``."""
    root: Path = tmp_path_factory.mktemp("fault-proxy-registry")
    port = _free_port()
    config = root / "config.yml"
    config.write_text(
        "version: 0.1\n"
        "log: {level: warn}\n"
        f"storage: {{filesystem: {{rootdirectory: {root / 'data'}}}}}\n"
        f"http: {{addr: 127.0.0.1:{port}}}\n"
    )
    base = f"http://127.0.0.1:{port}"
    with (root / "registry.log").open("wb") as log:
        proc = subprocess.Popen(
            [REGISTRY_BINARY, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT
        )
        try:
            deadline = time.monotonic() + 20
            while True:
                if proc.poll() is not None:
                    pytest.fail(f"docker-registry exited: {(root / 'registry.log').read_text()}")
                try:
                    with urllib.request.urlopen(f"{base}/v2/", timeout=1) as resp:
                        if resp.status == 200:
                            break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    pytest.fail("docker-registry did not come up")
                time.sleep(0.05)

            _push_blob(base, REPO, BLOB)
            _push_blob(base, REPO, CONFIG)
            manifest = json.dumps(
                {
                    "schemaVersion": 2,
                    "mediaType": OCI_MANIFEST,
                    "config": {
                        "mediaType": "application/vnd.oci.image.config.v1+json",
                        "digest": _digest(CONFIG),
                        "size": len(CONFIG),
                    },
                    "layers": [
                        {
                            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                            "digest": _digest(BLOB),
                            "size": len(BLOB),
                        }
                    ],
                }
            ).encode()
            put = urllib.request.Request(
                f"{base}/v2/{REPO}/manifests/v1",
                data=manifest,
                method="PUT",
                headers={"Content-Type": OCI_MANIFEST},
            )
            with urllib.request.urlopen(put, timeout=10) as resp:
                assert resp.status == 201
            yield Seeded(base, _digest(BLOB), _digest(CONFIG), manifest, _digest(manifest))
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture
def proxy(seeded: Seeded) -> Iterator[FaultProxy]:
    with FaultProxy(seeded.registry) as p:
        yield p


@pytest.fixture
def recorder() -> Iterator[HeaderRecorder]:
    with HeaderRecorder(b"from the recorder") as r:
        yield r


# --------------------------------------------------------------------------------------------
# Client helpers
# --------------------------------------------------------------------------------------------


@dataclass
class Got:
    """Outcome of one aiohttp request: what arrived, and the exception that ended it (if any)."""

    status: int
    headers: CIMultiDictProxy[str]
    body: bytes
    error: BaseException | None = None


async def _afetch(
    url: str,
    *,
    method: str = "GET",
    headers: Sequence[tuple[str, str]] = (),
    timeout: aiohttp.ClientTimeout | None = None,
    allow_redirects: bool = False,
) -> Got:
    """One request with aiohttp (no decompression); body errors are returned, not raised."""
    async with (
        aiohttp.ClientSession(
            auto_decompress=False, timeout=timeout or aiohttp.ClientTimeout(total=30)
        ) as session,
        session.request(
            method, url, headers=list(headers), allow_redirects=allow_redirects
        ) as resp,
    ):
        received = bytearray()
        try:
            async for chunk in resp.content.iter_chunked(8192):
                received += chunk
        except (aiohttp.ClientError, TimeoutError) as exc:
            return Got(resp.status, resp.headers, bytes(received), exc)
        return Got(resp.status, resp.headers, bytes(received))


def fetch(
    url: str,
    *,
    method: str = "GET",
    headers: Sequence[tuple[str, str]] = (),
    timeout: aiohttp.ClientTimeout | None = None,
    allow_redirects: bool = False,
) -> Got:
    """Sync wrapper around :func:`_afetch` (its own event loop per call)."""
    return asyncio.run(
        _afetch(
            url,
            method=method,
            headers=headers,
            timeout=timeout,
            allow_redirects=allow_redirects,
        )
    )


def urlopen(
    url: str, *, method: str = "GET", headers: dict[str, str] | None = None
) -> tuple[int, Message, bytes]:
    """urllib request that returns error statuses instead of raising."""
    req = urllib.request.Request(url, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as err:
        with err:
            return err.code, err.headers, err.read()


# --------------------------------------------------------------------------------------------
# Pass-through
# --------------------------------------------------------------------------------------------


def test_blob_passes_through_byte_for_byte(proxy: FaultProxy, seeded: Seeded) -> None:
    code, headers, body = urlopen(proxy.url + seeded.blob_path())
    assert code == 200
    assert body == BLOB
    assert headers["Docker-Content-Digest"] == seeded.blob_digest
    assert int(headers["Content-Length"]) == len(BLOB)

    proxy.wait_idle()
    (rec,) = proxy.requests
    assert (rec.method, rec.path, rec.status, rec.bytes_sent) == (
        "GET",
        seeded.blob_path(),
        200,
        len(BLOB),
    )
    assert rec.done and not rec.aborted and not rec.range_requested
    assert proxy.bytes_served(r"/blobs/") == len(BLOB)
    assert proxy.bytes_served(r"/manifests/") == 0


def test_head_passes_through_without_body(proxy: FaultProxy, seeded: Seeded) -> None:
    code, headers, body = urlopen(proxy.url + seeded.blob_path(), method="HEAD")
    assert (code, body) == (200, b"")
    assert int(headers["Content-Length"]) == len(BLOB)
    assert proxy.requests[0].bytes_sent == 0


def test_range_passes_through(proxy: FaultProxy, seeded: Seeded) -> None:
    got = fetch(proxy.url + seeded.blob_path(), headers=[("Range", "bytes=1000-")])
    assert got.status == 206
    assert got.body == BLOB[1000:]
    assert got.headers["Content-Range"] == f"bytes 1000-{len(BLOB) - 1}/{len(BLOB)}"
    rec = proxy.requests[0]
    assert rec.range_requested and rec.header("Range") == "bytes=1000-"
    assert rec.bytes_sent == len(BLOB) - 1000


def test_range_past_the_end_mirrors_the_registry_416_quirk(
    proxy: FaultProxy, seeded: Seeded
) -> None:
    """2.8 declares the full size as Content-Length on a 416 and sends 33 bytes: kept as is."""
    outcomes = []
    for base in (seeded.registry, proxy.url):
        conn = http.client.HTTPConnection(base.removeprefix("http://"), timeout=10)
        try:
            conn.request("GET", seeded.blob_path(), headers={"Range": f"bytes={len(BLOB)}-"})
            resp = conn.getresponse()
            with pytest.raises(http.client.IncompleteRead) as broken:
                resp.read()
            outcomes.append(
                (
                    resp.status,
                    resp.getheader("Content-Range"),
                    resp.getheader("Content-Length"),
                    len(broken.value.partial),
                )
            )
        finally:
            conn.close()
    assert outcomes[0] == outcomes[1] == (416, f"bytes */{len(BLOB)}", str(len(BLOB)), 33)


def test_upload_location_is_rewritten_to_the_proxy(proxy: FaultProxy, seeded: Seeded) -> None:
    data = b"pushed through the proxy"
    location = _push_blob(proxy.url, "rig/upload", data)
    assert location.startswith(proxy.url + "/v2/rig/upload/blobs/uploads/")
    assert [r.method for r in proxy.requests] == ["POST", "PUT"]
    assert proxy.requests[1].status == 201
    code, _, body = urlopen(f"{seeded.registry}/v2/rig/upload/blobs/{_digest(data)}")
    assert (code, body) == (200, data)


def test_headers_forwarded_as_a_multidict(recorder: HeaderRecorder) -> None:
    with FaultProxy(recorder.url) as proxy:
        got = fetch(
            proxy.url + "/v2/x/manifests/v1?n=1",
            headers=[
                ("Accept", OCI_MANIFEST),
                ("Accept", DOCKER_MANIFEST),
                ("X-Custom", "kept"),
                ("Authorization", "Bearer secret"),
                ("Proxy-Authorization", "Basic hop"),
                ("Connection", "X-Hop"),
                ("X-Hop", "named in Connection"),
            ],
        )
    assert got.status == 200
    (seen,) = recorder.requests
    assert (seen.path, seen.query) == ("/v2/x/manifests/v1", "n=1")
    assert seen.header_values("Accept") == [OCI_MANIFEST, DOCKER_MANIFEST]
    assert seen.header("X-Custom") == "kept"
    assert seen.header("Authorization") == "Bearer secret"
    assert seen.header("Host") == recorder.host
    for hop in ("Proxy-Authorization", "X-Hop", "Connection"):
        assert seen.header(hop) is None, hop
    assert seen.header("User-Agent") is not None  # the client's own, not invented


@pytest.mark.parametrize(
    "order", [(OCI_MANIFEST, DOCKER_MANIFEST), (DOCKER_MANIFEST, OCI_MANIFEST)]
)
def test_repeated_accept_lines_select_the_oci_manifest(
    proxy: FaultProxy, seeded: Seeded, order: tuple[str, str]
) -> None:
    url = proxy.url + seeded.manifest_path
    # Control: registry 2.8 refuses an OCI manifest to a Docker-only client.
    assert fetch(url, headers=[("Accept", DOCKER_MANIFEST)]).status == 404
    got = fetch(url, headers=[("Accept", order[0]), ("Accept", order[1])])
    assert got.status == 200, "a repeated Accept line was lost on the way"
    assert got.headers["Content-Type"] == OCI_MANIFEST
    assert got.body == seeded.manifest
    assert got.headers["Docker-Content-Digest"] == seeded.manifest_digest


def test_upstream_down_gives_502() -> None:
    with FaultProxy(f"127.0.0.1:{_free_port()}") as proxy:
        code, _, body = urlopen(proxy.url + "/v2/")
    assert code == 502
    assert b"upstream error" in body


# --------------------------------------------------------------------------------------------
# Status, times, methods
# --------------------------------------------------------------------------------------------


def test_status_with_retry_after_seconds_then_pass_through(
    proxy: FaultProxy, seeded: Seeded
) -> None:
    rule = proxy.add(status(503, retry_after=2), path=r"/blobs/sha256:", times=2)
    url = proxy.url + seeded.blob_path()
    first, second, third = (urlopen(url) for _ in range(3))
    assert first[0] == second[0] == 503
    assert first[1]["Retry-After"] == "2"
    assert third[0] == 200 and third[2] == BLOB
    assert rule.hits == 2 and rule.exhausted
    assert [r.status for r in proxy.requests] == [503, 503, 200]
    assert proxy.requests[0].bytes_sent == 0


def test_status_with_retry_after_http_date_and_body(proxy: FaultProxy, seeded: Seeded) -> None:
    when = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    body = b'{"errors":[{"code":"TOOMANYREQUESTS"}]}'
    proxy.add(status(429, retry_after=when, body=body), path=r"/manifests/")
    code, headers, got = urlopen(proxy.url + seeded.manifest_path)
    assert code == 429
    assert parsedate_to_datetime(headers["Retry-After"]) == when
    assert headers["Content-Type"] == "application/json"
    assert got == body


def test_status_extra_headers(proxy: FaultProxy, seeded: Seeded) -> None:
    challenge = 'Bearer realm="http://x/token",error="invalid_token"'
    proxy.add(status(401, headers={"WWW-Authenticate": challenge}), path=r"/blobs/")
    code, headers, _ = urlopen(proxy.url + seeded.blob_path())
    assert code == 401
    assert headers["WWW-Authenticate"] == challenge


def test_rules_match_method_and_apply_in_order(proxy: FaultProxy, seeded: Seeded) -> None:
    url = proxy.url + seeded.blob_path()
    proxy.add(status(500), path=r"/blobs/", times=1)  # GET only by default
    proxy.add(status(502), path=r"/blobs/", method=None, times=1)
    proxy.add(status(504), path=r"/manifests/", method=None, times=None)
    assert urlopen(url, method="HEAD")[0] == 502  # the GET rule skips HEAD
    assert urlopen(url)[0] == 500
    assert urlopen(url)[0] == 200
    assert urlopen(url, method="HEAD")[0] == 200
    assert urlopen(proxy.url + seeded.manifest_path)[0] == 504
    assert urlopen(proxy.url + seeded.manifest_path)[0] == 504
    assert [r.hits for r in proxy.rules] == [1, 1, 2]

    proxy.reset()
    assert proxy.requests == [] and proxy.rules == []
    assert urlopen(proxy.url + seeded.manifest_path, headers={"Accept": OCI_MANIFEST})[0] == 200


def test_rules_change_while_requests_run(proxy: FaultProxy, seeded: Seeded) -> None:
    url = proxy.url + seeded.blob_path()
    errors: list[BaseException] = []

    def hammer() -> None:
        try:
            for _ in range(10):
                assert urlopen(url)[0] in (200, 503)
        except BaseException as exc:  # reported to the main thread
            errors.append(exc)

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for t in threads:
        t.start()
    rule = proxy.add(status(503), path=r"/blobs/", times=7)
    for t in threads:
        t.join()
    assert not errors
    assert rule.hits <= 7
    assert sum(r.status == 503 for r in proxy.requests) == rule.hits
    assert len(proxy.requests) == 40


# --------------------------------------------------------------------------------------------
# Body faults
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("rst", [True, False], ids=["rst", "fin"])
@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_drop_after_breaks_the_body(
    proxy: FaultProxy, seeded: Seeded, rst: bool, chunked: bool
) -> None:
    n = 100_000
    faults = (
        (drop_after(n, rst=rst), strip_content_length()) if chunked else (drop_after(n, rst=rst),)
    )
    proxy.add(*faults, path=seeded.blob_digest)
    got = fetch(proxy.url + seeded.blob_path())
    assert got.status == 200
    assert isinstance(got.error, aiohttp.ClientPayloadError), got.error
    assert got.body == BLOB[:n]
    assert ("Transfer-Encoding" in got.headers) is chunked
    rec = proxy.requests[0]
    assert rec.aborted and rec.bytes_sent == n
    # Next request passes through again.
    assert fetch(proxy.url + seeded.blob_path()).body == BLOB


def test_drop_after_zero_bytes_and_http_client(proxy: FaultProxy, seeded: Seeded) -> None:
    proxy.add(drop_after(0), path=r"/blobs/")
    conn = http.client.HTTPConnection(proxy.host, timeout=10)
    try:
        conn.request("GET", seeded.blob_path())
        resp = conn.getresponse()
        assert resp.status == 200
        with pytest.raises((http.client.IncompleteRead, ConnectionResetError)):
            resp.read()
    finally:
        conn.close()


def test_stall_pauses_mid_body(proxy: FaultProxy, seeded: Seeded) -> None:
    proxy.add(stall(0.6, after_bytes=50_000), path=r"/blobs/")
    started = time.monotonic()
    got = fetch(proxy.url + seeded.blob_path())
    assert time.monotonic() - started >= 0.6
    assert got.error is None and got.body == BLOB


def test_stall_trips_the_client_read_timeout(proxy: FaultProxy, seeded: Seeded) -> None:
    proxy.add(stall(30, after_bytes=1000), path=r"/blobs/")
    started = time.monotonic()
    got = fetch(proxy.url + seeded.blob_path(), timeout=aiohttp.ClientTimeout(sock_read=0.3))
    assert time.monotonic() - started < 5
    assert isinstance(got.error, TimeoutError), got.error
    assert got.body == BLOB[:1000]
    proxy.wait_idle()  # the handler notices the client left and stops stalling
    assert proxy.requests[0].aborted and proxy.requests[0].done


def test_ignore_range_answers_200_with_everything(proxy: FaultProxy, seeded: Seeded) -> None:
    proxy.add(ignore_range(), path=r"/blobs/")
    got = fetch(
        proxy.url + seeded.blob_path(), headers=[("Range", "bytes=1000-"), ("If-Range", '"x"')]
    )
    assert got.status == 200
    assert got.body == BLOB
    assert "Content-Range" not in got.headers
    assert proxy.requests[0].range_requested


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        (wrong_content_range(), "bytes 0-{short}/{size}"),
        (wrong_content_range(kind="total"), "bytes 1000-{last}/{size_plus}"),
        (wrong_content_range("bytes 5-6/7"), "bytes 5-6/7"),
    ],
)
def test_wrong_content_range(
    proxy: FaultProxy, seeded: Seeded, fault: WrongContentRange, expected: str
) -> None:
    proxy.add(fault, path=r"/blobs/")
    got = fetch(proxy.url + seeded.blob_path(), headers=[("Range", "bytes=1000-")])
    assert got.status == 206
    size = len(BLOB)
    assert got.headers["Content-Range"] == expected.format(
        short=size - 1000 - 1, last=size - 1, size=size, size_plus=size + 1
    )
    assert got.body == BLOB[1000:]


def test_wrong_content_range_leaves_200_alone(proxy: FaultProxy, seeded: Seeded) -> None:
    proxy.add(wrong_content_range(), path=r"/blobs/")
    got = fetch(proxy.url + seeded.blob_path())
    assert (got.status, got.body) == (200, BLOB)
    assert "Content-Range" not in got.headers


@pytest.mark.parametrize("offset", [0, 65_535, 65_536, len(BLOB) - 1])
def test_flip_byte_changes_exactly_one_byte(proxy: FaultProxy, seeded: Seeded, offset: int) -> None:
    proxy.add(flip_byte(offset), path=r"/blobs/")
    got = fetch(proxy.url + seeded.blob_path())
    assert got.error is None and len(got.body) == len(BLOB)
    assert [i for i in range(len(BLOB)) if got.body[i] != BLOB[i]] == [offset]
    assert got.body[offset] == BLOB[offset] ^ 0xFF


def test_flip_byte_offset_is_of_the_body_as_served(proxy: FaultProxy, seeded: Seeded) -> None:
    proxy.add(flip_byte(10), path=r"/blobs/")
    got = fetch(proxy.url + seeded.blob_path(), headers=[("Range", "bytes=1000-")])
    diff = [i for i, (a, b) in enumerate(zip(got.body, BLOB[1000:], strict=True)) if a != b]
    assert diff == [10]


def test_lie_content_length_longer_breaks_the_body(proxy: FaultProxy, seeded: Seeded) -> None:
    proxy.add(lie_content_length(+10), path=r"/blobs/")
    got = fetch(proxy.url + seeded.blob_path())
    assert int(got.headers["Content-Length"]) == len(BLOB) + 10
    assert isinstance(got.error, aiohttp.ClientPayloadError)
    assert got.body == BLOB


def test_lie_content_length_shorter_cuts_the_body(proxy: FaultProxy, seeded: Seeded) -> None:
    proxy.add(lie_content_length(-10), path=r"/blobs/", method=None, times=2)
    got = fetch(proxy.url + seeded.blob_path())
    assert int(got.headers["Content-Length"]) == len(BLOB) - 10
    assert got.error is None and got.body == BLOB[:-10]
    code, headers, _ = urlopen(proxy.url + seeded.blob_path(), method="HEAD")
    assert (code, int(headers["Content-Length"])) == (200, len(BLOB) - 10)


def test_lie_content_length_on_a_chunked_upstream(recorder: HeaderRecorder) -> None:
    recorder.respond(b"0123456789")
    with FaultProxy(recorder.url) as proxy:
        proxy.add(lie_content_length(-3), path="/")
        got = fetch(proxy.url + "/x")
    assert (got.headers["Content-Length"], got.body) == ("7", b"0123456")


def test_strip_content_length_serves_chunked(proxy: FaultProxy, seeded: Seeded) -> None:
    proxy.add(strip_content_length(), path=r"/blobs/")
    got = fetch(proxy.url + seeded.blob_path())
    assert "Content-Length" not in got.headers
    assert got.headers["Transfer-Encoding"] == "chunked"
    assert got.body == BLOB


def test_swap_body_with_another_blob(proxy: FaultProxy, seeded: Seeded) -> None:
    proxy.add(swap_body(seeded.blob_path(seeded.config_digest)), path=seeded.blob_digest)
    got = fetch(proxy.url + seeded.blob_path())
    assert got.status == 200
    assert got.body == CONFIG
    assert int(got.headers["Content-Length"]) == len(CONFIG)
    assert got.headers["Docker-Content-Digest"] == seeded.blob_digest  # still the original's


def test_swap_body_with_bytes(proxy: FaultProxy, seeded: Seeded) -> None:
    proxy.add(swap_body(b"x" * len(BLOB)), path=r"/blobs/")
    got = fetch(proxy.url + seeded.blob_path())
    assert (got.status, got.body) == (200, b"x" * len(BLOB))


def test_throttle_slows_the_body(proxy: FaultProxy, seeded: Seeded) -> None:
    proxy.add(throttle(1_000_000), path=r"/blobs/")
    started = time.monotonic()
    got = fetch(proxy.url + seeded.blob_path())
    elapsed = time.monotonic() - started
    assert got.body == BLOB
    assert 0.28 <= elapsed < 3


# --------------------------------------------------------------------------------------------
# Synthetic answers: redirect, replace_body
# --------------------------------------------------------------------------------------------


def test_redirect_goes_to_the_recorder(
    proxy: FaultProxy, seeded: Seeded, recorder: HeaderRecorder
) -> None:
    recorder.respond(BLOB, path=seeded.blob_path())
    proxy.add(redirect(recorder.url + "{path}{query}"), path=r"/blobs/", times=2)
    url = proxy.url + seeded.blob_path() + "?x=1"

    got = fetch(url)
    assert got.status == 307
    assert got.headers["Location"] == recorder.url + seeded.blob_path() + "?x=1"
    assert recorder.requests == []

    # A careless client forwards Authorization across hosts; the recorder catches it.
    code, _, body = urlopen(url, headers={"Authorization": "Bearer leaked"})
    assert (code, body) == (200, BLOB)
    (seen,) = recorder.requests
    assert (seen.path, seen.query) == (seeded.blob_path(), "x=1")
    assert seen.header("Authorization") == "Bearer leaked"


def test_redirect_status_code(proxy: FaultProxy, seeded: Seeded) -> None:
    proxy.add(redirect("http://127.0.0.1:9/elsewhere", status=302), path=r"/blobs/")
    got = fetch(proxy.url + seeded.blob_path())
    assert (got.status, got.headers["Location"]) == (302, "http://127.0.0.1:9/elsewhere")


def test_replace_body_serves_a_document_the_registry_refuses(
    proxy: FaultProxy, seeded: Seeded
) -> None:
    ambiguous = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "manifests": []})
    huge = ambiguous.encode() + b" " * (5 * 1024 * 1024)
    proxy.add(
        replace_body(huge, OCI_MANIFEST, {"Docker-Content-Digest": _digest(huge)}),
        path=r"/manifests/",
        method=None,
        times=2,
    )
    got = fetch(proxy.url + seeded.manifest_path, headers=[("Accept", OCI_MANIFEST)])
    assert (got.status, got.body) == (200, huge)
    assert got.headers["Content-Type"] == OCI_MANIFEST
    assert got.headers["Docker-Content-Digest"] == _digest(huge)
    code, headers, body = urlopen(proxy.url + seeded.manifest_path, method="HEAD")
    assert (code, body, int(headers["Content-Length"])) == (200, b"", len(huge))


def test_faults_combine_on_one_request(proxy: FaultProxy, seeded: Seeded) -> None:
    proxy.add(replace_body(b"abcdef"), flip_byte(2), drop_after(4), path=r"/blobs/")
    got = fetch(proxy.url + seeded.blob_path())
    assert isinstance(got.error, aiohttp.ClientPayloadError)
    assert got.body == b"ab" + bytes([ord("c") ^ 0xFF]) + b"d"


# --------------------------------------------------------------------------------------------
# Async use, lifecycle, the recorder
# --------------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_usable_from_async_tests(proxy: FaultProxy, seeded: Seeded) -> None:
    proxy.add(status(503, retry_after=1), path=r"/blobs/")
    first = await _afetch(proxy.url + seeded.blob_path())
    second = await _afetch(proxy.url + seeded.blob_path())
    assert (first.status, first.headers["Retry-After"]) == (503, "1")
    assert (second.status, second.body) == (200, BLOB)


def _connect_refused(host: str) -> bool:
    hostname, port = host.rsplit(":", 1)
    try:
        with socket.create_connection((hostname, int(port)), timeout=2):
            return False
    except ConnectionRefusedError:
        return True


def test_stop_is_clean_even_with_a_request_in_flight(seeded: Seeded) -> None:
    before = set(threading.enumerate())
    proxy = FaultProxy(seeded.registry).start()
    host = proxy.host
    proxy.add(stall(60, after_bytes=10), path=r"/blobs/")
    outcome: list[object] = []

    def client() -> None:
        try:
            outcome.append(urlopen(proxy.url + seeded.blob_path()))
        except (OSError, http.client.HTTPException) as exc:
            outcome.append(exc)

    t = threading.Thread(target=client)
    t.start()
    deadline = time.monotonic() + 5
    while not proxy.requests or proxy.requests[0].bytes_sent < 10:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    started = time.monotonic()
    proxy.stop()
    assert time.monotonic() - started < 3
    t.join(10)
    assert not t.is_alive()
    assert isinstance(outcome[0], (OSError, http.client.HTTPException))
    assert not proxy.running
    assert set(threading.enumerate()) <= before
    assert _connect_refused(host)
    proxy.stop()  # idempotent


def test_tls_on_both_sides(tmp_path: Path) -> None:
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    with (
        HeaderRecorder(BLOB, ssl_context=server_ctx) as upstream,
        FaultProxy(upstream.url, ssl_context=server_ctx, upstream_ssl=client_ctx) as proxy,
    ):
        assert proxy.url.startswith("https://")
        proxy.add(drop_after(70_000), path="/")

        async def both() -> tuple[Got, Got]:
            connector = aiohttp.TCPConnector(ssl=client_ctx)
            async with aiohttp.ClientSession(connector=connector) as session:
                results = []
                for _ in range(2):
                    async with session.get(proxy.url + "/blob") as resp:
                        received = bytearray()
                        try:
                            async for chunk in resp.content.iter_chunked(8192):
                                received += chunk
                        except aiohttp.ClientPayloadError as exc:
                            results.append(Got(resp.status, resp.headers, bytes(received), exc))
                        else:
                            results.append(Got(resp.status, resp.headers, bytes(received)))
                return results[0], results[1]

        broken, whole = asyncio.run(both())
    assert isinstance(broken.error, aiohttp.ClientPayloadError)
    assert broken.body == BLOB[:70_000]
    assert (whole.error, whole.body) == (None, BLOB)


def test_recorder_records_and_honours_range(recorder: HeaderRecorder) -> None:
    recorder.respond(b"0123456789", path="/blob", headers=[("X-A", "1"), ("X-A", "2")])
    got = fetch(recorder.url + "/blob", headers=[("Range", "bytes=4-"), ("Accept", "a")])
    assert (got.status, got.body, got.headers["Content-Range"]) == (206, b"456789", "bytes 4-9/10")
    assert got.headers.getall("X-A") == ["1", "2"]
    assert fetch(recorder.url + "/blob", headers=[("Range", "bytes=10-")]).status == 416
    assert fetch(recorder.url + "/other").body == b"from the recorder"
    assert [r.status for r in recorder.requests] == [206, 416, 200]
    assert recorder.requests[0].header("Range") == "bytes=4-"
    recorder.reset()
    assert recorder.requests == []


def test_recorder_serves_tls(tmp_path: Path) -> None:
    ca = trustme.CA()
    pem = tmp_path / "server.pem"
    ca.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(str(pem))
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    with HeaderRecorder(b"secure", certfile=pem) as cdn:
        assert cdn.url.startswith("https://127.0.0.1:")
        req = urllib.request.Request(cdn.url + "/b", headers={"X-Probe": "1"})
        with urllib.request.urlopen(req, context=client_ctx, timeout=10) as resp:
            assert resp.read() == b"secure"
        assert cdn.requests[0].header("X-Probe") == "1"
        with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
            urllib.request.urlopen(cdn.url + "/b", timeout=10)  # default trust store
