"""gateway/server/limits.py's body pace on its own: the allowance arithmetic, and body_chunks fed
by an ASGI ``receive`` that delivers on a schedule (the server's side of the interface)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import pytest
from starlette.types import Message

from gateway.errors import BodyTimeout
from gateway.server.limits import BodyPace, body_chunks


def test_budget_is_the_idle_timeout_without_a_rate() -> None:
    pace = BodyPace(30, 0, 30)
    assert pace.budget(0, 0) == 30
    assert pace.budget(10, 10_000) == 30


def test_budget_follows_the_minimum_rate_allowance() -> None:
    pace = BodyPace(30, 100, 10)
    assert pace.budget(0, 0) == 10  # the grace, below the idle timeout
    assert pace.budget(500, 12) == pytest.approx(3)  # 10 + 500/100 - 12
    assert pace.budget(100_000, 0) == 30  # never above the idle timeout
    assert pace.budget(0, 11) < 0  # behind: the next wait ends at once


def _scheduled(pieces: list[bytes], gap: float) -> Callable[[], Awaitable[Message]]:
    """An ASGI receive delivering ``pieces`` ``gap`` seconds apart (the last ends the body)."""
    queue = list(pieces)

    async def receive() -> Message:
        if gap:
            await asyncio.sleep(gap)
        body = queue.pop(0)
        return {"type": "http.request", "body": body, "more_body": bool(queue)}

    return receive


async def _consume(pace: BodyPace, receive: Callable[[], Awaitable[Message]], pause: float) -> int:
    total = 0
    async for chunk in body_chunks(receive, 1 << 20, pace):
        total += len(chunk)
        await asyncio.sleep(pause)  # the gateway busy elsewhere: forwarding, back-pressure
    return total


def test_a_silent_sender_times_out_after_the_idle_timeout() -> None:
    async def never() -> Message:
        await asyncio.sleep(60)
        raise AssertionError("unreachable")

    started = time.monotonic()
    with pytest.raises(BodyTimeout):
        asyncio.run(_consume(BodyPace(0.1), never, 0))
    assert 0.09 <= time.monotonic() - started < 1


def test_time_the_gateway_spends_elsewhere_is_not_the_senders() -> None:
    """Six bytes, each ready at once, pulled 0.1 s apart: 0.6 s of wall clock against an
    allowance of 0.26 s (0.2 s grace + 6 bytes at 100 B/s), and gaps above the idle timeout.
    None of it was spent waiting on the sender, so none of it counts."""
    pace = BodyPace(0.05, 100, 0.2)
    assert asyncio.run(_consume(pace, _scheduled([b"x"] * 6, 0), 0.1)) == 6


def test_a_trickle_below_the_minimum_rate_times_out() -> None:
    """One byte per 30 ms never trips the 50 ms idle timeout; at ~33 B/s against 100 B/s the
    0.2 s grace runs out after about 0.2 / (1 - 0.33) = 0.3 s."""
    started = time.monotonic()
    with pytest.raises(BodyTimeout):
        asyncio.run(_consume(BodyPace(0.05, 100, 0.2), _scheduled([b"x"] * 100, 0.03), 0))
    assert 0.25 <= time.monotonic() - started < 1


def test_a_flowing_sender_is_never_cut() -> None:
    """Twenty pieces 30 ms apart: longer than the idle timeout and the grace in all."""
    pace = BodyPace(0.05, 100, 0.2)
    assert asyncio.run(_consume(pace, _scheduled([b"y" * 10] * 20, 0.03), 0)) == 200
