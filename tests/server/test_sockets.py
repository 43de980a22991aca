"""bind_tcp: connections asyncio accepts from it get TCP_NODELAY; a taken port is a ConfigError."""

from __future__ import annotations

import asyncio
import socket

import pytest

from gateway.errors import ConfigError
from gateway.server.sockets import bind_tcp


async def accepted_nodelay(listening: socket.socket) -> bool:
    accepted: asyncio.Queue[bool] = asyncio.Queue()

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        await accepted.put(bool(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)))
        writer.close()

    # The plain asyncio loop: it sets TCP_NODELAY only when the listening socket says IPPROTO_TCP.
    server = await asyncio.start_server(on_connect, sock=listening)
    async with server:
        _, writer = await asyncio.open_connection(*listening.getsockname()[:2])
        nodelay = await asyncio.wait_for(accepted.get(), 10)
        writer.close()
        await writer.wait_closed()
    return nodelay


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_accepted_connections_have_nodelay(host: str) -> None:
    assert asyncio.run(accepted_nodelay(bind_tcp(host, 0)))


def test_the_check_sees_a_socket_without_nodelay() -> None:
    assert not asyncio.run(accepted_nodelay(socket.create_server(("127.0.0.1", 0))))


def test_a_taken_port_is_a_config_error() -> None:
    taken = socket.create_server(("127.0.0.1", 0))
    with taken, pytest.raises(ConfigError, match="cannot bind"):
        bind_tcp("127.0.0.1", taken.getsockname()[1])
