"""The no-privacy baseline for bench/gateway_bench.py: a plain streaming reverse proxy on the
gateway's own stack (starlette, uvicorn with uvloop/httptools, the same pooled aiohttp upstream
client from gateway.server.forward), forwarding every POST to the fixed upstream unchanged.

``--client httpx`` swaps the upstream client for a shared ``httpx.AsyncClient`` (streaming both
ways, same timeouts and pool size), to measure the choice of client on this machine.

Run: ``python -m bench.plain_proxy --port P --upstream URL [--client aiohttp|httpx]``.
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import AsyncIterator

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from gateway.server.forward import CapturedBody, Upstream


def build(upstream_url: str) -> Starlette:
    upstream = Upstream(upstream_url, connect_timeout=5, read_timeout=600, pool_size=64)

    async def proxy(request: Request) -> Response:
        fields = tuple((k.lower(), v) for k, v in request.headers.raw)
        length = request.headers.get("content-length")
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        answer = await upstream.send(
            request.method.encode(),
            target,
            fields,
            CapturedBody(request.stream()),
            int(length) if length is not None else None,
        )

        async def relay() -> AsyncIterator[bytes]:
            async with answer:
                async for chunk in answer.chunks():
                    yield chunk

        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in answer.headers}
        return StreamingResponse(relay(), status_code=answer.status, headers=headers)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await upstream.start()
        yield
        await upstream.close()

    return Starlette(routes=[Route("/{path:path}", proxy, methods=["POST"])], lifespan=lifespan)


def build_httpx(upstream_url: str) -> Starlette:
    import httpx

    timeout = httpx.Timeout(connect=5.0, read=600.0, write=600.0, pool=600.0)
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64, keepalive_expiry=4.0)
    client = httpx.AsyncClient(base_url=upstream_url, timeout=timeout, limits=limits)

    async def proxy(request: Request) -> Response:
        headers = [(k, v) for k, v in request.headers.raw if k.lower() not in (b"host",)]
        outgoing = client.build_request(
            request.method,
            httpx.URL(path=request.url.path, query=request.url.query.encode()),
            headers=headers,
            content=request.stream(),
        )
        answer = await client.send(outgoing, stream=True)

        async def relay() -> AsyncIterator[bytes]:
            try:
                async for chunk in answer.aiter_raw():
                    yield chunk
            finally:
                await answer.aclose()

        return StreamingResponse(relay(), status_code=answer.status_code)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await client.aclose()

    return Starlette(routes=[Route("/{path:path}", proxy, methods=["POST"])], lifespan=lifespan)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--client", choices=("aiohttp", "httpx"), default="aiohttp")
    args = parser.parse_args()
    uvicorn.run(
        (build if args.client == "aiohttp" else build_httpx)(args.upstream),
        host="127.0.0.1",
        port=args.port,
        loop="uvloop",
        http="httptools",
        log_level="warning",
        access_log=False,
        server_header=False,
    )


if __name__ == "__main__":
    main()
