"""The event loop the library needs: asyncio (aiohttp runs on nothing else).

Called from another loop, e.g. ``anyio.run(main, backend="trio")``, the API raises
:class:`~dockerdrag.errors.UnsupportedEventLoopError` before any I/O instead of
failing deep inside aiohttp. Any asyncio loop will do, uvloop's among them: the
command runs on it where it is installed (:func:`uvloop_factory`, chosen by
:mod:`dockerdrag.startup`).
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Callable

from .errors import UnsupportedEventLoopError

LoopFactory = Callable[[], asyncio.AbstractEventLoop]


def require_asyncio() -> None:
    """Raise UnsupportedEventLoopError unless an asyncio event loop runs this task."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        raise UnsupportedEventLoopError(
            "dockerdrag runs on asyncio (its HTTP client, aiohttp, needs it): call it from "
            "asyncio.run(...) or anyio.run(..., backend='asyncio'), not from trio or another "
            "event loop"
        ) from None


def uvloop_factory() -> LoopFactory | None:
    """What makes uvloop's event loop (asyncio's, written in C on libuv), or None where
    uvloop is not installed (it has no Windows build)."""
    try:
        uvloop = importlib.import_module("uvloop")
    except ImportError:
        return None
    factory: LoopFactory = uvloop.new_event_loop
    return factory


__all__ = ["LoopFactory", "require_asyncio", "uvloop_factory"]
