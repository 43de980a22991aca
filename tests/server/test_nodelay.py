"""The gateway's worker sockets: connections accepted from the socket the supervisor binds have
TCP_NODELAY (Nagle on would hold each kept-alive response's body ~40 ms for a delayed ACK)."""

from __future__ import annotations

import http.client
from pathlib import Path

from tests.support.accepted import descendants, server_nodelay
from tests.support.gateway_process import GatewayProcess
from tests.support.upstream_double import UpstreamDouble


def test_worker_connections_have_nodelay(double: UpstreamDouble, tmp_path: Path) -> None:
    process = GatewayProcess(double.url, tmp_path / "g.log", "--workers", "2").start()
    connection = http.client.HTTPConnection("127.0.0.1", process.port, timeout=10)
    try:
        assert process.process is not None
        for _ in range(10):  # sequential requests on one kept-alive connection
            connection.request("GET", "/livez")
            response = connection.getresponse()
            response.read()
            assert response.status == 200
        assert connection.sock is not None
        assert server_nodelay(descendants(process.process.pid), connection.sock)
    finally:
        connection.close()
        assert process.terminate() == 0
