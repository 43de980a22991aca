"""A test-only OHTTP client over real sockets: the protocol core's client side plus aiohttp.

Every helper sends one outer request to a running gateway and returns what came back, decrypted
where it was encrypted, with enough detail (outer status and headers, inner response, chunk
arrival times) for tests to assert on the wire behaviour.
"""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import AsyncIterable, Sequence
from dataclasses import dataclass, field

import aiohttp

from gateway.protocol import bhttp, ohttp
from gateway.protocol.azure_profile import AzureResponseDecapsulator
from gateway.protocol.chunked import ChunkedRequestEncapsulator
from gateway.protocol.keys import KeyConfig, SymmetricSuite, decode_key_configs

Field = tuple[bytes, bytes]


@dataclass
class Answer:
    """One exchange: the outer response and, when it was encapsulated, the inner one."""

    status: int
    headers: dict[str, str]
    body: bytes = b""
    inner: bhttp.Response | None = None
    # Chunked responses: (seconds since the request started, decrypted BHTTP bytes) per chunk.
    arrivals: list[tuple[float, bytes]] = field(default_factory=list)

    @property
    def encrypted(self) -> bool:
        return self.inner is not None


def inner_request(
    path: bytes = b"/v1/audio/transcriptions",
    content: bytes = b"audio",
    headers: Sequence[Field] = (),
    method: bytes = b"POST",
) -> bhttp.Request:
    fields = (
        (b"content-type", b"application/octet-stream"),
        (b"authorization", b"Bearer inner-token"),
        *headers,
    )
    return bhttp.Request(method, b"https", b"whisper.invalid", path, fields, content)


async def key_configs(session: aiohttp.ClientSession, base_url: str) -> list[KeyConfig]:
    async with session.get(base_url + "/.well-known/ohttp-gateway") as response:
        assert response.status == 200
        return decode_key_configs(await response.read())


def _payload(data: bytes) -> bytes | io.BytesIO:
    return io.BytesIO(data) if len(data) > 1 << 20 else data


def _headers(response: aiohttp.ClientResponse) -> dict[str, str]:
    return {name.lower(): value for name, value in response.headers.items()}


async def post_plain(
    session: aiohttp.ClientSession,
    url: str,
    config: KeyConfig,
    suite: SymmetricSuite,
    request: bhttp.Request,
    media_type: str = "message/ohttp-req",
) -> Answer:
    """RFC 9458: one encapsulated request, one encapsulated response (or a clear error)."""
    encapsulated, context = ohttp.encapsulate_request(config, suite, bhttp.encode_request(request))
    outer = {"content-type": media_type}
    async with session.post(url, data=_payload(encapsulated), headers=outer) as response:
        body = await response.read()
        answer = Answer(response.status, _headers(response), body)
    if answer.headers.get("content-type") == "message/ohttp-res":
        answer.inner = bhttp.decode_response(context.decapsulate_response(body))
    return answer


async def post_azure(
    session: aiohttp.ClientSession,
    url: str,
    config: KeyConfig,
    suite: SymmetricSuite,
    request: bhttp.Request,
) -> Answer:
    """Microsoft's profile: plain request; status in the clear, raw body in Azure framing."""
    encapsulated, context = ohttp.encapsulate_request(config, suite, bhttp.encode_request(request))
    outer = {"content-type": "message/ohttp-chunked-req"}
    async with session.post(url, data=_payload(encapsulated), headers=outer) as response:
        answer = Answer(response.status, _headers(response))
        raw = await response.read()
    if answer.headers.get("content-type") == "message/ohttp-chunked-res":
        decapsulator = AzureResponseDecapsulator(context)
        answer.body = b"".join(decapsulator.feed(raw)) + b"".join(decapsulator.finish())
        answer.inner = bhttp.Response(answer.status, (), answer.body)
    else:
        answer.body = raw
    return answer


async def _chunked_body(
    encapsulator: ChunkedRequestEncapsulator,
    request: bhttp.Request,
    pieces: AsyncIterable[bytes] | None,
    split_first: int | None = None,
) -> AsyncIterable[bytes]:
    encoder = bhttp.RequestEncoder()
    head = encoder.head(
        request.method, request.scheme, request.authority, request.path, request.headers
    )
    first = encapsulator.start() + encapsulator.encapsulate_chunk(head)
    step = split_first or len(first)
    for start in range(0, len(first), step):
        if start:
            await asyncio.sleep(0.01)  # separate writes, so the gateway reads separate pieces
        yield first[start : start + step]
    if pieces is None:
        if request.content:
            yield encapsulator.encapsulate_chunk(encoder.body(request.content))
    else:
        async for piece in pieces:
            yield encapsulator.encapsulate_chunk(encoder.body(piece))
    yield encapsulator.finish(encoder.end())


async def post_chunked(
    session: aiohttp.ClientSession,
    url: str,
    config: KeyConfig,
    suite: SymmetricSuite,
    request: bhttp.Request,
    pieces: AsyncIterable[bytes] | None = None,
    *,
    split_first: int | None = None,
) -> Answer:
    """Chunked OHTTP: the request streams up, the response is decrypted chunk by chunk.
    ``split_first``: send the stream's first bytes (hdr, enc, the head) in pieces this long."""
    encapsulator = ChunkedRequestEncapsulator(config, suite)
    decapsulator = encapsulator.response_decapsulator()
    outer = {"content-type": "message/ohttp-chunked-req", "incremental": "?1"}
    started = time.monotonic()
    body = _chunked_body(encapsulator, request, pieces, split_first)
    async with session.post(url, data=body, headers=outer) as response:
        answer = Answer(response.status, _headers(response))
        if answer.headers.get("content-type") != "message/ohttp-chunked-res":
            answer.body = await response.read()
            return answer
        decoder = bhttp.ResponseDecoder()
        events: list[bhttp.Event] = []
        async for data in response.content.iter_any():
            for plaintext in decapsulator.feed(data):
                answer.arrivals.append((time.monotonic() - started, plaintext))
                events.extend(decoder.feed(plaintext))
    for plaintext in decapsulator.finish():
        answer.arrivals.append((time.monotonic() - started, plaintext))
        events.extend(decoder.feed(plaintext))
    events.extend(decoder.finish())
    answer.inner = _response_from(events)
    return answer


def _response_from(events: list[bhttp.Event]) -> bhttp.Response:
    head = next(e for e in events if isinstance(e, bhttp.ResponseHead))
    content = b"".join(e.data for e in events if isinstance(e, bhttp.BodyChunk))
    return bhttp.Response(head.status, head.headers, content)


def header(response: bhttp.Response, name: bytes) -> bytes | None:
    return next((value for key, value in response.headers if key == name), None)
