"""``ohttp-client proxy``: a local plaintext → OHTTP proxy for unchanged OpenAI/Whisper clients.

The "application or enterprise OHTTP proxy" of Azure's Confidential Whisper design: applications
point their SDK's ``base_url`` at it (``http://127.0.0.1:PORT/v1``, or the Azure OpenAI endpoint
``http://127.0.0.1:PORT`` with a deployment path) and keep their code.

Accepts any HTTP request on its listening address (loopback by default). Guarantees: before the
first request, and whenever the cached verification expires, the gateway's attestation is
verified against the policy (:class:`OhttpClient`); each request is then sent as chunked OHTTP
through the relay, the request body streamed as it arrives (multipart uploads included), the
response status and headers returned once decrypted, and the body streamed back piece by piece
(SSE transcripts arrive live). Hop-by-hop fields are dropped both ways. A refusal (attestation,
transport, a clear error from relay or gateway) becomes a JSON error in OpenAI's shape with the
error's status and its fixed message, never a traceback.

Never does: send a request in the clear, log bodies or headers, or listen beyond the address given.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

from aiohttp import web

from gateway.client.session import Head, OhttpClient
from gateway.errors import GatewayError
from gateway.protocol import bhttp

# RFC 9110 §7.6.1 hop-by-hop fields, plus what the proxy's own connection decides.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authorization",
        "proxy-authenticate",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "expect",
    }
)
DROPPED_FROM_RESPONSE = HOP_BY_HOP | {"date", "server"}
CLIENT_KEY: web.AppKey[OhttpClient] = web.AppKey("client", OhttpClient)


def build_proxy(client: OhttpClient) -> web.Application:
    app = web.Application(client_max_size=0)
    app[CLIENT_KEY] = client

    async def close(app: web.Application) -> None:
        await client.aclose()

    app.on_cleanup.append(close)
    app.router.add_route("*", "/{tail:.*}", _proxy)
    return app


def inner_head(request: web.Request) -> Head:
    fields = tuple(
        (name.lower().encode("latin-1"), value.encode("latin-1"))
        for name, value in request.headers.items()
        if name.lower() not in HOP_BY_HOP
    )
    path = request.raw_path.encode("latin-1")
    return Head(request.method.encode("ascii"), path, bhttp.strip_connection_fields(fields))


def error_response(error: GatewayError) -> web.Response:
    """OpenAI's error shape, so SDKs surface the message."""
    body = {"error": {"message": error.message, "type": error.reason, "code": type(error).__name__}}
    return web.Response(status=error.status, text=json.dumps(body), content_type="application/json")


async def _proxy(request: web.Request) -> web.StreamResponse:
    client = request.app[CLIENT_KEY]
    head = inner_head(request)

    async def body() -> AsyncIterator[bytes]:
        async for data in request.content.iter_any():
            yield data

    response: web.StreamResponse | None = None
    try:
        async with client.stream(head, body, replayable=False) as inner:
            response = web.StreamResponse(status=inner.status)
            for name, value in inner.headers:
                if name.decode("latin-1") not in DROPPED_FROM_RESPONSE:
                    response.headers.add(name.decode("latin-1"), value.decode("latin-1"))
            await response.prepare(request)
            async for piece in inner.iter_body():
                await response.write(piece)
            await response.write_eof()
            return response
    except GatewayError as error:
        if response is None or not response.prepared:
            return error_response(error)
        # The status is already sent: end the connection without the final chunk, so the
        # application sees a broken response, never a truncated one that looks complete.
        response.force_close()
        if request.transport is not None:
            request.transport.abort()
        return response
