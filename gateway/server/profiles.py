"""The three wire profiles of the gateway route (shared/DESIGN.md §3), one coroutine each.

Each handler receives an outer request that already passed the outer checks (route, media
type, declared length, concurrency) and answers it completely. Errors are answered by phase:
until a request has been decapsulated they propagate to the caller, which answers in the clear
(:func:`gateway.server.answers.clear_error`); from then on they are answered encapsulated, here,
through :func:`gateway.server.answers.inner_error`.

* :func:`plain` — ``message/ohttp-req``: the body is buffered (bounded), decapsulated, forwarded,
  and the whole upstream response encapsulated as one known-length BHTTP message.
* :func:`chunked` — ``message/ohttp-chunked-req``: the inner request streams into the upstream as
  chunks open; the response streams back chunk by chunk (SSE events are never batched).
* :func:`azure` — ``POST /score``: a plain request, answered in Microsoft's framing: status in the
  clear, the raw upstream body encrypted chunk by chunk.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

from starlette.types import Receive, Send

from gateway.errors import BhttpError, BodyTimeout, GatewayError, Phase
from gateway.protocol import bhttp, ohttp
from gateway.protocol.azure_profile import AzureResponseEncapsulator
from gateway.protocol.chunked import REQUEST_LABEL as CHUNKED_REQUEST_LABEL
from gateway.protocol.chunked import (
    ChunkedRequestDecapsulator,
    ChunkedResponseEncapsulator,
)
from gateway.protocol.keys import KeyRing
from gateway.server.answers import OHTTP_RESPONSE_HEADERS, inner_error, send_response
from gateway.server.exchange import MAX_BUFFERED_RESPONSE, Gateway, guarded
from gateway.server.forward import CapturedBody, UpstreamResponse
from gateway.server.limits import body_chunks, read_body
from gateway.server.metrics import status_class
from gateway.server.policy import header_value

OHTTP_RES = b"message/ohttp-res"
CHUNKED_RES = b"message/ohttp-chunked-res"
STREAM_HEADERS = [*OHTTP_RESPONSE_HEADERS, (b"incremental", b"?1")]


@dataclass
class Result:
    """The outer request's declared length, and what the caller records about the exchange."""

    declared_length: int | None = None
    error: GatewayError | None = None
    upstream_status: int | None = None
    received: int = 0
    sent: int = 0


async def _forward(
    gw: Gateway,
    method: bytes,
    target: str,
    headers: tuple[bhttp.Field, ...],
    body: bytes | CapturedBody,
    content_length: int | None = None,
) -> UpstreamResponse:
    """Send to the upstream and count the answer (or the failure) by status class."""
    try:
        with gw.metrics.phase("upstream"):
            response = await gw.upstream.send(method, target, headers, body, content_length)
    except GatewayError as error:
        kind = {"upstream_timeout": "timeout", "upstream_unavailable": "unreachable"}
        if error.reason in kind:
            gw.metrics.upstream_responses.labels(kind[error.reason]).inc()
        raise
    gw.metrics.child(gw.metrics.upstream_responses, status_class(response.status)).inc()
    return response


async def _decapsulate(
    gw: Gateway, ring: KeyRing, body: bytes | bytearray
) -> tuple[bytes, ohttp.ServerResponseContext]:
    with gw.metrics.phase("decapsulate"):
        agreed = await gw.key_agreement.agreement(ring, body, ohttp.REQUEST_LABEL)
        return ohttp.decapsulate_request(ring, body, agreed)


async def _open_plain(
    gw: Gateway, ring: KeyRing, receive: Receive, result: Result
) -> tuple[bhttp.Request | GatewayError, ohttp.ServerResponseContext]:
    """Read, decapsulate and decode a plain request, holding at most two copies of the body at a
    time. Decapsulation errors propagate (answered in the clear); a decoding error is returned
    (answered encapsulated)."""
    body = await read_body(
        receive, gw.settings.max_body_bytes, gw.body_pace, result.declared_length
    )
    result.received = len(body)
    request_bytes, context = await _decapsulate(gw, ring, body)
    del body
    try:
        return bhttp.decode_request(request_bytes, gw.bhttp_limits), context
    except GatewayError as error:
        return error, context


async def _plain_exchange(
    gw: Gateway, request: bhttp.Request | GatewayError, enc: bytes, result: Result
) -> bhttp.Response:
    """The inner response to a decapsulated plain request (an error response included)."""
    try:
        if isinstance(request, GatewayError):
            raise request
        target = gw.admit(request.method, request.path, request.headers, enc)
        upstream = await _forward(gw, request.method, target, request.headers, request.content)
        del request  # the upstream client holds the content until it is sent
        result.upstream_status = upstream.status
        async with upstream:
            content = await upstream.read(MAX_BUFFERED_RESPONSE)
        return bhttp.Response(status=upstream.status, headers=upstream.headers, content=content)
    except GatewayError as error:
        result.error = error
        return inner_error(error)


async def plain(gw: Gateway, ring: KeyRing, receive: Receive, send: Send, result: Result) -> None:
    request, context = await _open_plain(gw, ring, receive, result)
    done = asyncio.Event()
    done.set()
    work = _plain_exchange(gw, request, context.enc, result)
    del request
    response = await guarded(work, receive, done)
    with gw.metrics.phase("encapsulate"):
        encoded = context.encapsulate_response(bhttp.encode_response(response))
    headers = [(b"content-type", OHTTP_RES), *OHTTP_RESPONSE_HEADERS]
    await send_response(send, 200, headers, encoded)
    result.sent = len(encoded)


async def azure(gw: Gateway, ring: KeyRing, receive: Receive, send: Send, result: Result) -> None:
    request, context = await _open_plain(gw, ring, receive, result)
    enc = context.enc
    framing = AzureResponseEncapsulator(context)
    done = asyncio.Event()
    done.set()
    work = _azure_exchange(gw, request, enc, framing, send, result)
    del request
    await guarded(work, receive, done)


async def _azure_exchange(
    gw: Gateway,
    request: bhttp.Request | GatewayError,
    enc: bytes,
    framing: AzureResponseEncapsulator,
    send: Send,
    result: Result,
) -> None:
    try:
        if isinstance(request, GatewayError):
            raise request
        target = gw.admit(request.method, request.path, request.headers, enc)
        upstream = await _forward(gw, request.method, target, request.headers, request.content)
        del request
    except GatewayError as error:
        result.error = error
        answer = inner_error(error)
        await _start(send, answer.status, framing.start(), result)
        await _chunk(send, framing.finish(answer.content), result, more=False)
        return
    result.upstream_status = upstream.status
    async with upstream:
        await _start(send, upstream.status, framing.start(), result)
        async for data in upstream.chunks():
            if data:
                await _chunk(send, framing.encapsulate_chunk(data), result)
        await _chunk(send, framing.finish(), result, more=False)


async def _stream_head(send: Send, status: int, *, close: bool = False) -> None:
    headers = [(b"content-type", CHUNKED_RES), *STREAM_HEADERS]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})


async def _start(send: Send, status: int, first: bytes, result: Result) -> None:
    await _stream_head(send, status)
    await _chunk(send, first, result)


async def _chunk(send: Send, data: bytes, result: Result, *, more: bool = True) -> None:
    result.sent += len(data)
    await send({"type": "http.response.body", "body": data, "more_body": more})


class ChunkedInbound:
    """Opens a chunked request as it arrives and decodes the inner BHTTP incrementally."""

    def __init__(
        self, gw: Gateway, ring: KeyRing, chunks: AsyncIterator[bytes], result: Result
    ) -> None:
        self.decapsulator = ChunkedRequestDecapsulator(ring)
        self._ring = ring
        self._key_agreement = gw.key_agreement
        self._offload: bool | None = None  # decided by the key id, the stream's first byte
        self._prefix = bytearray()  # hdr ‖ enc, collected for an agreement away from the loop
        self._decoder = bhttp.RequestDecoder(gw.bhttp_limits)
        self._events: list[bhttp.Event] = []
        self._chunks = chunks
        self._ended = False
        self._result = result
        self.opened = False
        self.body_done = asyncio.Event()

    async def _pull(self) -> None:
        data = await anext(self._chunks, None)
        if data is None:
            self._ended = True
            self._open(self.decapsulator.finish())
            self._events.extend(self._decoder.finish())
            return
        self._result.received += len(data)
        if self.decapsulator.enc is None:  # the HPKE setup happens once hdr ‖ enc are in
            if self._offload is None:
                self._offload = self._key_agreement.wanted(self._ring, data[0])
            if self._offload:
                self._prefix += data
                found = ohttp.agreement_input(self._ring, self._prefix, CHUNKED_REQUEST_LABEL)
                if found is None:
                    return
                self.decapsulator.use_agreement(await self._key_agreement.agree(found))
                data, self._prefix = bytes(self._prefix), bytearray()
        self._open(self.decapsulator.feed(data))

    def _open(self, plaintexts: list[bytes]) -> None:
        for plaintext in plaintexts:
            self.opened = True
            self._events.extend(self._decoder.feed(plaintext))

    async def head(self) -> bhttp.RequestHead:
        while not self._events:
            if self._ended:
                raise BhttpError("Request ended before its header section")
            await self._pull()
        event = self._events.pop(0)
        if not isinstance(event, bhttp.RequestHead):
            raise BhttpError("Request does not start with a header section")
        return event

    async def body(self, declared: int | None) -> AsyncIterator[bytes]:
        """Content chunks until the end of the stream, which must close the encapsulation."""
        sent = 0
        while True:
            events, self._events = self._events, []
            for event in events:
                if isinstance(event, bhttp.BodyChunk) and event.data:
                    sent += len(event.data)
                    if declared is not None and sent > declared:
                        raise BhttpError("Content longer than its Content-Length")
                    yield event.data
            if self._ended:
                break
            await self._pull()
        if declared is not None and sent != declared:
            raise BhttpError("Content shorter than its Content-Length")
        self.body_done.set()


def _declared_length(headers: tuple[bhttp.Field, ...]) -> int | None:
    value = header_value(headers, b"content-length")
    if value is None:
        return None
    if not value.isdigit() or len(value) > 20:
        raise BhttpError("Invalid inner Content-Length")
    return int(value)


async def chunked(gw: Gateway, ring: KeyRing, receive: Receive, send: Send, result: Result) -> None:
    chunks = body_chunks(receive, gw.settings.max_body_bytes, gw.body_pace)
    inbound = ChunkedInbound(gw, ring, chunks, result)
    head: bhttp.RequestHead | GatewayError
    try:
        with gw.metrics.phase("decapsulate"):
            head = await inbound.head()
    except GatewayError as error:
        if not inbound.opened:
            raise  # nothing decrypted yet: answered in the clear
        head = error
    response = _ChunkedResponse(inbound.decapsulator.response_encapsulator(), send, result)
    try:
        if isinstance(head, GatewayError):
            raise head
        target = gw.admit(head.method, head.path, head.headers, inbound.decapsulator.enc or b"")
        declared = _declared_length(head.headers)
        body = CapturedBody(inbound.body(declared))
        work = _chunked_exchange(gw, head, target, body, declared, response, result)
        await guarded(work, receive, inbound.body_done)
    except GatewayError as error:
        await _refuse_midstream(gw, error, response, result)


async def _refuse_midstream(
    gw: Gateway, error: GatewayError, response: _ChunkedResponse, result: Result
) -> None:
    """Answer an error after the first chunk opened: encapsulated, or by cutting the stream when
    the response already started. A failure of the outer stream (framing, decryption, size, pace)
    still counts as a decapsulation failure: the stream was being decapsulated."""
    result.error = error
    if error.phase is Phase.BEFORE_DECAPSULATION:
        gw.metrics.decapsulation_failures.labels(error.reason).inc()
    if response.started:
        await response.abort()
    else:
        await response.error(error)


async def _chunked_exchange(
    gw: Gateway,
    head: bhttp.RequestHead,
    target: str,
    body: CapturedBody,
    declared: int | None,
    response: _ChunkedResponse,
    result: Result,
) -> None:
    upstream = await _forward(gw, head.method, target, head.headers, body, declared)
    result.upstream_status = upstream.status
    async with upstream:
        await response.start(upstream.status, upstream.headers)
        last = b""
        async for data in upstream.chunks():
            if upstream.at_end:
                last = data  # arrived with the end: it goes out in the final chunk, one write
            else:
                await response.body(data)
        await response.finish(last)


class _ChunkedResponse:
    """An indeterminate-length BHTTP response, streamed as chunked OHTTP.

    Each body write is one ASGI message and so one socket write: the response nonce goes out
    with the response head, and a body piece that arrived together with the end of the upstream
    body goes out inside the final chunk. Pieces that arrive apart (SSE events) are sent apart.
    """

    def __init__(
        self, encapsulator: ChunkedResponseEncapsulator, send: Send, result: Result
    ) -> None:
        self._encapsulator = encapsulator
        self._encoder = bhttp.ResponseEncoder()
        self._send = send
        self._result = result
        self.started = False

    async def _open(self, *, close: bool = False) -> None:
        self.started = True
        await _stream_head(self._send, 200, close=close)

    async def start(self, status: int, headers: tuple[bhttp.Field, ...]) -> None:
        await self._open()
        head = self._encoder.head(status, headers)
        await _chunk(self._send, self._encapsulator.encapsulate_chunk(head), self._result)

    async def body(self, data: bytes) -> None:
        piece = self._encoder.body(data)
        if piece:
            sealed = self._encapsulator.encapsulate_chunk(piece)
            await _chunk(self._send, sealed, self._result)

    async def finish(self, last: bytes = b"") -> None:
        final = self._encapsulator.finish(self._encoder.body(last) + self._encoder.end())
        await _chunk(self._send, final, self._result, more=False)

    async def error(self, error: GatewayError) -> None:
        # After a stall the rest of the request body may never come: the connection is done.
        await self._open(close=isinstance(error, BodyTimeout))
        encoded = bhttp.encode_response(inner_error(error))
        await _chunk(self._send, self._encapsulator.finish(encoded), self._result, more=False)

    async def abort(self) -> None:
        """End the outer response without a final chunk: the client sees a truncated stream."""
        await _chunk(self._send, b"", self._result, more=False)
