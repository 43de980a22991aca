"""The dev relay (``ohttp-gateway relay``), a real child process between a client and a tap in
front of the real dev gateway: what the gateway sees, streaming, and refusals."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest

from gateway.protocol import bhttp, ohttp
from gateway.protocol.chunked import ChunkedRequestEncapsulator
from gateway.protocol.keys import decode_key_configs
from tests.support.attested_gateway import GatewayTap
from tests.support.gateway_process import GatewayProcess
from tests.support.listening import Listening
from tests.support.upstream_double import free_port

CLIENT_ADDRESS = "127.0.0.2"  # loopback, but not the relay's address: the gateway must not see it
IDENTIFYING = {
    "X-Forwarded-For": "203.0.113.7",
    "Forwarded": "for=203.0.113.7",
    "X-Real-IP": "203.0.113.7",
    "Via": "1.1 client-proxy",
    "User-Agent": "secret-agent/7.0",
    "Cookie": "session=c00kie-value",
    "Authorization": "Bearer client-credential",
    "Proxy-Authorization": "Basic cHJveHk6cHc=",
    "X-Client-Id": "client-4711",
}
ALLOWED = {"host", "content-type", "content-length", "incremental", "transfer-encoding"}


@pytest.fixture
def relay(tmp_path: Path, tap: GatewayTap) -> Iterator[Listening]:
    args = ("relay", "--gateway", tap.url, "--port", "0")
    with Listening(tmp_path / "relay.log", "gateway.cli", *args) as running:
        yield running


def _session() -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(local_addr=(CLIENT_ADDRESS, 0), force_close=True)
    return aiohttp.ClientSession(connector=connector)


def _request() -> bhttp.Request:
    return bhttp.Request(b"POST", b"https", b"gw", b"/v1/audio/transcriptions?x=1", (), b"{}")


def test_the_gateway_sees_neither_the_client_address_nor_its_headers(
    relay: Listening, tap: GatewayTap, gateway: GatewayProcess
) -> None:
    async def go() -> int:
        async with _session() as session:
            async with session.get(relay.url + "/.well-known/ohttp-gateway") as answer:
                assert answer.headers["Content-Type"] == "application/ohttp-keys"
                config = decode_key_configs(await answer.read())[0]
            sealed, context = ohttp.encapsulate_request(
                config, config.suites[0], bhttp.encode_request(_request())
            )
            headers = {"Content-Type": "message/ohttp-req", **IDENTIFYING}
            async with session.post(relay.url + "/gateway", data=sealed, headers=headers) as answer:
                assert answer.status == 200
                assert "Server" not in answer.headers or "gateway" not in answer.headers["Server"]
                body = await answer.read()
        return bhttp.decode_response(context.decapsulate_response(body)).status

    assert asyncio.run(go()) < 500  # an answer from inside the TEE, whatever its status
    assert len(tap.seen) == 2
    for seen in tap.seen:
        assert seen.peer == "127.0.0.1"
        assert set(seen.headers) <= ALLOWED, seen.headers
    logs = gateway.logs()
    for value in (CLIENT_ADDRESS, *IDENTIFYING.values()):
        assert value not in logs
    assert CLIENT_ADDRESS not in relay.output()


def test_a_chunked_upload_is_forwarded_before_it_ends(relay: Listening, tap: GatewayTap) -> None:
    # The final chunk is withheld until the tap (between relay and gateway) has seen body bytes.
    # A watcher task, not the body generator, records it: aiohttp cancels the generator as soon
    # as the answer is complete, which the gateway may send before the upload ends.
    async def go() -> None:
        async with _session() as session:
            async with session.get(relay.url + "/.well-known/ohttp-gateway") as answer:
                config = decode_key_configs(await answer.read())[0]
            encapsulator = ChunkedRequestEncapsulator(config, config.suites[0])
            encoder = bhttp.RequestEncoder()
            forwarded_early = asyncio.Event()
            final_sent = False

            async def watch() -> None:
                while not final_sent:
                    if tap.body_bytes > 0:
                        forwarded_early.set()
                        return
                    await asyncio.sleep(0.01)

            async def body() -> AsyncIterator[bytes]:
                nonlocal final_sent
                head = encoder.head(b"POST", b"https", b"gw", b"/v1/audio/transcriptions", ())
                yield encapsulator.start() + encapsulator.encapsulate_chunk(head)
                yield encapsulator.encapsulate_chunk(encoder.body(b"x" * 4096))
                with contextlib.suppress(TimeoutError):  # a buffering relay: the assert fails
                    await asyncio.wait_for(forwarded_early.wait(), 20)
                final_sent = True
                yield encapsulator.finish(encoder.end())

            watcher = asyncio.create_task(watch())
            headers = {"Content-Type": "message/ohttp-chunked-req", "Incremental": "?1"}
            async with session.post(relay.url + "/gateway", data=body(), headers=headers) as answer:
                assert answer.status == 200
                assert answer.headers["Content-Type"] == "message/ohttp-chunked-res"
                await answer.read()
            await asyncio.wait_for(watcher, 25)
            assert forwarded_early.is_set()

    asyncio.run(go())


@pytest.mark.parametrize(
    ("method", "path", "content_type", "status"),
    [
        ("POST", "/gateway", "application/json", 415),
        ("POST", "/admin", "message/ohttp-req", 404),
        ("PUT", "/gateway", "message/ohttp-req", 405),
        ("GET", "/metrics", "", 404),
    ],
)
def test_the_relay_refuses_what_it_does_not_relay(
    relay: Listening, tap: GatewayTap, method: str, path: str, content_type: str, status: int
) -> None:
    async def go() -> int:
        async with aiohttp.ClientSession() as session:
            headers = {"Content-Type": content_type} if content_type else {}
            async with session.request(method, relay.url + path, data=b"x", headers=headers) as a:
                return a.status

    assert asyncio.run(go()) == status
    assert not tap.seen


def test_an_unreachable_gateway_is_a_clear_502(tmp_path: Path) -> None:
    args = ("relay", "--gateway", f"http://127.0.0.1:{free_port()}", "--port", "0")
    with Listening(tmp_path / "relay.log", "gateway.cli", *args) as relay:

        async def go() -> int:
            async with aiohttp.ClientSession() as session:
                headers = {"Content-Type": "message/ohttp-req"}
                async with session.post(relay.url + "/gateway", data=b"x", headers=headers) as a:
                    return a.status

        assert asyncio.run(go()) == 502
