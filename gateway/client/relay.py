"""``ohttp-gateway relay``: a minimal RFC 9458 Oblivious Relay Resource, for dev and tests.

Real deployments use a relay run by another party (Azure Front Door, API Management, a third-party
relay service); this one exists so the whole chain runs on one machine.

Accepts: ``POST`` of ``message/ohttp-req`` or ``message/ohttp-chunked-req`` to ``/gateway``,
``/.well-known/ohttp-gateway`` or ``/score``, and ``GET`` of the key configs and the attestation
document, each forwarded to the same path on its ONE configured gateway.

Guarantees (RFC 9458 §5, §6.2):

* towards the gateway only ``Content-Type``, ``Content-Length`` and ``Incremental`` are forwarded;
  everything else the client sent (cookies, ``User-Agent``, ``Authorization``, ``Forwarded``,
  ``X-Forwarded-For``, ``Via``...) is dropped, and nothing identifying is added: no
  ``X-Forwarded-For``, ``Forwarded``, ``Via`` or ``User-Agent``; the gateway sees the relay's
  address;
* towards the client only ``Content-Type``, ``Content-Length``, ``Incremental`` and
  ``Cache-Control`` of the gateway's answer are passed back;
* bodies stream both ways as they arrive: a chunked upload is never buffered, and a chunked
  response is flushed piece by piece (SSE transcripts arrive live);
* anything else is refused in the clear (404, 405, 415), and an unreachable gateway is a 502.

Never does: log addresses, headers or bodies; read or alter a body; retry.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web

from gateway.errors import ConfigError
from gateway.trust.rest import ssl_context

POST_PATHS = frozenset({"/gateway", "/.well-known/ohttp-gateway", "/score"})
GET_PATHS = frozenset({"/.well-known/ohttp-gateway", "/.well-known/ohttp-gateway/attestation"})
MEDIA_TYPES = frozenset({"message/ohttp-req", "message/ohttp-chunked-req"})
FORWARDED_REQUEST = ("Content-Type", "Content-Length", "Incremental")
FORWARDED_RESPONSE = ("Content-Type", "Content-Length", "Incremental", "Cache-Control")
GATEWAY_KEY: web.AppKey[str] = web.AppKey("gateway", str)
SESSION_KEY: web.AppKey[aiohttp.ClientSession] = web.AppKey("session", aiohttp.ClientSession)


def build_relay(gateway: str) -> web.Application:
    parts = urlsplit(gateway)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query:
        raise ConfigError("--gateway must be an http(s) URL without query")
    app = web.Application(client_max_size=0)
    app[GATEWAY_KEY] = gateway.rstrip("/")
    app.cleanup_ctx.append(_session)
    app.router.add_route("*", "/{tail:.*}", _relay)
    return app


async def _session(app: web.Application) -> AsyncIterator[None]:
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(ssl=ssl_context(None)),
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
        trust_env=False,
        auto_decompress=False,
        # aiohttp would add its own User-Agent and Accept headers: the relay adds nothing.
        skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding"),
    )
    app[SESSION_KEY] = session
    yield
    await session.close()


def _refusal(status: int) -> web.Response:
    return web.Response(status=status, text=f"relay: {status}\n")


async def _relay(request: web.Request) -> web.StreamResponse:
    path = request.path
    if request.method == "GET" and path in GET_PATHS:
        return await _forward(request, None)
    if request.method != "POST":
        return _refusal(405 if path in POST_PATHS | GET_PATHS else 404)
    if path not in POST_PATHS:
        return _refusal(404)
    if request.content_type not in MEDIA_TYPES:
        return _refusal(415)
    return await _forward(request, request.content.iter_any())


async def _forward(request: web.Request, body: AsyncIterator[bytes] | None) -> web.StreamResponse:
    headers = {name: request.headers[name] for name in FORWARDED_REQUEST if name in request.headers}
    url = request.app[GATEWAY_KEY] + request.path
    session = request.app[SESSION_KEY]
    try:
        async with session.request(
            request.method, url, data=body, headers=headers, allow_redirects=False
        ) as answer:
            response = web.StreamResponse(status=answer.status)
            for name in FORWARDED_RESPONSE:
                if name in answer.headers:
                    response.headers[name] = answer.headers[name]
            await response.prepare(request)
            async for data in answer.content.iter_any():
                await response.write(data)
            await response.write_eof()
            return response
    except (aiohttp.ClientConnectionError, TimeoutError):
        return _refusal(502)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--gateway", required=True, help="the one gateway this relay forwards to")
    parser.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8081, help="listen port (0: any free port)")


def run(args: argparse.Namespace) -> int:
    app = build_relay(args.gateway)
    return asyncio.run(serve(app, args.host, args.port, banner="relay"))


async def serve(app: web.Application, host: str, port: int, *, banner: str) -> int:
    """Serve ``app`` until SIGINT/SIGTERM; prints ``<banner> listening on URL`` once bound."""
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    server = site._server
    sockets = getattr(server, "sockets", None) or []
    bound = sockets[0].getsockname()[1] if sockets else port
    print(f"{banner} listening on http://{host}:{bound}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
    print(f"{banner} stopped", file=sys.stderr, flush=True)
    return 0
