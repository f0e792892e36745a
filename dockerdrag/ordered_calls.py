"""Calls awaited side by side, their results (or their first error) in the order given.

Resolving a bundle's images is a few requests in a row for each image (a token, the
manifest, the config), every one a round trip to the registry: one image after the other,
a bundle of twenty from a registry 100 ms away waits seconds before its first layer. So do
the manifests and configs of an index's platforms.
:func:`in_order` runs such calls several at once and hands back what running them one
after the other would have: the results in their order, or the error of the first call
that failed. Once a call fails, the calls after it are stopped (their outcome no longer
matters); the ones before it are awaited, since one of them may still fail first.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

import anyio

__all__ = ["in_order"]

T = TypeVar("T")


async def in_order(calls: Sequence[Callable[[], Awaitable[T]]], limit: int) -> list[T]:
    """Await every call of ``calls``, at most ``limit`` at once, the first ones first;
    return their results in the order of ``calls``. When calls raise, the exception of
    the first of them in that order is raised, once every call before it has ended."""
    results: dict[int, T] = {}
    errors: dict[int, Exception] = {}
    scopes: dict[int, anyio.CancelScope] = {}
    limiter = anyio.CapacityLimiter(max(1, limit))

    def first_error() -> int:
        return min(errors, default=len(calls))

    async def run(index: int) -> None:
        with anyio.CancelScope() as scope:
            scopes[index] = scope
            async with limiter:
                if index > first_error():
                    return
                try:
                    results[index] = await calls[index]()
                except Exception as exc:
                    errors[index] = exc
                    for later, later_scope in scopes.items():
                        if later > index:
                            later_scope.cancel()

    async with anyio.create_task_group() as group:
        for index in range(len(calls)):
            group.start_soon(run, index)
    if errors:
        raise errors[first_error()]
    return [results[index] for index in range(len(calls))]
