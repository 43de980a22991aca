"""exchange.guarded: the work runs in the caller's task; a disconnect cancels it as ClientGone."""

from __future__ import annotations

import asyncio

import pytest

from gateway.server.exchange import WATCH_AFTER, guarded
from gateway.server.limits import ClientGone


class Client:
    """An ASGI receive() whose disconnect arrives when the test says so."""

    def __init__(self) -> None:
        self.disconnected = asyncio.Event()

    async def receive(self) -> dict[str, object]:
        await self.disconnected.wait()
        return {"type": "http.disconnect"}


def _done() -> asyncio.Event:
    event = asyncio.Event()
    event.set()
    return event


def test_the_result_of_finished_work_is_returned() -> None:
    async def scenario() -> int:
        client = Client()

        async def work() -> int:
            await asyncio.sleep(0)
            return 7

        return await guarded(work(), client.receive, _done())

    assert asyncio.run(scenario()) == 7


def test_a_disconnect_cancels_the_work_and_leaves_the_task_usable() -> None:
    async def scenario() -> tuple[bool, int]:
        client = Client()
        cancelled = False

        async def work() -> None:
            nonlocal cancelled
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                cancelled = True
                raise

        asyncio.get_running_loop().call_later(0.01, client.disconnected.set)
        with pytest.raises(ClientGone):
            await guarded(work(), client.receive, _done())
        await asyncio.sleep(0)  # the task is not left with a pending cancellation
        task = asyncio.current_task()
        assert task is not None
        return cancelled, task.cancelling()

    assert asyncio.run(scenario()) == (True, 0)


def test_work_that_swallows_the_cancellation_still_ends_as_client_gone() -> None:
    async def scenario() -> int:
        client = Client()

        async def stubborn() -> str:
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                return "answer nobody will read"
            return "unreachable"

        asyncio.get_running_loop().call_later(0.01, client.disconnected.set)
        with pytest.raises(ClientGone):
            await guarded(stubborn(), client.receive, _done())
        task = asyncio.current_task()
        assert task is not None
        return task.cancelling()

    assert asyncio.run(scenario()) == 0


def test_a_real_cancellation_propagates_as_such() -> None:
    """Shutdown cancels the request's task: that is not a client disconnect."""

    async def scenario() -> None:
        client = Client()

        async def work() -> None:
            await asyncio.sleep(30)

        task = asyncio.ensure_future(guarded(work(), client.receive, _done()))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())


def test_the_watcher_waits_for_the_body_before_reading_receive() -> None:
    """Until the body is consumed receive() belongs to the body reader, not to the watcher."""

    async def scenario() -> int:
        reads = 0
        body_done = asyncio.Event()

        async def receive() -> dict[str, object]:
            nonlocal reads
            reads += 1
            await asyncio.sleep(30)
            return {"type": "http.disconnect"}

        async def work() -> None:
            await asyncio.sleep(WATCH_AFTER * 3)  # long enough for the watcher to start

        await guarded(work(), receive, body_done)
        return reads

    assert asyncio.run(scenario()) == 0


def test_work_that_ends_quickly_starts_no_watcher() -> None:
    """The common case pays for a timer, not for a task."""

    async def scenario() -> tuple[int, int]:
        client = Client()
        seen = []

        async def work() -> None:
            await asyncio.sleep(0)
            seen.append(len(asyncio.all_tasks()))

        async def slow_work() -> None:
            await asyncio.sleep(WATCH_AFTER * 2)
            seen.append(len(asyncio.all_tasks()))

        await guarded(work(), client.receive, _done())
        await guarded(slow_work(), client.receive, _done())
        return seen[0], seen[1]

    assert asyncio.run(scenario()) == (1, 2)  # alone; then with its watcher
