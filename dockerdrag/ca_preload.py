"""The system's trusted CAs loaded in a background thread while the command starts.

A verifying TLS context (:func:`~dockerdrag.conventions.trusting_context`) parses every
certificate of the system's CA bundle when it is built: over a hundred certificates,
tens of milliseconds. A pull from an https registry (Docker Hub, or a registry trusted
with ``--ca-cert``) builds one before its first request, after the command's imports,
which keep one core busy and leave the other idle. The command therefore starts building
that context during its imports (:func:`start_loading`, from :mod:`dockerdrag.startup`),
in a thread (OpenSSL reads the bundle without holding the GIL), and the first verifying
context the pull needs is that one (:func:`take_loaded`, in :mod:`dockerdrag.tls_proxy`);
every later one is built as before. It is what :func:`trusting_context` returns, in the
same process environment (``SSL_CERT_FILE``, ``SSL_CERT_DIR``), so it trusts the same
CAs. A library caller that never calls :func:`start_loading` builds its contexts when it
needs them.
"""

from __future__ import annotations

import ssl
import threading

from .conventions import trusting_context

__all__ = ["PreloadedContext", "start_loading", "take_loaded"]


class PreloadedContext:
    """One verifying context, built in a thread from :meth:`start` on, handed out once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._started = False
        self._thread: threading.Thread | None = None
        self._context: ssl.SSLContext | None = None

    def start(self) -> None:
        """Start building the context (once; later calls do nothing)."""
        with self._lock:
            if self._started:
                return
            self._started = True
            # Not a daemon: the interpreter waits for it before it shuts down (a command
            # that ends at once, such as a usage error), never tearing down while
            # OpenSSL is still reading the bundle in it.
            self._thread = threading.Thread(target=self._build, name="dockerdrag-ca-preload")
            self._thread.start()

    def take(self) -> ssl.SSLContext | None:
        """The context, once it is built (waiting for it); None if it was never started,
        was taken already, or failed (the caller then builds its own, and meets the same
        error)."""
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is None:
            return None
        thread.join()
        context, self._context = self._context, None
        return context

    def _build(self) -> None:
        try:
            self._context = trusting_context()
        except Exception:  # the caller builds its own, and reports the error
            self._context = None


_PRELOADED = PreloadedContext()


def start_loading() -> None:
    """Start building the process's first verifying context in a background thread."""
    _PRELOADED.start()


def take_loaded() -> ssl.SSLContext | None:
    """The context :func:`start_loading` built (once), or None."""
    return _PRELOADED.take()
