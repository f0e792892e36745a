"""The disk threads: work handed over without waiting, and never abandoned by a cancelled waiter."""

from __future__ import annotations

import threading

import anyio
import pytest

from dockerdrag.disk_threads import DiskThreads, outcome

pytestmark = pytest.mark.anyio


async def test_a_cancelled_waiter_still_waits_for_the_work_to_end() -> None:
    threads = DiskThreads(1)
    release = threading.Event()
    events: list[str] = []

    def work() -> str:
        release.wait(10)
        events.append("work ended")
        return "written"

    try:
        future = threads.submit(work)
        scope = anyio.CancelScope()

        async def wait_for_the_work() -> None:
            with scope:
                await outcome(future)
                events.append("waiter resumed")
                await anyio.sleep(0)  # the cancellation is delivered here
                events.append("not reached")

        async with anyio.create_task_group() as group:
            group.start_soon(wait_for_the_work)
            await anyio.sleep(0.05)
            scope.cancel()
            await anyio.sleep(0.05)
            events.append("cancelled")
            release.set()
        assert scope.cancelled_caught
        assert events == ["cancelled", "work ended", "waiter resumed"]
    finally:
        release.set()
        threads.close()


async def test_work_runs_in_a_thread_and_its_error_is_raised() -> None:
    threads = DiskThreads(2)
    try:
        assert await threads.run(threading.get_ident) != threading.get_ident()

        def fail() -> None:
            raise OSError("disk full")

        with pytest.raises(OSError, match="disk full"):
            await threads.run(fail)
    finally:
        threads.close()


async def test_the_threads_start_again_after_close() -> None:
    threads = DiskThreads(1)
    assert await threads.run(lambda: 1) == 1
    threads.close()
    assert await threads.run(lambda: 2) == 2
    threads.close()


async def test_finished_work_is_taken_without_waiting() -> None:
    threads = DiskThreads(1)
    try:
        future = threads.submit(lambda: "done")
        future.result(10)  # ended before anyone awaits it
        with anyio.CancelScope() as scope:
            scope.cancel()
            assert await outcome(future) == "done"  # no checkpoint: not cancelled here
    finally:
        threads.close()
