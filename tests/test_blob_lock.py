"""The in-process side of the blob lock: pulls of one process wait in line and are
handed the lock as it is released, on any event loop, and a cancelled waiter never
leaves the lock taken. (Waits across processes: tests/test_lock_wait.py.)"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import anyio
import pytest

from dockerdrag import blob_lock
from dockerdrag.blob_lock import HeldLock, LockWait, take_blob_lock
from dockerdrag.osfiles import ProcessLock

NEVER_POLL = LockWait(poll_seconds=3600.0)  # a poll of the lock file would hang the test


@pytest.fixture
def refusals(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """The lock files found held by another holder (each would start a poll)."""
    found: list[Path] = []
    real_try_acquire = ProcessLock.try_acquire

    def try_acquire(lock: ProcessLock) -> bool:
        taken = real_try_acquire(lock)
        if not taken:
            found.append(Path("lock file"))
        return taken

    monkeypatch.setattr(ProcessLock, "try_acquire", try_acquire)
    return found


async def _take(lock_path: Path) -> HeldLock:
    return await take_blob_lock(lock_path, [], "0123456789ab", lock_path.parent, NEVER_POLL)


def _in_line(lock_path: Path) -> int:
    """How many tasks of this process wait for ``lock_path``."""
    line = blob_lock._local_locks._waiters.get(blob_lock._local_key(lock_path))
    return len(line) if line is not None else 0


async def _until_in_line(lock_path: Path, count: int) -> None:
    with anyio.fail_after(30):  # generous: only "it did not hang"
        while _in_line(lock_path) < count:
            await anyio.sleep(0.001)


@pytest.mark.anyio
async def test_waiters_are_handed_the_lock_in_order_as_it_is_released(
    tmp_path: Path, refusals: list[Path]
) -> None:
    lock_path = tmp_path / "blob.lock"
    order: list[str] = []

    async def wait_for_it(name: str) -> None:
        held = await _take(lock_path)
        order.append(f"{name} holds")
        held.release()

    holder = await _take(lock_path)
    async with anyio.create_task_group() as group:
        group.start_soon(wait_for_it, "a")
        await _until_in_line(lock_path, 1)
        group.start_soon(wait_for_it, "b")
        await _until_in_line(lock_path, 2)
        order.append("released")
        holder.release()
    assert order == ["released", "a holds", "b holds"]
    assert refusals == []
    assert _in_line(lock_path) == 0
    (await _take(lock_path)).release()  # free again


def test_a_waiter_on_another_event_loop_is_woken_at_release(
    tmp_path: Path, refusals: list[Path]
) -> None:
    """Two event loops in two threads (two ``asyncio.run`` calls of the API)."""
    lock_path = tmp_path / "blob.lock"
    held_first = threading.Event()
    order: list[str] = []

    async def second() -> None:
        held = await _take(lock_path)
        order.append("second holds")
        held.release()

    def second_thread() -> None:
        held_first.wait(30)
        asyncio.run(second())

    async def first() -> None:
        held = await _take(lock_path)
        held_first.set()
        await _until_in_line(lock_path, 1)
        order.append("first releases")
        held.release()

    thread = threading.Thread(target=second_thread)
    thread.start()
    try:
        asyncio.run(first())
    finally:
        thread.join(60)
    assert not thread.is_alive()
    assert order == ["first releases", "second holds"]
    assert refusals == []


@pytest.mark.anyio
@pytest.mark.parametrize("handed_over", [False, True])
async def test_a_cancelled_waiter_leaves_the_lock_to_the_next(
    tmp_path: Path, refusals: list[Path], handed_over: bool
) -> None:
    """Cancelled while in line, or just as the lock is handed to it: the next in line
    gets the lock all the same."""
    lock_path = tmp_path / "blob.lock"
    order: list[str] = []

    async def wait_for_it(name: str, scope: anyio.CancelScope) -> None:
        with scope:
            held = await _take(lock_path)
            try:
                order.append(f"{name} holds")
                await anyio.sleep(0)
            finally:
                held.release()

    holder = await _take(lock_path)
    cancelled = anyio.CancelScope()
    with anyio.fail_after(30):  # generous: only "it did not hang"
        async with anyio.create_task_group() as group:
            group.start_soon(wait_for_it, "cancelled", cancelled)
            await _until_in_line(lock_path, 1)
            group.start_soon(wait_for_it, "patient", anyio.CancelScope())
            await _until_in_line(lock_path, 2)
            if handed_over:
                holder.release()  # to the first in line, which is cancelled before it runs
                cancelled.cancel()
            else:
                cancelled.cancel()
                await _until_in_line_below(lock_path, 2)
                holder.release()
    assert order == ["patient holds"]  # the cancelled one stopped while it waited
    assert refusals == []
    assert _in_line(lock_path) == 0
    (await _take(lock_path)).release()  # nobody kept it


async def _until_in_line_below(lock_path: Path, count: int) -> None:
    with anyio.fail_after(30):  # generous: only "it did not hang"
        while _in_line(lock_path) >= count:
            await anyio.sleep(0.001)
