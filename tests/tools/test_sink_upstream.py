"""bench/sink_upstream.py: the benchmark's upstream reads whole bodies and keeps connections."""

from __future__ import annotations

import http.client
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def sink() -> Iterator[int]:
    port = _free_port()
    child = subprocess.Popen(
        [sys.executable, "-m", "bench.sink_upstream", "--port", str(port)], cwd=ROOT
    )
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        yield port
    finally:
        child.terminate()
        child.wait(10)


def test_bodies_are_counted_in_both_framings_on_one_connection(sink: int) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", sink, timeout=10)
    connection.request("POST", "/v1/audio/transcriptions", body=b"x" * 70_000)
    answer = connection.getresponse()
    assert (answer.status, answer.read()) == (200, b'{"received": 70000}')
    connection.request("POST", "/any", body=iter([b"abc", b"defg"]), encode_chunked=True)
    answer = connection.getresponse()
    assert (answer.status, answer.read()) == (200, b'{"received": 7}')
    connection.request("GET", "/")
    assert connection.getresponse().read() == b'{"received": 0}'
    connection.close()


def test_garbage_gets_a_400_and_the_server_goes_on(sink: int) -> None:
    with socket.create_connection(("127.0.0.1", sink), timeout=10) as raw:
        raw.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        assert raw.recv(100).startswith(b"HTTP/1.1 400")
    connection = http.client.HTTPConnection("127.0.0.1", sink, timeout=10)
    connection.request("POST", "/", body=b"ok")
    assert connection.getresponse().status == 200
    connection.close()
