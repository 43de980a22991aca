"""The benchmark's upstream: the cheapest HTTP/1.1 server that still reads every request whole.

It stands where the Whisper container stands in bench/gateway_bench.py. Every request, whatever
its path, is parsed by httptools (Content-Length or chunked bodies), its body read to the end and
counted, and answered ``200 {"received": n}`` on a kept-alive connection, as
tests/support/upstream_double.py does for ``?sink=1``. It exists because on this 2-core machine
the load generator, the upstream and the system under test share the cores: the starlette double
spends about 0.1 ms per request, which on two gateway workers is CPU taken from the workers; this
one spends a fraction of that (``python -m bench.gateway_bench`` prints both in its "upstream
direct" rows). ``GET /`` answers too, so readiness probes and wait loops work.

Run: ``python -m bench.sink_upstream --port N``.
"""

from __future__ import annotations

import argparse
import asyncio

import httptools
import uvloop

from gateway.server.sockets import LISTEN_BACKLOG, bind_tcp


class SinkProtocol(asyncio.Protocol):
    """One connection: parse requests back to back, answer each once its body has ended."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.received = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            if self.transport is not None:
                self.transport.write(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
                self.transport.close()

    # httptools callbacks
    def on_message_begin(self) -> None:
        self.received = 0

    def on_body(self, body: bytes) -> None:
        self.received += len(body)

    def on_message_complete(self) -> None:
        if self.transport is None:
            return
        content = b'{"received": %d}' % self.received
        self.transport.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
            % (len(content), content)
        )
        if not self.parser.should_keep_alive():
            self.transport.close()


async def serve(host: str, port: int) -> None:
    server = await asyncio.get_running_loop().create_server(
        SinkProtocol, sock=bind_tcp(host, port), backlog=LISTEN_BACKLOG
    )
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvloop.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
