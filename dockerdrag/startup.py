"""How the ``dockerdrag`` command starts and ends: the work a one-shot process skips.

For a pull of a small image start-up is a large part of the whole (the figures are in
benchmarks/README.md, "Measurements behind the defaults"):

* aiohttp builds two TLS contexts when it is imported, and each loads the system
  CA bundle. dockerdrag never uses them: every request passes
  the context :meth:`~dockerdrag.tls_proxy.TLSSettings.for_host` built for its host
  (verified, with the system CAs and certs.d) or ``False`` for a registry named
  insecure. So this process imports aiohttp with CA loading skipped in the thread that
  imports it. Its two contexts then trust no CA at all: anything that reached them by
  mistake would fail verification, never pass it.
* Imports allocate some 100,000 objects that live until exit; the collector ran
  about 60 times over them and once more at exit. Collection is
  off during the imports, and what exists then is frozen (left out of later
  collections), once after the imports and once before exit.
* TLS connections receive 128 KiB at a time, not 256 KiB, each keeping a buffer that
  size (:func:`~dockerdrag.tls_buffers.limit_tls_reads`; asyncio has this only as a
  setting of the whole process).
* A command line that makes no request over verified TLS (the guess below) runs on
  uvloop's event loop where uvloop is installed (:func:`~dockerdrag.eventloop.uvloop_factory`):
  over a fast link the event loop, which handles every byte of every body, is what
  bounds a pull, and uvloop's takes less CPU than asyncio's. Every other command line
  runs on asyncio's loop: uvloop's TLS layer always receives 256 KiB at a time and
  hands on all it decrypted in one piece, so a TLS pull on it would hold more memory
  per connection than :mod:`~dockerdrag.tls_buffers` keeps asyncio's to.
* glibc's malloc keeps at most two arenas
  (:func:`~dockerdrag.osfiles.limit_malloc_arenas`): fewer pools of freed buffers.
* The verifying TLS context a pull from an https registry needs before its first
  request loads the system CA bundle (after the imports, on the way to that request). It is
  built in a background thread from the start, while every import runs, aiohttp's
  included (:mod:`dockerdrag.ca_preload`; OpenSSL parses the bundle without the GIL),
  unless the command line names no network command or an insecure registry (one
  served over plain HTTP needs no context): a guess about what the command will do,
  which costs a little time when wrong and never changes what is verified.
* Once the command has succeeded, the process ends at once
  (:func:`run_command_and_exit`): its output flushed, it skips the interpreter's teardown
  (every module and object freed one by one, which a process about to end need not do).
  By then the command has closed its files and its threads are done. A command that
  failed or was interrupted ends through the interpreter's exit, as it always did: a
  thread may still be ending the work it stopped (a cancelled writer removing its
  temporary file).

Only the command does this: importing the library changes nothing.
"""

from __future__ import annotations

import gc
import os
import ssl
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import NoReturn

from .ca_preload import start_loading
from .eventloop import uvloop_factory
from .osfiles import limit_malloc_arenas
from .tls_buffers import limit_tls_reads

# Commands and options that make no https request, and the options that name a registry
# reached over plain HTTP: their command lines do not preload the CAs.
_NO_REGISTRY_COMMANDS = frozenset({"verify", "cache", "help"})
_NO_REQUEST_OPTIONS = frozenset({"-h", "--help", "--version"})
_INSECURE_OPTION = "--insecure"
_INSECURE_VARIABLE = "DOCKERDRAG_INSECURE_REGISTRIES"


def run_command() -> int:
    """Import the command line with the start-up above, run it, return its exit code."""
    limit_malloc_arenas()  # before any thread exists
    gc.disable()
    try:
        may_verify_tls = _may_verify_tls(sys.argv[1:], os.environ)
        if may_verify_tls:
            start_loading()
        _import_aiohttp_without_ca_loading()
        limit_tls_reads()
        loop_factory = None if may_verify_tls else uvloop_factory()
        from .cli import main
    finally:
        gc.freeze()
        gc.enable()
    try:
        return main(loop_factory=loop_factory)
    finally:
        gc.freeze()  # what is left dies with the process; no collection at exit


def run_command_and_exit() -> NoReturn:
    """Run the command (:func:`run_command`) and end the process with its exit code:
    without the interpreter's teardown once it succeeded; through the interpreter's exit
    when it failed, or when its output cannot be flushed (a closed pipe, which the
    interpreter reports as always)."""
    code = run_command()
    if code != 0:
        sys.exit(code)
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        sys.exit(code)
    os._exit(code)


def _may_verify_tls(arguments: Sequence[str], environ: Mapping[str, str]) -> bool:
    """Whether the command line ``arguments`` may make a request over verified TLS soon:
    a command that talks to registries, none of them named insecure."""
    if arguments and arguments[0] in _NO_REGISTRY_COMMANDS:
        return False
    if environ.get(_INSECURE_VARIABLE):
        return False
    return not any(
        word in _NO_REQUEST_OPTIONS
        or word == _INSECURE_OPTION
        or word.startswith(_INSECURE_OPTION + "=")
        for word in arguments
    )


def _skipped_in_this_thread(
    load: Callable[[ssl.SSLContext], None],
) -> Callable[[ssl.SSLContext], None]:
    """``load`` (``SSLContext.set_default_verify_paths``) made to do nothing when the
    thread that called this calls it; every other thread loads as before."""
    skipping = threading.get_ident()

    def set_default_verify_paths(context: ssl.SSLContext) -> None:
        if threading.get_ident() != skipping:
            load(context)

    return set_default_verify_paths


def _import_aiohttp_without_ca_loading() -> None:
    if "aiohttp" in sys.modules:
        return
    # ``create_default_context`` loads the system CAs through this method; the CA
    # preloading thread may be calling it meanwhile, and loads them.
    shadowed = "set_default_verify_paths" in vars(ssl.SSLContext)
    original = ssl.SSLContext.set_default_verify_paths
    ssl.SSLContext.set_default_verify_paths = _skipped_in_this_thread(original)  # type: ignore[method-assign,assignment]
    try:
        import aiohttp.connector  # noqa: F401 - imported here, for the set-up above
    finally:
        if shadowed:
            ssl.SSLContext.set_default_verify_paths = original  # type: ignore[method-assign]
        else:
            del ssl.SSLContext.set_default_verify_paths
