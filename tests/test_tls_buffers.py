"""A TLS connection holds little of a body nobody reads yet (dockerdrag.tls_buffers).

A pull bound by its own CPU leaves every connection's buffers full, so what each one
holds, times the connections, is peak memory. Against the real HTTPS test registry: an
unread 4 MiB blob body fills the connection until it stops reading its socket; the
ciphertext it then holds is at most one queue and one receive, not asyncio's 256 KiB
each, every time the body is read on a little; and the whole body arrives.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from asyncio import sslproto
from pathlib import Path

import anyio
import pytest

from dockerdrag.http_session import HttpSession
from dockerdrag.tls_buffers import TLS_QUEUE_BYTES, TLS_READ_BYTES, limit_tls_reads
from dockerdrag.tls_proxy import TLSSettings
from tests.support.pusher import push_blob
from tests.support.registry_server import RegistryServer

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.anyio


async def settled_read_buffer(transport: object) -> int:
    """The transport's queued ciphertext once it stopped growing (its socket paused).

    An empty queue does not count as settled: a registry slow to send leaves it empty
    while aiohttp still takes every byte.
    """
    get_size = transport.get_read_buffer_size  # type: ignore[attr-defined]
    seen, steady = -1, 0
    deadline = time.monotonic() + 10  # only a guard against a hang
    while steady < 10 and time.monotonic() < deadline:
        await anyio.sleep(0.02)
        size = get_size()
        steady = steady + 1 if size == seen and size > 0 else 0
        seen = size
    return int(seen)


async def test_an_unread_tls_body_holds_one_queue_and_one_receive_at_most(
    tls_registry: RegistryServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the process-wide setting the command makes, undone after this test
    monkeypatch.setattr(sslproto.SSLProtocol, "max_size", sslproto.SSLProtocol.max_size)
    limit_tls_reads()
    data = os.urandom(4 << 20)
    digest = push_blob(tls_registry, "test/tls-buffers", data)
    assert tls_registry.ca_pem_path is not None
    session = HttpSession(TLSSettings(frozenset(), tls_registry.ca_pem_path, ()))
    session.open(connect_timeout=10, read_timeout=30)
    try:
        url = f"{tls_registry.url}/v2/test/tls-buffers/blobs/{digest}"
        async with session.exchange("GET", url, {}, "a blob") as raw:
            assert raw.status == 200 and raw.connection is not None
            received = b""
            for _ in range(6):  # let it fill, then read some so that it resumes receiving
                queued = await settled_read_buffer(raw.connection.transport)
                # asyncio's defaults stop reading at 256 KiB queued, after up to 256 KiB
                # received at once
                assert queued <= TLS_QUEUE_BYTES + TLS_READ_BYTES
                received += await raw.content.readexactly(512 << 10)
            assert received + await raw.read() == data
    finally:
        await session.close()


PROBE = """\
import json, sys
from asyncio import sslproto
before = sslproto.SSLProtocol.max_size
sys.argv = ["dockerdrag", "--version"]
from dockerdrag.startup import run_command
try:
    code = run_command()
except SystemExit as exc:  # --version may end the command this way
    code = exc.code
print(json.dumps({"code": code, "before": before, "after": sslproto.SSLProtocol.max_size}))
"""


def test_the_command_receives_tls_in_small_steps_and_the_library_does_not_change_it() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    completed = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=60
    )
    assert completed.returncode == 0, completed.stderr
    report = json.loads(completed.stdout.splitlines()[-1])
    asyncio_default = report["before"]
    assert asyncio_default > TLS_READ_BYTES
    assert report == {"code": 0, "before": asyncio_default, "after": TLS_READ_BYTES}
    # this process imported the library (and used it above): the setting is asyncio's
    assert sslproto.SSLProtocol.max_size == asyncio_default
