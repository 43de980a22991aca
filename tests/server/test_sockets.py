"""bind_tcp: connections asyncio accepts from it get TCP_NODELAY; a taken port is a ConfigError."""

from __future__ import annotations

import asyncio
import socket

import pytest

from gateway.errors import ConfigError
from gateway.server.sockets import bind_tcp, bind_tcp_group


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


def test_a_group_shares_one_port_and_spreads_connections_over_its_sockets() -> None:
    group = bind_tcp_group("127.0.0.1", 0, 2)
    try:
        port = group[0].getsockname()[1]
        assert port == group[1].getsockname()[1]
        clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(64)]
        accepted = []
        for sock in group:
            sock.setblocking(False)
            count = 0
            while True:
                try:
                    connection, _ = sock.accept()
                except BlockingIOError:
                    break
                connection.close()
                count += 1
            accepted.append(count)
        for client in clients:
            client.close()
        assert sum(accepted) == 64
        # Hash spreading, not round robin: 64 connections all on one socket has odds ~2^-63.
        assert min(accepted) >= 8, accepted
    finally:
        for sock in group:
            sock.close()


@pytest.mark.parametrize("reuse_port", [False, True])
def test_a_group_refuses_a_port_another_process_listens_on(reuse_port: bool) -> None:
    """Even a foreign SO_REUSEPORT listener: joining its group would silently share traffic."""
    taken = bind_tcp("127.0.0.1", 0, reuse_port=reuse_port)
    taken.listen()
    try:
        with pytest.raises(ConfigError):
            bind_tcp_group("127.0.0.1", taken.getsockname()[1], 2)
    finally:
        taken.close()
