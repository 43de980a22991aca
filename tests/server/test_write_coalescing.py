"""Write coalescing (gateway/server/write_coalescing.py): a served response's head and body leave
in one TCP segment, counted by the client's kernel; and the transport holds only small writes,
only until the end of the loop step, in order, on a real transport over a real socket."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import socket
import struct
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import pytest
import uvloop

from gateway.protocol import bhttp, ohttp
from gateway.protocol.keys import decode_key_configs
from gateway.server.write_coalescing import COALESCE_LIMIT, CoalescingTransport
from tests.support.gateway_process import GatewayProcess
from tests.support.ohttp_client import inner_request

# struct tcp_info (linux/tcp.h): tcpi_data_segs_in, the segments received that carried data.
_DATA_SEGS_IN = struct.Struct("=I")
_DATA_SEGS_IN_OFFSET = 152


def data_segments_in(sock: socket.socket) -> int:
    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256)
    if len(info) < _DATA_SEGS_IN_OFFSET + 4:
        pytest.skip("this kernel's TCP_INFO has no tcpi_data_segs_in")
    return int(_DATA_SEGS_IN.unpack_from(info, _DATA_SEGS_IN_OFFSET)[0])


def _one_exchange(
    connection: http.client.HTTPConnection, method: str, path: str, body: bytes, media: str
) -> tuple[int, int]:
    """Status and the data segments the response took."""
    assert connection.sock is not None
    before = data_segments_in(connection.sock)
    connection.request(method, path, body, {"content-type": media})
    response = connection.getresponse()
    response.read()
    return response.status, data_segments_in(connection.sock) - before


def test_a_response_leaves_in_one_segment(gateway: GatewayProcess) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=10)
    try:
        connection.connect()
        status, _ = _one_exchange(connection, "GET", "/livez", b"", "text/plain")
        assert status == 200
        connection.request("GET", "/.well-known/ohttp-gateway")
        config = decode_key_configs(connection.getresponse().read())[0]
        for _ in range(3):  # kept alive: every response, not only the first
            message = bhttp.encode_request(inner_request())
            sealed = ohttp.encapsulate_request(config, config.suites[0], message)[0]
            status, segments = _one_exchange(
                connection, "POST", "/gateway", sealed, "message/ohttp-req"
            )
            assert status == 200
            assert segments == 1  # head and body together; uvicorn alone sends two
            status, segments = _one_exchange(
                connection, "POST", "/gateway", b"\x01", "message/ohttp-req"
            )
            assert status == 400
            assert segments == 1
    finally:
        connection.close()


class _Sink(asyncio.Protocol):
    pass


@contextlib.asynccontextmanager
async def _pair() -> AsyncIterator[tuple[CoalescingTransport, asyncio.Transport, socket.socket]]:
    """A coalescing transport over a real one, and the socket at the other end."""
    ours, peer = socket.socketpair()
    peer.setblocking(False)
    loop = asyncio.get_running_loop()
    transport, _ = await loop.connect_accepted_socket(_Sink, ours)
    try:
        yield CoalescingTransport(transport, loop), transport, peer
    finally:
        transport.abort()
        peer.close()


LoopRun = Callable[[Coroutine[Any, Any, None]], None]


@pytest.fixture(params=["asyncio", "uvloop"])
def loop_run(request: pytest.FixtureRequest) -> LoopRun:
    """Each unit test on asyncio's loop and on uvloop, which the gateway serves on."""
    return asyncio.run if request.param == "asyncio" else uvloop.run  # type: ignore[return-value]


def _available(peer: socket.socket) -> bytes:
    try:
        return peer.recv(1 << 20)
    except BlockingIOError:
        return b""


def test_small_writes_are_held_until_the_end_of_the_step(loop_run: LoopRun) -> None:
    async def body() -> None:
        async with _pair() as (coalescing, _real, peer):
            coalescing.write(b"HTTP/1.1 200 OK\r\n\r\n")
            coalescing.write(b"body")
            assert _available(peer) == b""  # still held within this step
            await asyncio.sleep(0)
            assert _available(peer) == b"HTTP/1.1 200 OK\r\n\r\nbody"
            coalescing.write(b"next event")  # a later step: it leaves in its own
            await asyncio.sleep(0)
            assert _available(peer) == b"next event"

    loop_run(body())


def test_a_write_reaching_the_limit_leaves_at_once_after_what_is_held(loop_run: LoopRun) -> None:
    async def body() -> None:
        async with _pair() as (coalescing, _real, peer):
            coalescing.write(b"head")
            bulk = bytes(COALESCE_LIMIT)
            coalescing.write(bulk)
            received = b""
            while len(received) < 4 + len(bulk):  # without the loop step ending
                chunk = _available(peer)
                assert chunk, "held back"
                received += chunk
            assert received == b"head" + bulk

    loop_run(body())


def test_a_held_buffer_is_copied(loop_run: LoopRun) -> None:
    async def body() -> None:
        async with _pair() as (coalescing, _real, peer):
            buffer = bytearray(b"sealed response")
            coalescing.write(memoryview(buffer))
            buffer[:] = b"reused buffer!!"  # the caller's, once write() has returned
            await asyncio.sleep(0)
            assert _available(peer) == b"sealed response"

    loop_run(body())


@pytest.mark.parametrize(("ending", "delivered"), [("close", b"held"), ("abort", b"")])
def test_close_sends_what_is_held_and_abort_drops_it(
    ending: str, delivered: bytes, loop_run: LoopRun
) -> None:
    async def body() -> None:
        async with _pair() as (coalescing, real, peer):
            coalescing.write(b"held")
            getattr(coalescing, ending)()
            await asyncio.sleep(0.05)
            assert _available(peer) == delivered
            assert real.is_closing()

    loop_run(body())


def test_a_client_that_half_closes_still_gets_an_immediate_answer(gateway: GatewayProcess) -> None:
    """EOF right after the request: uvicorn's transport closes itself at it, and an answer the
    gateway gives at once (here a 400), held until the end of the step, must still go out
    before. (An answer that waits for the upstream is lost to such a client with or without
    coalescing: uvicorn takes the EOF for the end of the connection.)"""
    body = b"\x01"
    head = b"POST /gateway HTTP/1.1\r\nhost: g\r\ncontent-type: message/ohttp-req\r\n"
    request = head + b"content-length: %d\r\n\r\n" % len(body) + body
    for _ in range(20):
        with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as client:
            client.sendall(request)
            client.shutdown(socket.SHUT_WR)
            answer = b""
            while chunk := client.recv(1 << 16):
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 400 "), answer[:40]
