"""Calls awaited side by side with their results, or their first error, in the order given."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

import anyio
import pytest

from dockerdrag.ordered_calls import in_order
from dockerdrag.pull_resolve import ImageResolver, ResolveRequest

pytestmark = pytest.mark.anyio


class Calls:
    """Calls that each wait for their own event, and what happened to each of them."""

    def __init__(self, count: int) -> None:
        self.release = [anyio.Event() for _ in range(count)]
        self.started: list[int] = []
        self.finished: list[int] = []
        self.cancelled: list[int] = []
        self.running = 0
        self.most_running = 0

    def call(self, index: int, error: Exception | None = None) -> Callable[[], Awaitable[int]]:
        async def wait() -> int:
            self.started.append(index)
            self.running += 1
            self.most_running = max(self.most_running, self.running)
            try:
                await self.release[index].wait()
            except anyio.get_cancelled_exc_class():
                self.cancelled.append(index)
                raise
            finally:
                self.running -= 1
            self.finished.append(index)
            if error is not None:
                raise error
            return index * 10

        return wait


async def test_results_come_in_the_order_of_the_calls_whatever_order_they_end_in() -> None:
    calls = Calls(4)
    async with anyio.create_task_group() as group:
        group.start_soon(_release_in_turn, calls, [3, 1, 2, 0])
        results = await in_order([calls.call(i) for i in range(4)], limit=4)
    assert results == [0, 10, 20, 30]
    assert calls.finished == [3, 1, 2, 0]
    assert calls.most_running == 4  # side by side, not one after the other


async def test_no_more_than_the_limit_run_at_once_the_first_ones_first() -> None:
    calls = Calls(5)
    async with anyio.create_task_group() as group:
        group.start_soon(_release_in_turn, calls, [0, 1, 2, 3, 4])
        results = await in_order([calls.call(i) for i in range(5)], limit=2)
    assert results == [0, 10, 20, 30, 40]
    assert calls.most_running == 2
    assert calls.started == [0, 1, 2, 3, 4]


async def test_the_first_error_in_order_is_raised_though_a_later_one_came_first() -> None:
    calls = Calls(4)
    async with anyio.create_task_group() as group:
        # The call at 2 fails before the one at 1 does; 0 ends well after both.
        group.start_soon(_release_in_turn, calls, [2, 1, 0])
        with pytest.raises(LookupError, match="first"):
            await in_order(
                [
                    calls.call(0),
                    calls.call(1, LookupError("first")),
                    calls.call(2, KeyError("second")),
                    calls.call(3),
                ],
                limit=4,
            )
    assert calls.finished == [2, 1, 0]  # the call before the first error was awaited
    assert calls.cancelled == [3]  # the call after the failed one was stopped


async def test_no_call_after_a_failed_one_starts() -> None:
    calls = Calls(4)
    async with anyio.create_task_group() as group:
        group.start_soon(_release_in_turn, calls, [0])
        with pytest.raises(LookupError):
            await in_order(
                [calls.call(0, LookupError("only")), calls.call(1), calls.call(2), calls.call(3)],
                limit=1,
            )
    assert calls.started == [0]


async def test_no_calls_give_no_results() -> None:
    assert await in_order([], limit=3) == []


async def _release_in_turn(calls: Calls, order: list[int]) -> None:
    """Let the calls end in ``order``, each once it has started and every call before it
    in ``order`` has ended."""
    for index in order:
        with anyio.fail_after(5):  # a call that never starts (run one after the other)
            await _started(calls, index)
        calls.release[index].set()
        while index not in calls.finished:
            await anyio.sleep(0)


async def _started(calls: Calls, index: int) -> None:
    while index not in calls.started:
        await anyio.sleep(0)


class _Fetcher:
    concurrency = 16


class _SharingResolver(ImageResolver):
    """Records the concurrency each resolve is given, and how many run at once (now, most)."""

    given: list[int | None]
    running: list[int]

    async def resolve(  # type: ignore[override]
        self,
        ref: object,
        wanted: object,
        repo_tags: object,
        pin: object = None,
        *,
        concurrency: int | None = None,
    ) -> object:
        self.given.append(concurrency)
        self.running[0] += 1
        self.running[1] = max(self.running[1], self.running[0])
        await anyio.sleep(0.01)
        self.running[0] -= 1
        return ref


@pytest.mark.parametrize(("images", "at_once", "share"), [(1, 1, 16), (3, 3, 5), (20, 16, 1)])
async def test_a_bundle_shares_the_fetchers_concurrency_out(
    images: int, at_once: int, share: int
) -> None:
    """Images resolve side by side and each fetches its platforms side by side, but the two
    multiply to no more than the fetcher's concurrency (16)."""
    resolver = _SharingResolver(None, _Fetcher(), False)  # type: ignore[arg-type]
    resolver.given = []
    resolver.running = [0, 0]
    requests = [ResolveRequest(n, None, ()) for n in range(images)]  # type: ignore[arg-type]
    results: Sequence[object] = await resolver.resolve_all(requests)  # the refs, as recorded
    assert list(results) == list(range(images))
    assert resolver.given == [share] * images
    assert resolver.running[1] == at_once
    assert at_once * share <= _Fetcher.concurrency
