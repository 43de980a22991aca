"""The request body deadline against a real gateway process and the upstream double, over sockets.

The gateway runs with a 0.3 s idle timeout and a 50 bytes/s minimum rate after a 1 s grace.
A sender that stalls is answered 408 within the deadline: in the clear before anything was
decrypted (plain, Azure, chunked before its first chunk opens), encapsulated once a chunked
request's head was decrypted (the upstream request is cut off), and by a truncated stream once
the response is streaming. Senders that keep flowing, however slowly, are served. After every
case the next request is served, the in-flight gauge is back to 0, the timeout is counted and
logged once with its request id.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import aiohttp
import pytest

from gateway.errors import TruncatedStream
from gateway.protocol import bhttp, ohttp
from gateway.protocol.chunked import ChunkedRequestEncapsulator
from gateway.protocol.keys import KeyConfig
from tests.server.conftest import run
from tests.support.gateway_process import GatewayProcess, module_gateway
from tests.support.ohttp_client import inner_request, key_configs, post_chunked, post_plain
from tests.support.upstream_double import UpstreamDouble

IDLE = 0.3
MIN_RATE = 50
GRACE = 1.0
# A deadline is met when the answer comes within it plus this much scheduling slack.
SLACK = 1.5
TIMEOUT_SERIES = 'ohttp_gateway_decapsulation_failures_total{reason="body_timeout"}'


@pytest.fixture(scope="module")
def paced(
    double: UpstreamDouble, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayProcess]:
    with module_gateway(
        double.url,
        tmp_path_factory,
        "paced",
        *("--body-idle-timeout", str(IDLE), "--body-min-rate", str(MIN_RATE)),
        *("--body-rate-grace", str(GRACE), "--upstream-read-timeout", "5"),
    ) as process:
        yield process


# --- the observations every case ends with ---------------------------------------------------


def _scrape(gateway: GatewayProcess) -> str:
    with urllib.request.urlopen(gateway.metrics_url, timeout=5) as response:  # noqa: S310 - loopback
        return str(response.read().decode())


def _value(scrape: str, series: str) -> float:
    found = re.search(rf"^{re.escape(series)} (\S+)$", scrape, re.M)
    return float(found.group(1)) if found else 0.0


def _timeout_logs(gateway: GatewayProcess) -> list[dict[str, object]]:
    lines = (json.loads(line) for line in gateway.logs().splitlines() if line.startswith("{"))
    return [entry for entry in lines if entry.get("reason") == "body_timeout"]


@dataclass
class Counts:
    """Timeouts counted in the metrics and logged, before a case."""

    failures: float
    outcomes: float
    logs: int

    @staticmethod
    def of(gateway: GatewayProcess, route: str, profile: str) -> Counts:
        scrape = _scrape(gateway)
        outcome = (
            f'ohttp_gateway_requests_total{{outcome="client_timeout",profile="{profile}",'
            f'route="{route}"}}'
        )
        return Counts(
            _value(scrape, TIMEOUT_SERIES),
            _value(scrape, outcome),
            len(_timeout_logs(gateway)),
        )


async def _in_flight_settles(gateway: GatewayProcess) -> None:
    deadline = time.monotonic() + 3
    while _value(_scrape(gateway), "ohttp_gateway_requests_in_flight") != 0:
        assert time.monotonic() < deadline, "a request slot was not released"
        await asyncio.sleep(0.05)


async def _still_serves(gateway: GatewayProcess) -> None:
    async with aiohttp.ClientSession() as session:
        config = (await key_configs(session, gateway.url))[0]
        answer = await post_plain(
            session, gateway.url + "/gateway", config, config.suites[0], inner_request()
        )
    assert answer.inner is not None
    assert answer.inner.status == 200
    await _in_flight_settles(gateway)


def _after_a_timeout(gateway: GatewayProcess, before: Counts, route: str, profile: str) -> None:
    """The service serves on and released the slot; the timeout was counted and logged once."""
    run(_still_serves(gateway))
    after = Counts.of(gateway, route, profile)
    assert after.failures == before.failures + 1
    assert after.outcomes == before.outcomes + 1
    assert after.logs == before.logs + 1
    entry = _timeout_logs(gateway)[-1]
    assert re.fullmatch(r"[0-9a-f]{12}-[0-9a-f]+", str(entry["request_id"]))
    assert entry["outcome"] == "client_timeout"


def _after_flowing(gateway: GatewayProcess, before: Counts) -> None:
    run(_still_serves(gateway))
    assert len(_timeout_logs(gateway)) == before.logs


# --- raw HTTP/1.1 over a socket ---------------------------------------------------------------


@dataclass
class Clear:
    """A clear answer read off the socket."""

    status: int
    headers: dict[str, str]
    body: bytes
    seconds: float  # from the first byte sent to the status line
    closed: bool  # a refusal: the gateway closed the connection after answering


def _head(path: str, media: str, length: int | None) -> bytes:
    framing = "transfer-encoding: chunked" if length is None else f"content-length: {length}"
    return f"POST {path} HTTP/1.1\r\nhost: g\r\ncontent-type: {media}\r\n{framing}\r\n\r\n".encode()


def _http_chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


async def _read_answer(reader: asyncio.StreamReader, started: float) -> Clear:
    status_line = await asyncio.wait_for(reader.readline(), IDLE + GRACE + 5)
    seconds = time.monotonic() - started
    headers: dict[str, str] = {}
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    status = int(status_line.split()[1])
    # A refusal must close the connection (waited for); a success keeps it (not waited for).
    closed = status >= 400 and await asyncio.wait_for(reader.read(1), 3) == b""
    return Clear(status, headers, body, seconds, closed)


async def _exchange(
    port: int, head: bytes, pieces: list[bytes], gap: float, *, then_stall: bool = True
) -> Clear:
    """Send ``head``, then ``pieces`` ``gap`` seconds apart (still sending while the answer is
    awaited), then nothing: the connection stays open."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.monotonic()

    async def sender() -> None:
        writer.write(head)
        for index, piece in enumerate(pieces):
            if index:
                await asyncio.sleep(gap)
            writer.write(piece)
            await writer.drain()

    sending = asyncio.ensure_future(sender())
    try:
        return await _read_answer(reader, started)
    finally:
        sending.cancel()
        writer.close()


def _sealed(config: KeyConfig, request: bhttp.Request) -> tuple[bytes, ohttp.ClientResponseContext]:
    return ohttp.encapsulate_request(config, config.suites[0], bhttp.encode_request(request))


def _config(gateway: GatewayProcess) -> KeyConfig:
    async def fetch() -> KeyConfig:
        async with aiohttp.ClientSession() as session:
            return (await key_configs(session, gateway.url))[0]

    return run(fetch())


def _assert_clear_408(answer: Clear) -> None:
    assert answer.status == 408
    assert answer.headers["content-type"] == "application/problem+json"
    assert json.loads(answer.body) == {"title": "Request body not received in time.", "status": 408}
    assert answer.headers["connection"] == "close"
    assert answer.closed
    assert IDLE * 0.8 <= answer.seconds <= IDLE + SLACK


# --- before anything was decrypted: 408 in the clear ------------------------------------------


@pytest.mark.parametrize(
    ("path", "media", "profile", "fraction"),
    [
        ("/gateway", "message/ohttp-req", "ohttp", 0.0),
        ("/gateway", "message/ohttp-req", "ohttp", 0.5),
        ("/score", "message/ohttp-chunked-req", "azure", 0.5),
    ],
    ids=["plain-no-body", "plain-half-body", "azure-half-body"],
)
def test_stalled_plain_body_is_408_in_the_clear(
    paced: GatewayProcess, path: str, media: str, profile: str, fraction: float
) -> None:
    sealed, _ = _sealed(_config(paced), inner_request(content=b"a" * 2000))
    route = path.strip("/")
    before = Counts.of(paced, route, profile)
    part = sealed[: int(len(sealed) * fraction)]
    answer = run(_exchange(paced.port, _head(path, media, len(sealed)), [part], 0))
    _assert_clear_408(answer)
    _after_a_timeout(paced, before, route, profile)


def test_chunked_stalled_before_its_first_chunk_opens_is_408_in_the_clear(
    paced: GatewayProcess,
) -> None:
    config = _config(paced)
    encapsulator = ChunkedRequestEncapsulator(config, config.suites[0])
    head = bhttp.RequestEncoder().head(
        b"POST", b"https", b"w", b"/v1/audio/transcriptions", ((b"a", b"b"),)
    )
    first = encapsulator.start() + encapsulator.encapsulate_chunk(head)
    before = Counts.of(paced, "gateway", "chunked")
    partial = _http_chunk(first[: len(first) - 5])  # the request header and most of a chunk
    outer = _head("/gateway", "message/ohttp-chunked-req", None)
    answer = run(_exchange(paced.port, outer, [partial], 0))
    _assert_clear_408(answer)
    _after_a_timeout(paced, before, "gateway", "chunked")


# --- after the head was decrypted: encapsulated 408, or a cut stream ---------------------------


async def _one_piece_then_stall() -> AsyncIterator[bytes]:
    yield b"first words"
    await asyncio.sleep(60)  # cancelled by aiohttp once the answer is complete
    yield b"never"


async def _aborted_upstream(double: UpstreamDouble, before: int) -> None:
    deadline = time.monotonic() + 3
    while double.stats.aborted != before + 1:
        assert time.monotonic() < deadline, "the upstream request was not cut off"
        await asyncio.sleep(0.02)


def test_chunked_stalled_after_its_head_decrypts_is_encapsulated_408(
    paced: GatewayProcess, double: UpstreamDouble
) -> None:
    before = Counts.of(paced, "gateway", "chunked")
    requests, aborted = double.stats.requests, double.stats.aborted

    async def body() -> tuple[float, object]:
        async with aiohttp.ClientSession() as session:
            config = (await key_configs(session, paced.url))[0]
            started = time.monotonic()
            answer = await asyncio.wait_for(
                post_chunked(
                    session,
                    paced.url + "/gateway",
                    config,
                    config.suites[0],
                    inner_request(content=b""),
                    _one_piece_then_stall(),
                ),
                IDLE + 5,
            )
            seconds = time.monotonic() - started
        await _aborted_upstream(double, aborted)
        return seconds, answer

    seconds, answer = run(body())
    assert seconds <= IDLE + SLACK
    assert answer.status == 200  # type: ignore[attr-defined]
    assert answer.headers["connection"] == "close"  # type: ignore[attr-defined]
    inner = answer.inner  # type: ignore[attr-defined]
    assert inner is not None
    assert inner.status == 408
    assert json.loads(inner.content)["status"] == 408
    assert double.stats.requests == requests + 1  # it had reached the upstream, then was cut
    _after_a_timeout(paced, before, "gateway", "chunked")


def test_chunked_stalled_while_the_response_streams_is_cut_off(
    paced: GatewayProcess, double: UpstreamDouble
) -> None:
    """The upstream answers before the request body ends; the sender then stalls. The response
    already started, so the only honest end is a stream without its final chunk."""
    config = _config(paced)
    before = Counts.of(paced, "gateway", "chunked")
    aborted = double.stats.aborted
    encapsulator = ChunkedRequestEncapsulator(config, config.suites[0])
    decapsulator = encapsulator.response_decapsulator()
    encoder = bhttp.RequestEncoder()
    head = encoder.head(b"POST", b"https", b"w", b"/v1/audio/transcriptions?early=1", ())
    first = encapsulator.start() + encapsulator.encapsulate_chunk(head)
    first += encapsulator.encapsulate_chunk(encoder.body(b"first words"))

    async def body() -> tuple[bytes, float]:
        reader, writer = await asyncio.open_connection("127.0.0.1", paced.port)
        started = time.monotonic()
        writer.write(_head("/gateway", "message/ohttp-chunked-req", None) + _http_chunk(first))
        try:
            status_line = await asyncio.wait_for(reader.readline(), 5)
            assert status_line.split()[1] == b"200"
            while await reader.readline() != b"\r\n":
                pass
            received = b""
            while (size := int((await asyncio.wait_for(reader.readline(), 5)).strip(), 16)) > 0:
                received += await reader.readexactly(size)
                await reader.readexactly(2)
            seconds = time.monotonic() - started
        finally:
            writer.close()
        await _aborted_upstream(double, aborted)
        return received, seconds

    received, seconds = run(body())
    assert seconds <= IDLE + SLACK
    plaintext = b"".join(decapsulator.feed(received))
    decoder = bhttp.ResponseDecoder()
    events = decoder.feed(plaintext)
    assert any(isinstance(e, bhttp.ResponseHead) and e.status == 200 for e in events)
    assert b"".join(e.data for e in events if isinstance(e, bhttp.BodyChunk)) == b"early\n"
    with pytest.raises(TruncatedStream):
        decapsulator.finish()
    _after_a_timeout(paced, before, "gateway", "chunked")


# --- the minimum rate ------------------------------------------------------------------------


def test_trickle_below_the_minimum_rate_is_408(paced: GatewayProcess) -> None:
    """One byte every 0.2 s never trips the 0.3 s idle timeout; at 5 bytes/s it falls below the
    50 bytes/s minimum once the grace is spent: after about GRACE / (1 - 5/50) s of waiting."""
    sealed, _ = _sealed(_config(paced), inner_request())
    before = Counts.of(paced, "gateway", "ohttp")
    head = _head("/gateway", "message/ohttp-req", len(sealed))
    trickle = [sealed[i : i + 1] for i in range(len(sealed))]
    answer = run(_exchange(paced.port, head, trickle, 0.2))
    assert answer.status == 408
    assert answer.closed
    expected = GRACE / (1 - 5 / MIN_RATE)
    assert expected * 0.8 <= answer.seconds <= expected + SLACK
    _after_a_timeout(paced, before, "gateway", "ohttp")


# --- slow but flowing senders are served -----------------------------------------------------


def test_slow_flowing_plain_body_is_served(paced: GatewayProcess) -> None:
    """Ten pieces 0.1 s apart: 0.9 s in all, three times the idle timeout."""
    config = _config(paced)
    sealed, context = _sealed(config, inner_request(content=b"b" * 3000))
    before = Counts.of(paced, "gateway", "ohttp")
    step = len(sealed) // 10 + 1
    pieces = [sealed[i : i + step] for i in range(0, len(sealed), step)]
    answer = run(
        _exchange(paced.port, _head("/gateway", "message/ohttp-req", len(sealed)), pieces, 0.1)
    )
    assert answer.status == 200
    assert answer.seconds >= 0.8
    inner = bhttp.decode_response(context.decapsulate_response(answer.body))
    assert inner.status == 200
    assert json.loads(inner.content)["received"] == 3000
    _after_flowing(paced, before)


def test_slow_flowing_chunked_body_is_served(paced: GatewayProcess) -> None:
    """Live audio: 15 chunks 0.1 s apart, 1.5 s in all, past both the idle timeout and the grace,
    at about 2 KB/s (far above the minimum rate)."""
    before = Counts.of(paced, "gateway", "chunked")

    async def live() -> AsyncIterator[bytes]:
        for index in range(15):
            if index:
                await asyncio.sleep(0.1)
            yield b"%03d" % index + b"c" * 197

    async def body() -> tuple[float, object]:
        async with aiohttp.ClientSession() as session:
            config = (await key_configs(session, paced.url))[0]
            started = time.monotonic()
            request = inner_request(content=b"")
            answer = await post_chunked(
                session, paced.url + "/gateway", config, config.suites[0], request, live()
            )
            return time.monotonic() - started, answer

    seconds, answer = run(body())
    assert seconds >= 1.3
    inner = answer.inner  # type: ignore[attr-defined]
    assert inner is not None
    assert inner.status == 200
    assert json.loads(inner.content)["received"] == 15 * 200
    _after_flowing(paced, before)
