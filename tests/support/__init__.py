"""Test-only helpers: real servers and deterministic test images.

Import them as ``tests.support.<module>``:

* ``registry_server``: a real ``docker-registry`` on 127.0.0.1 (anonymous, TLS,
  htpasswd, token);
* ``token_server``: the Bearer token realm (ES256 JWTs, request log, policies);
* ``pusher``: a urllib-only push/fetch client, independent of dockerdrag;
* ``images``: layer tars, configs, manifests, indexes, ready-made images;
* ``dockerd``: a private Docker 20.10 daemon for ``docker load`` / ``run`` / ``save``;
* ``many_layers``: an image of many tiny layers, pushed a few uploads at once.

This module holds the little process plumbing they share. A missing binary is an
error (never a skip): CI installs everything in ``.ci/run``.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import subprocess
import threading
from collections.abc import Callable

_PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)


def require_binary(path: str, package: str) -> str:
    """Return ``path`` (or the same name on PATH); raise if it is not installed."""
    if os.access(path, os.X_OK):
        return path
    found = shutil.which(os.path.basename(path))
    if found:
        return found
    raise RuntimeError(f"{path} is missing: install the Debian package {package!r} (see .ci/run)")


def parent_death_signal(sig: signal.Signals) -> Callable[[], None] | None:
    """A ``preexec_fn`` that sends ``sig`` to the child when the test process dies
    without cleaning up (e.g. killed by a timeout).

    Linux ties this to the *thread* that started the child, so it is only used from
    the main thread (a worker thread's exit would otherwise kill a live server).
    """
    if threading.current_thread() is not threading.main_thread():
        return None

    def preexec() -> None:
        _libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)

    return preexec


def stop_process(
    process: subprocess.Popen[bytes], *, timeout: float = 5.0, group: bool = False
) -> None:
    """Terminate ``process`` (its process group with ``group``), then kill it."""
    if process.poll() is None:
        _signal(process, signal.SIGTERM, group)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout)
    if group or process.poll() is None:
        # Also sweeps up children left in the group after the leader exited.
        _signal(process, signal.SIGKILL, group)
    process.wait()


def _signal(process: subprocess.Popen[bytes], sig: signal.Signals, group: bool) -> None:
    try:
        if group:
            os.killpg(process.pid, sig)
        elif process.poll() is None:
            process.send_signal(sig)
    except ProcessLookupError:
        pass
