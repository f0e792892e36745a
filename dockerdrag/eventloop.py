"""The event loop the library needs: asyncio (aiohttp runs on nothing else).

Called from another loop, e.g. ``anyio.run(main, backend="trio")``, the API raises
:class:`~dockerdrag.errors.UnsupportedEventLoopError` before any I/O instead of
failing deep inside aiohttp.
"""

from __future__ import annotations

import asyncio

from .errors import UnsupportedEventLoopError


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


__all__ = ["require_asyncio"]
