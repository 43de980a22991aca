"""Disconnects, graceful shutdown and health, against real gateway processes."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import aiohttp
import pytest

from tests.server.conftest import run
from tests.support.gateway_process import GatewayProcess
from tests.support.ohttp_client import inner_request, key_configs, post_chunked, post_plain
from tests.support.upstream_double import UpstreamDouble


async def _wait_for(predicate, timeout: float) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.05)
    return False


@pytest.mark.parametrize("chunked", [False, True], ids=["plain", "chunked"])
def test_client_disconnect_cancels_the_upstream_request(
    gateway: GatewayProcess, double: UpstreamDouble, chunked: bool
) -> None:
    async def body() -> None:
        async with aiohttp.ClientSession() as session:
            config = (await key_configs(session, gateway.url))[0]
            cancelled = double.stats.cancelled
            slow = inner_request(path=b"/v1/audio/transcriptions?delay=5")
            post = post_chunked if chunked else post_plain
            started = time.monotonic()
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(
                    post(session, gateway.url + "/gateway", config, config.suites[0], slow), 0.7
                )
        # The upstream saw the disconnect long before its 5 s of work were done.
        assert await _wait_for(lambda: double.stats.cancelled == cancelled + 1, 3.0)
        assert time.monotonic() - started < 4.0

    run(body())


def test_client_disconnect_during_sse_stream_stops_the_upstream(
    gateway: GatewayProcess, double: UpstreamDouble
) -> None:
    async def body() -> None:
        async with aiohttp.ClientSession() as session:
            config = (await key_configs(session, gateway.url))[0]
            stream = inner_request(path=b"/v1/audio/transcriptions?sse=50&interval=0.1")
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(
                    post_chunked(
                        session, gateway.url + "/gateway", config, config.suites[0], stream
                    ),
                    0.6,
                )
            # The gateway still serves; the half-streamed request left nothing behind.
            answer = await post_plain(
                session, gateway.url + "/gateway", config, config.suites[0], inner_request()
            )
            assert answer.inner is not None
            assert answer.inner.status == 200

    run(body())


def test_sigterm_drains_every_in_flight_request(double: UpstreamDouble, tmp_path: Path) -> None:
    process = GatewayProcess(double.url, tmp_path / "gateway.log", "--drain-timeout", "20").start()

    async def body() -> list[int]:
        async with aiohttp.ClientSession() as session:
            config = (await key_configs(session, process.url))[0]
            slow = inner_request(path=b"/v1/audio/transcriptions?delay=1.5")
            tasks = [
                asyncio.ensure_future(
                    (post_chunked if n % 2 else post_plain)(
                        session, process.url + "/gateway", config, config.suites[0], slow
                    )
                )
                for n in range(8)
            ]
            await asyncio.sleep(0.5)
            assert process.process is not None
            process.process.terminate()  # SIGTERM
            answers = await asyncio.gather(*tasks)
        return [a.inner.status if a.inner is not None else a.status for a in answers]

    statuses = run(body())
    assert statuses == [200] * 8
    assert process.terminate() == 0
    assert '"stopped"' in process.logs()


def test_health_endpoints_say_dev_mode_is_not_confidential(gateway: GatewayProcess) -> None:
    async def body() -> None:
        async with aiohttp.ClientSession() as session:
            async with session.get(gateway.url + "/livez") as response:
                assert response.status == 200
            async with session.get(gateway.url + "/readyz") as response:
                assert response.status == 200
                document = await response.json()
        assert document["ready"] is True
        assert document["confidential"] is False
        assert "NOT CONFIDENTIAL" in document["mode"]

    run(body())
    entries = [json.loads(line) for line in gateway.logs().splitlines() if line.startswith("{")]
    assert any(e.get("event") == "dev_mode" and e.get("confidential") is False for e in entries)


def test_readyz_fails_when_the_upstream_is_down(tmp_path: Path) -> None:
    from tests.support.upstream_double import free_port

    process = GatewayProcess(f"http://127.0.0.1:{free_port()}", tmp_path / "g.log").start()
    try:

        async def body() -> int:
            async with (
                aiohttp.ClientSession() as session,
                session.get(process.url + "/readyz") as response,
            ):
                return response.status

        assert run(body()) == 503
    finally:
        assert process.terminate() == 0
