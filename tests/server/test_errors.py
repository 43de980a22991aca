"""Every error the gateway answers: its status, whether it is encrypted, and that the service
still serves the next request. Clear answers come before decapsulation, encrypted ones after."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import Iterator
from email.utils import formatdate, parsedate_to_datetime

import aiohttp
import pytest

from gateway.config import Settings
from gateway.errors import PROBLEM_DATE, PROBLEM_OHTTP_KEY
from gateway.protocol import bhttp, ohttp
from gateway.protocol.keys import KeyConfig
from gateway.server.keysource import KeySource
from tests.server.conftest import run
from tests.support.gateway_process import DEV_SEED, GatewayProcess, GatewayThread
from tests.support.ohttp_client import (
    Answer,
    header,
    inner_request,
    key_configs,
    post_chunked,
    post_plain,
)
from tests.support.upstream_double import UpstreamDouble, free_port


async def _still_serves(session: aiohttp.ClientSession, url: str) -> None:
    config = (await key_configs(session, url))[0]
    answer = await post_plain(session, url + "/gateway", config, config.suites[0], inner_request())
    assert answer.status == 200
    assert answer.inner is not None
    assert answer.inner.status == 200


def _exchange(url: str, send: object) -> Answer:
    """Run ``send(session, config)`` against ``url``, then prove the service still serves."""

    async def body() -> Answer:
        async with aiohttp.ClientSession() as session:
            config = (await key_configs(session, url))[0]
            answer: Answer = await send(session, config)  # type: ignore[operator]
            await _still_serves(session, url)
            return answer

    return run(body())


def _raw(url: str, body: bytes, media: str = "message/ohttp-req", **headers: str) -> object:
    async def send(session: aiohttp.ClientSession, config: KeyConfig) -> Answer:
        outer = {"content-type": media, **headers}
        async with session.post(url + "/gateway", data=body, headers=outer) as response:
            seen = {k.lower(): v for k, v in response.headers.items()}
            return Answer(response.status, seen, await response.read())

    return send


def _encrypted(url: str, request: bhttp.Request, chunked: bool = False) -> object:
    async def send(session: aiohttp.ClientSession, config: KeyConfig) -> Answer:
        post = post_chunked if chunked else post_plain
        return await post(session, url + "/gateway", config, config.suites[0], request)

    return send


def _problem(answer: Answer) -> dict[str, object]:
    assert answer.headers["content-type"] == "application/problem+json"
    document: dict[str, object] = json.loads(answer.body)
    return document


# --- before decapsulation: answered in the clear ---------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/gateway", 405),
        ("PUT", "/.well-known/ohttp-gateway", 405),
        ("GET", "/score", 405),
        ("POST", "/gateway/x", 404),
        ("POST", "/livez", 405),
        ("POST", "/nowhere", 404),
    ],
)
def test_other_methods_and_paths_are_refused_in_clear(
    gateway: GatewayProcess, method: str, path: str, status: int
) -> None:
    """The POST routes go straight to their endpoint (gateway/server/app.py); every other method
    and path still gets the router's answer, and the service still serves."""

    async def send(session: aiohttp.ClientSession, config: KeyConfig) -> Answer:
        outer = {"content-type": "message/ohttp-req"}
        async with session.request(method, gateway.url + path, headers=outer, data=b"x") as answer:
            return Answer(answer.status, dict(answer.headers), await answer.read())

    answer = _exchange(gateway.url, send)
    assert answer.status == status


def test_wrong_media_type_is_415_in_clear(gateway: GatewayProcess) -> None:
    answer = _exchange(gateway.url, _raw(gateway.url, b"hello", "application/json"))
    assert answer.status == 415
    assert not answer.encrypted


def test_malformed_header_is_400_in_clear(gateway: GatewayProcess) -> None:
    answer = _exchange(gateway.url, _raw(gateway.url, b"\x01\x00"))
    assert answer.status == 400
    assert not answer.encrypted
    assert "type" not in _problem(answer)


def test_unknown_key_is_ohttp_key_problem(gateway: GatewayProcess) -> None:
    async def send(session: aiohttp.ClientSession, config: KeyConfig) -> Answer:
        stranger = dataclasses.replace(config, key_id=77)
        return await post_plain(
            session, gateway.url + "/gateway", stranger, config.suites[0], inner_request()
        )

    answer = _exchange(gateway.url, send)
    assert answer.status == 400
    assert not answer.encrypted
    assert _problem(answer)["type"] == PROBLEM_OHTTP_KEY


def test_decryption_failure_is_400_in_clear(gateway: GatewayProcess) -> None:
    async def send(session: aiohttp.ClientSession, config: KeyConfig) -> Answer:
        sealed, _ = ohttp.encapsulate_request(
            config, config.suites[0], bhttp.encode_request(inner_request())
        )
        tampered = sealed[:-1] + bytes([sealed[-1] ^ 1])
        return await _raw(gateway.url, tampered)(session, config)  # type: ignore[operator, no-any-return]

    answer = _exchange(gateway.url, send)
    assert answer.status == 400
    assert not answer.encrypted


def test_declared_length_over_limit_is_413_before_reading(gateway: GatewayProcess) -> None:
    async def send(session: aiohttp.ClientSession, config: KeyConfig) -> Answer:
        # Declares 1 GiB, sends a few bytes: the answer must come without waiting for the rest.
        reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
        writer.write(
            b"POST /gateway HTTP/1.1\r\nhost: x\r\ncontent-type: message/ohttp-req\r\n"
            b"content-length: 1073741824\r\n\r\nabc"
        )
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), 5)
        writer.close()
        return Answer(int(status_line.split()[1]), {})

    answer = _exchange(gateway.url, send)
    assert answer.status == 413


def test_outer_headers_too_large_is_431(gateway: GatewayProcess) -> None:
    answer = _exchange(gateway.url, _raw(gateway.url, b"x", **{"x-filler": "a" * 70_000}))
    assert answer.status == 431
    assert not answer.encrypted


# --- after decapsulation: answered encapsulated ----------------------------------------------


def test_bad_bhttp_is_encapsulated_400(gateway: GatewayProcess) -> None:
    async def send(session: aiohttp.ClientSession, config: KeyConfig) -> Answer:
        sealed, context = ohttp.encapsulate_request(config, config.suites[0], b"\x00\xff\xff")
        answer = await _raw(gateway.url, sealed)(session, config)  # type: ignore[operator]
        answer.inner = bhttp.decode_response(context.decapsulate_response(answer.body))
        return answer  # type: ignore[no-any-return]

    answer = _exchange(gateway.url, send)
    assert answer.status == 200
    assert answer.inner is not None
    assert answer.inner.status == 400


@pytest.mark.parametrize("chunked", [False, True], ids=["plain", "chunked"])
@pytest.mark.parametrize(
    ("request_", "status"),
    [
        (inner_request(path=b"/admin"), 403),
        (inner_request(path=b"/v1/audio/transcriptions/../../admin"), 403),
        (inner_request(path=b"/openai/deployments/../audio/transcriptions"), 403),
        (inner_request(method=b"DELETE"), 405),
        (inner_request(headers=((b"expect", b"100-continue"),)), 400),
    ],
    ids=["path", "traversal", "dotdot-name", "method", "expect"],
)
def test_refusals_are_encapsulated(
    gateway: GatewayProcess,
    double: UpstreamDouble,
    request_: bhttp.Request,
    status: int,
    chunked: bool,
) -> None:
    before = double.stats.requests
    answer = _exchange(gateway.url, _encrypted(gateway.url, request_, chunked))
    assert answer.status == 200
    assert answer.inner is not None
    assert answer.inner.status == status
    assert double.stats.requests == before + 1  # only the follow-up request reached it


def test_date_outside_window_is_encapsulated_date_problem(gateway: GatewayProcess) -> None:
    stale = formatdate(time.time() - 3600, usegmt=True).encode()
    answer = _exchange(
        gateway.url, _encrypted(gateway.url, inner_request(headers=((b"date", stale),)))
    )
    assert answer.status == 200
    assert answer.inner is not None
    assert answer.inner.status == 400
    assert json.loads(answer.inner.content)["type"] == PROBLEM_DATE
    gateway_date = header(answer.inner, b"date")
    assert gateway_date is not None
    assert abs(parsedate_to_datetime(gateway_date.decode()).timestamp() - time.time()) < 5


def test_fresh_date_is_accepted(gateway: GatewayProcess) -> None:
    fresh = formatdate(time.time(), usegmt=True).encode()
    answer = _exchange(
        gateway.url, _encrypted(gateway.url, inner_request(headers=((b"date", fresh),)))
    )
    assert answer.inner is not None
    assert answer.inner.status == 200


def test_replay_is_refused_encapsulated(gateway: GatewayProcess, double: UpstreamDouble) -> None:
    async def send(session: aiohttp.ClientSession, config: KeyConfig) -> Answer:
        sealed, first_context = ohttp.encapsulate_request(
            config, config.suites[0], bhttp.encode_request(inner_request())
        )
        first = await _raw(gateway.url, sealed)(session, config)  # type: ignore[operator]
        assert bhttp.decode_response(first_context.decapsulate_response(first.body)).status == 200
        before = double.stats.requests
        replayed = await _raw(gateway.url, sealed)(session, config)  # type: ignore[operator]
        assert double.stats.requests == before  # the replay never reached the upstream
        return replayed  # type: ignore[no-any-return]

    answer = _exchange(gateway.url, send)
    # The replay is answered encapsulated, to a context only the original client holds.
    assert answer.status == 200
    assert answer.headers["content-type"] == "message/ohttp-res"


def test_upstream_timeout_is_encapsulated_504(gateway: GatewayProcess) -> None:
    request = inner_request(path=b"/v1/audio/transcriptions?hang=1")
    answer = _exchange(gateway.url, _encrypted(gateway.url, request))
    assert answer.status == 200
    assert answer.inner is not None
    assert answer.inner.status == 504


# --- gateways with special settings, in a thread ---------------------------------------------


def _settings(upstream: str, **changes: object) -> Settings:
    return dataclasses.replace(Settings(dev=True, upstream=upstream, metrics_port=0), **changes)


@pytest.fixture
def thread_gateway(
    request: pytest.FixtureRequest, double: UpstreamDouble
) -> Iterator[GatewayThread]:
    upstream, changes, keys = request.param
    url = double.url if upstream == "double" else f"http://127.0.0.1:{free_port()}"
    source = KeySource.for_dev(DEV_SEED.encode()) if keys else KeySource(dev=False)
    server = GatewayThread(_settings(url, **changes), source).start()
    yield server
    server.stop()


@pytest.mark.parametrize("thread_gateway", [("closed", {}, True)], indirect=True)
@pytest.mark.parametrize("chunked", [False, True], ids=["plain", "chunked"])
def test_upstream_unreachable_is_encapsulated_502(
    thread_gateway: GatewayThread, chunked: bool
) -> None:
    async def body() -> Answer:
        async with aiohttp.ClientSession() as session:
            config = (await key_configs(session, thread_gateway.url))[0]
            first = await _encrypted(thread_gateway.url, inner_request(), chunked)(session, config)  # type: ignore[operator]
            second = await _encrypted(thread_gateway.url, inner_request(), chunked)(session, config)  # type: ignore[operator]
            assert second.inner is not None
            assert second.inner.status == 502
            return first  # type: ignore[no-any-return]

    answer = run(body())
    assert answer.status == 200
    assert answer.inner is not None
    assert answer.inner.status == 502


@pytest.mark.parametrize(
    "thread_gateway", [("double", {"max_body_bytes": 65536}, True)], indirect=True
)
def test_body_limits(thread_gateway: GatewayThread) -> None:
    url = thread_gateway.url
    big = inner_request(content=b"z" * 100_000)
    plain = _exchange(url, _encrypted(url, big))
    assert plain.status == 413
    assert not plain.encrypted

    async def streamed(session: aiohttp.ClientSession, config: KeyConfig) -> Answer:
        async def pieces():  # type: ignore[no-untyped-def]
            for _ in range(10):
                yield b"z" * 10_000

        empty = inner_request(content=b"")
        return await post_chunked(
            session, url + "/gateway", config, config.suites[0], empty, pieces()
        )

    chunked = _exchange(url, streamed)
    # Past the limit after decapsulation began: answered encapsulated.
    assert chunked.status == 200
    assert chunked.inner is not None
    assert chunked.inner.status == 413


@pytest.mark.parametrize("thread_gateway", [("double", {}, False)], indirect=True)
def test_not_ready_without_keys(thread_gateway: GatewayThread) -> None:
    async def body() -> None:
        async with aiohttp.ClientSession() as session:
            url = thread_gateway.url
            async with session.get(url + "/.well-known/ohttp-gateway") as response:
                assert response.status == 503
            post = {"content-type": "message/ohttp-req"}
            async with session.post(url + "/gateway", data=b"x" * 50, headers=post) as response:
                assert response.status == 503
            async with session.get(url + "/readyz") as response:
                assert response.status == 503
                assert (await response.json())["keys_loaded"] is False
            async with session.get(url + "/livez") as response:
                assert response.status == 200

    run(body())


@pytest.mark.parametrize(
    "thread_gateway", [("double", {"max_concurrency": 1}, True)], indirect=True
)
def test_concurrency_limit_refuses_with_503(thread_gateway: GatewayThread) -> None:
    async def body() -> None:
        async with aiohttp.ClientSession() as session:
            url = thread_gateway.url
            config = (await key_configs(session, url))[0]
            slow = inner_request(path=b"/v1/audio/transcriptions?delay=1.5")
            first = asyncio.ensure_future(
                post_plain(session, url + "/gateway", config, config.suites[0], slow)
            )
            await asyncio.sleep(0.5)
            second = await post_plain(
                session, url + "/gateway", config, config.suites[0], inner_request()
            )
            assert second.status == 503
            assert not second.encrypted
            assert second.headers["retry-after"] == "1"
            done = await first
            assert done.inner is not None
            assert done.inner.status == 200
            await _still_serves(session, url)

    run(body())


@pytest.mark.parametrize("chunked", [False, True], ids=["plain", "chunked"])
def test_upstream_status_bhttp_cannot_carry_is_502(gateway: GatewayProcess, chunked: bool) -> None:
    request = inner_request(path=b"/v1/audio/transcriptions?status=600")
    answer = _exchange(gateway.url, _encrypted(gateway.url, request, chunked))
    assert answer.status == 200
    assert answer.inner is not None
    assert answer.inner.status == 502


@pytest.mark.parametrize(
    "thread_gateway",
    [("double", {"replay_capacity": 2, "replay_window": 1.0}, True)],
    indirect=True,
)
def test_a_full_replay_memory_refuses_encapsulated_503_then_recovers(
    thread_gateway: GatewayThread,
) -> None:
    # The setting's floor is 1024; a memory of two makes "full" reachable in three requests.
    async def body() -> list[Answer]:
        async with aiohttp.ClientSession() as session:
            url = thread_gateway.url
            config = (await key_configs(session, url))[0]

            async def send() -> Answer:
                return await post_plain(
                    session, url + "/gateway", config, config.suites[0], inner_request()
                )

            answers = [await send() for _ in range(3)]
            await asyncio.sleep(1.1)  # the window passes: room again
            return [*answers, await send()]

    answers = run(body())
    assert all(answer.status == 200 for answer in answers)
    statuses = [answer.inner.status if answer.inner else None for answer in answers]
    assert statuses == [200, 200, 503, 200]
    full = answers[2].inner
    assert full is not None
    assert json.loads(full.content)["status"] == 503
