"""A backend double for the gateway's tests: a real starlette/uvicorn server on loopback.

It stands where the Whisper container stands and answers every path. Its behaviour is chosen by
the request's query string, which the gateway forwards unchanged:

* (nothing): JSON describing what arrived: method, path, query, headers, host, byte count and
  SHA-256 of the body (read as a stream, so 25 MiB uploads cost no memory);
* ``sink=1``: only ``{"received": n}`` (no hashing: the benchmark's cheap upstream);
* ``echo=1``: the request body back, with its content type;
* ``status=N``: answer with status N;
* ``size=N``: a body of N bytes;
* ``delay=S``: wait S seconds first (a disconnect during the wait is counted as cancelled);
* ``hang=1``: never answer (until the client goes away);
* ``sse=N&interval=S``: N server-sent events, S seconds apart, each carrying the server's clock;
* ``early=1``: the response head and a first line (``early``) go out before the request body is
  read; the body's size follows as the last line once it ended (an upstream that answers early).

``GET /_double/stats`` (on the double itself, not through the gateway) returns counters (among
them ``aborted``: requests whose body was cut off by a disconnect) and the headers of the last
request. Run it in a thread (:class:`UpstreamDouble`) or as a process
(``python -m tests.support.upstream_double --port N``).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import socket
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send


class Stats:
    def __init__(self) -> None:
        self.requests = 0
        self.completed = 0
        self.cancelled = 0
        self.aborted = 0
        self.last: dict[str, Any] = {}

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "completed": self.completed,
            "cancelled": self.cancelled,
            "aborted": self.aborted,
            "last": self.last,
        }


async def _wait_or_disconnect(request: Request, seconds: float) -> bool:
    """Sleep ``seconds``; True if the client disconnected meanwhile."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if await request.is_disconnected():
            return True
        await asyncio.sleep(min(0.05, max(0.0, deadline - time.monotonic())))
    return False


def build_double(stats: Stats) -> ASGIApp:
    async def handle(request: Request) -> Response:
        stats.requests += 1
        query = request.query_params
        if "sink" in query:
            received = 0
            async for chunk in request.stream():
                received += len(chunk)
            stats.completed += 1
            return JSONResponse({"received": received})
        digest, received, kept = hashlib.sha256(), 0, bytearray()
        try:
            async for chunk in request.stream():
                digest.update(chunk)
                received += len(chunk)
                if "echo" in query:
                    kept += chunk
        except ClientDisconnect:
            stats.aborted += 1  # the request was cut before its body ended
            return Response(status_code=499)
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in request.headers.raw}
        stats.last = {"headers": headers, "path": request.url.path, "received": received}
        if "hang" in query or "delay" in query:
            seconds = 3600.0 if "hang" in query else float(query["delay"])
            if await _wait_or_disconnect(request, seconds):
                stats.cancelled += 1
                return Response(status_code=499)
        stats.completed += 1
        status = int(query.get("status", "200"))
        if "sse" in query:
            return StreamingResponse(
                _events(int(query["sse"]), float(query.get("interval", "0.2"))),
                media_type="text/event-stream",
                headers={"cache-control": "no-cache"},
            )
        if "echo" in query:
            media = request.headers.get("content-type", "application/octet-stream")
            return Response(bytes(kept), status_code=status, media_type=media)
        if "size" in query:
            body = bytes(range(256)) * (int(query["size"]) // 256 + 1)
            return Response(body[: int(query["size"])], status_code=status)
        document = {
            "text": "the double heard you",
            "method": request.method,
            "path": request.url.path,
            "query": request.url.query,
            "headers": headers,
            "received": received,
            "sha256": digest.hexdigest(),
        }
        return JSONResponse(document, status_code=status)

    async def stats_endpoint(request: Request) -> Response:
        return JSONResponse(stats.as_dict())

    async def root(request: Request) -> Response:
        return JSONResponse({"double": True})

    app = Starlette(
        routes=[
            Route("/_double/stats", stats_endpoint, methods=["GET"]),
            Route("/", root, methods=["GET"]),
            Route("/{path:path}", handle, methods=["GET", "POST", "HEAD", "PUT", "DELETE"]),
        ]
    )
    return _EarlyAnswer(app, stats)


class _EarlyAnswer:
    """``early=1`` is answered here, in raw ASGI: starlette's responses wait for the request body
    (or compete with it for ``receive``). Everything else goes to the app."""

    def __init__(self, app: ASGIApp, stats: Stats) -> None:
        self.app, self.stats = app, stats

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or b"early=1" not in scope.get("query_string", b""):
            await self.app(scope, receive, send)
            return
        self.stats.requests += 1
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"early\n", "more_body": True})
        received = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                self.stats.aborted += 1
                return
            received += len(message.get("body", b""))
            if not message.get("more_body", False):
                break
        self.stats.completed += 1
        await send({"type": "http.response.body", "body": b"%d\n" % received})


async def _events(count: int, interval: float) -> AsyncIterator[bytes]:
    for index in range(count):
        if index:
            await asyncio.sleep(interval)
        payload = json.dumps({"index": index, "sent_at": time.time(), "text": f"word{index}"})
        yield f"data: {payload}\n\n".encode()
    yield b"data: [DONE]\n\n"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class UpstreamDouble:
    """The double running in a thread of the test process."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.stats = Stats()
        config = uvicorn.Config(
            build_double(self.stats),
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            lifespan="off",
            timeout_keep_alive=5,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> UpstreamDouble:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("upstream double did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(
        build_double(Stats()),
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
        access_log=False,
        loop="uvloop",
        http="httptools",
    )


if __name__ == "__main__":
    main()
