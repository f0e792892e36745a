"""The connection limit of a pull: places handed out by rank, then by arrival.

Unit tests of :class:`ConnectionLimit` on its own (no HTTP); the pull that relies on it
is tested through the fault proxy in tests/test_link_speed.py.
"""

from __future__ import annotations

import anyio
import pytest

from dockerdrag.connection_limit import FIRST_REQUEST_RANK, ConnectionLimit, spare_rank

pytestmark = pytest.mark.anyio


async def served_order(limit: ConnectionLimit, ranks: list[int]) -> list[int]:
    """Queue one waiter per rank (in that order) behind a held place; the order served."""
    served: list[int] = []

    async def wait(number: int, rank: int) -> None:
        async with limit.place(rank):
            served.append(number)
            await anyio.sleep(0)

    await limit.acquire()
    async with anyio.create_task_group() as group:
        for number, rank in enumerate(ranks):
            group.start_soon(wait, number, rank)
        await anyio.wait_all_tasks_blocked()
        assert limit.waiting == len(ranks)
        limit.release()
    return served


async def test_the_lowest_rank_is_served_first_then_the_first_come() -> None:
    assert await served_order(ConnectionLimit(1), [3, 1, 2, 1, 0]) == [4, 1, 3, 2, 0]


async def test_raising_the_limit_lets_waiters_in_at_once() -> None:
    limit = ConnectionLimit(1)
    await limit.acquire()
    entered = 0

    async def enter() -> None:
        nonlocal entered
        await limit.acquire(5)
        entered += 1

    async with anyio.create_task_group() as group:
        for _ in range(3):
            group.start_soon(enter)
        await anyio.wait_all_tasks_blocked()
        assert (entered, limit.waiting) == (0, 3)
        limit.total_tokens = 3
        await anyio.wait_all_tasks_blocked()
        assert (entered, limit.waiting, limit.held) == (2, 1, 3)
        limit.release()
    assert (entered, limit.waiting, limit.held) == (3, 0, 3)


async def note_when_in(limit: ConnectionLimit, served: list[str], name: str, rank: int) -> None:
    async with limit.place(rank):
        served.append(name)


async def test_a_waiter_cancelled_while_waiting_leaves_the_queue() -> None:
    limit = ConnectionLimit(1)
    await limit.acquire()
    served: list[str] = []
    async with anyio.create_task_group() as group:
        async with anyio.create_task_group() as doomed:
            doomed.start_soon(note_when_in, limit, served, "doomed", 0)
            await anyio.wait_all_tasks_blocked()
            group.start_soon(note_when_in, limit, served, "next", 1)
            await anyio.wait_all_tasks_blocked()
            assert limit.waiting == 2
            doomed.cancel_scope.cancel()
        assert limit.waiting == 1
        limit.release()
    assert served == ["next"]
    assert (limit.held, limit.waiting) == (0, 0)


async def test_a_waiter_cancelled_as_it_is_handed_a_place_loses_no_place() -> None:
    """Whether the cancelled waiter still runs its block or passes the place on, the
    place is not lost: the next waiter gets in and nothing stays held."""
    limit = ConnectionLimit(1)
    await limit.acquire()
    served: list[str] = []
    async with anyio.create_task_group() as group, anyio.create_task_group() as doomed:
        doomed.start_soon(note_when_in, limit, served, "doomed", 0)
        await anyio.wait_all_tasks_blocked()
        group.start_soon(note_when_in, limit, served, "next", 1)
        await anyio.wait_all_tasks_blocked()
        limit.release()  # hands the place to "doomed", which has not run yet
        doomed.cancel_scope.cancel()
    assert served[-1] == "next"
    assert (limit.held, limit.waiting) == (0, 0)


async def test_spare_work_waits_behind_every_request() -> None:
    """A connection looking for a chunk to split (spare_rank) is served after every
    request of any blob, then by its blob's rank."""
    ranks = [spare_rank(1), 1000, spare_rank(0), FIRST_REQUEST_RANK]
    assert await served_order(ConnectionLimit(1), ranks) == [3, 1, 2, 0]


async def test_requests_that_come_together_for_free_places_are_served_by_rank() -> None:
    """The first request to find a place free waits a moment for others: those that came
    meanwhile get the free places by rank, not by who came first."""
    limit = ConnectionLimit(2, gather_seconds=2.0)
    served: list[str] = []
    async with anyio.create_task_group() as group:
        group.start_soon(note_when_in_and_hold, limit, served, "first come, last rank", 9)
        await anyio.wait_all_tasks_blocked()
        group.start_soon(note_when_in_and_hold, limit, served, "rank 3", 3)
        group.start_soon(note_when_in_and_hold, limit, served, "rank 1", 1)
        await anyio.wait_all_tasks_blocked()
        assert (served, limit.waiting) == ([], 3)
        with anyio.fail_after(30):
            while len(served) < 2:
                await anyio.sleep(0.05)
        assert served == ["rank 1", "rank 3"]
        group.cancel_scope.cancel()


async def test_a_first_request_takes_a_free_place_at_once() -> None:
    limit = ConnectionLimit(1, gather_seconds=60.0)
    with anyio.fail_after(30):
        await limit.acquire(FIRST_REQUEST_RANK)
    assert limit.held == 1


async def test_a_first_request_takes_a_free_place_before_other_tasks_run() -> None:
    """The blobs of a pull start together: a step that let the others run would have
    each of them make its files before the first request goes out."""
    limit = ConnectionLimit(2)
    steps: list[str] = []

    async def other() -> None:
        steps.append("another task")

    async with anyio.create_task_group() as group:
        group.start_soon(other)
        await limit.acquire(FIRST_REQUEST_RANK)
        steps.append("place taken")
    assert steps == ["place taken", "another task"]


async def note_when_in_and_hold(
    limit: ConnectionLimit, served: list[str], name: str, rank: int
) -> None:
    async with limit.place(rank):
        served.append(name)
        await anyio.sleep_forever()
