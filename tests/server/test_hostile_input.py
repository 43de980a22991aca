"""Hostile HTTP-level input against the running gateway: at least 200 malformed requests
(random bytes, truncations, wrong media types, huge declared lengths, slow senders, stalled
senders, mutated encapsulations) over raw sockets. The invariant: no answer is a 5xx, and the
process lives on, still serves, and every concurrency slot is released (stalled senders are cut
off by the body deadline, here 1 s, with a 408)."""

from __future__ import annotations

import asyncio
import random
import re
import time
import urllib.request
from collections.abc import Iterator

import aiohttp
import pytest

from gateway.protocol import bhttp, ohttp
from gateway.protocol.chunked import ChunkedRequestEncapsulator
from tests.server.conftest import run
from tests.support.fuzzing import cases
from tests.support.gateway_process import GatewayProcess, module_gateway
from tests.support.ohttp_client import inner_request, key_configs, post_plain
from tests.support.upstream_double import UpstreamDouble

SEED = 9458
CHUNKED_HEAD = (
    b"POST /gateway HTTP/1.1\r\nhost: g\r\ncontent-type: message/ohttp-chunked-req\r\n"
    b"transfer-encoding: chunked\r\n\r\n"
)


@pytest.fixture(scope="module")
def gateway(
    double: UpstreamDouble, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayProcess]:
    with module_gateway(
        double.url, tmp_path_factory, "hostile", "--body-idle-timeout", "1"
    ) as process:
        yield process


def _in_flight(gateway: GatewayProcess) -> float:
    with urllib.request.urlopen(gateway.metrics_url, timeout=5) as response:  # noqa: S310 - loopback
        scrape = response.read().decode()
    found = re.search(r"^ohttp_gateway_requests_in_flight (\S+)$", scrape, re.M)
    assert found is not None
    return float(found.group(1))


def _http(
    body: bytes,
    media: bytes = b"message/ohttp-req",
    path: bytes = b"/gateway",
    length: int | None = None,
) -> bytes:
    declared = len(body) if length is None else length
    return (
        b"POST "
        + path
        + b" HTTP/1.1\r\nhost: gateway\r\ncontent-type: "
        + media
        + b"\r\ncontent-length: "
        + str(declared).encode()
        + b"\r\n\r\n"
        + body
    )


async def _exchange(
    port: int, payload: bytes, *, slow: bool = False, stall: bool = False, timeout: float = 3.0
) -> int | None:
    """Send ``payload``, half-close (unless ``stall``: then just wait), and return the status of
    the answer (None: no answer)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        if slow:
            for offset in range(0, len(payload), 7):
                writer.write(payload[offset : offset + 7])
                await writer.drain()
                await asyncio.sleep(0.01)
        else:
            writer.write(payload)
            await writer.drain()
        if writer.can_write_eof() and not stall:
            writer.write_eof()
        line = await asyncio.wait_for(reader.readline(), timeout)
    except (TimeoutError, ConnectionError):
        return None
    finally:
        writer.close()
    parts = line.split()
    return int(parts[1]) if len(parts) >= 2 and parts[1].isdigit() else None


def _inputs(config: object, suite: object) -> list[tuple[str, bytes, bool]]:
    rng = random.Random(SEED)
    sealed, _ = ohttp.encapsulate_request(config, suite, bhttp.encode_request(inner_request()))  # type: ignore[arg-type]
    chunker = ChunkedRequestEncapsulator(config, suite)  # type: ignore[arg-type]
    stream = (
        chunker.start()
        + chunker.encapsulate_chunk(bhttp.encode_request(inner_request()))
        + chunker.finish()
    )
    valid = _http(sealed)
    inputs: list[tuple[str, bytes, bool]] = []
    inputs += [("random", rng.randbytes(rng.randrange(1, 400)), False) for _ in range(40)]
    inputs += [("truncated", valid[: rng.randrange(1, len(valid))], False) for _ in range(40)]
    for media in (
        b"",
        b"text/plain",
        b"message/ohttp-res",
        b"message/ohttp-req-x",
        b"MESSAGE/OHTTP",
        b"\xff\xfe",
        b"application/ohttp-keys",
        b"message/bhttp",
    ):
        inputs.append(("media", _http(sealed, media), False))
    for length in (2**31, 2**63, 10**30, 27_262_977):
        inputs.append(("huge-length", _http(b"abc", length=length), False))
    inputs.append(("bad-length", valid.replace(b"content-length: ", b"content-length: -"), False))
    inputs.append(
        ("double-length", valid.replace(b"\r\n\r\n", b"\r\ncontent-length: 3\r\n\r\n", 1), False)
    )
    inputs.append(("bad-chunking", CHUNKED_HEAD + b"zz\r\n", False))
    inputs.append(("huge-chunk", CHUNKED_HEAD + b"ffffffffffff\r\nab", False))
    inputs += [("slow", valid, True) for _ in range(6)]
    inputs += [("slow-truncated", valid[: len(valid) // 2], True) for _ in range(4)]
    inputs += [("stalled", valid[: len(valid) // 2], False) for _ in range(4)]
    inputs += [("stalled-head", valid[: valid.index(b"\r\n\r\n") + 4], False) for _ in range(2)]
    inputs += [("stalled-chunked", CHUNKED_HEAD + b"10\r\n" + stream[:8], False) for _ in range(2)]
    for index, mutated in enumerate(cases([sealed], 60, SEED)):
        inputs.append((f"ohttp-{index}", _http(mutated), False))
    for index, mutated in enumerate(cases([stream], 60, SEED + 1)):
        inputs.append((f"chunked-{index}", _http(mutated, b"message/ohttp-chunked-req"), False))
    for index, mutated in enumerate(cases([sealed], 20, SEED + 2)):
        inputs.append((f"score-{index}", _http(mutated, path=b"/score"), False))
    return inputs


def test_malformed_inputs_never_get_a_5xx(gateway: GatewayProcess) -> None:
    async def body() -> tuple[int, list[tuple[str, int | None]]]:
        async with aiohttp.ClientSession() as session:
            config = (await key_configs(session, gateway.url))[0]
        inputs = _inputs(config, config.suites[0])
        limit = asyncio.Semaphore(16)

        async def one(name: str, payload: bytes, slow: bool) -> tuple[str, int | None]:
            stall = name.startswith("stalled")
            async with limit:
                return name, await _exchange(gateway.port, payload, slow=slow, stall=stall)

        results = await asyncio.gather(*(one(*item) for item in inputs))
        async with aiohttp.ClientSession() as session:
            answer = await post_plain(
                session, gateway.url + "/gateway", config, config.suites[0], inner_request()
            )
            assert answer.inner is not None
            assert answer.inner.status == 200
        return len(inputs), results

    count, results = run(body())
    assert count >= 200
    server_errors = [
        (name, status) for name, status in results if status is not None and status >= 500
    ]
    assert server_errors == []
    assert sum(status is not None for _, status in results) >= 150  # most inputs got an answer
    stalled = [status for name, status in results if name.startswith("stalled")]
    assert stalled == [408] * 8
    deadline = time.monotonic() + 5
    while _in_flight(gateway) != 0:  # every slot released, the stalled senders' included
        assert time.monotonic() < deadline, "concurrency slots still held"
        time.sleep(0.05)
    assert gateway.alive()
