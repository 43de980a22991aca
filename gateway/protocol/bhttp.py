"""Binary HTTP (RFC 9292): the public API of the codec (docs/protocol-api.md).

Accepts and produces ``message/bhttp`` bytes in both framings, with informational responses,
trailers, §3.8 truncation and zero padding. Decoding is strict: whatever RFC 9292 §4 calls invalid
raises :class:`~gateway.errors.BhttpError`, a configured :class:`Limits` bound
:class:`~gateway.errors.BhttpLimitError`, and nothing else escapes. Knows nothing of encryption or
of any HTTP server.

The parts live in: ``bhttp_model`` (values and events), ``bhttp_rules`` (validity),
``bhttp_decoder`` (incremental decoding, which whole-message decoding reuses), ``bhttp_whole``
(the one-pass path for the common whole request) and ``bhttp_encoder``.
"""

from __future__ import annotations

from collections.abc import Iterable

from gateway.protocol.bhttp_decoder import RequestDecoder, ResponseDecoder
from gateway.protocol.bhttp_encoder import (
    RequestEncoder,
    ResponseEncoder,
    encode_request,
    encode_response,
)
from gateway.protocol.bhttp_model import (
    BodyChunk,
    Event,
    Field,
    Framing,
    InformationalHead,
    InformationalResponse,
    Limits,
    MessageEnd,
    Request,
    RequestHead,
    Response,
    ResponseHead,
    Trailers,
)
from gateway.protocol.bhttp_whole import decode_known_length_request

__all__ = [
    "CONNECTION_SPECIFIC_FIELDS",
    "BodyChunk",
    "Event",
    "Field",
    "Framing",
    "InformationalHead",
    "InformationalResponse",
    "Limits",
    "MessageEnd",
    "Request",
    "RequestDecoder",
    "RequestEncoder",
    "RequestHead",
    "Response",
    "ResponseDecoder",
    "ResponseEncoder",
    "ResponseHead",
    "Trailers",
    "decode_request",
    "decode_response",
    "encode_request",
    "encode_response",
    "strip_connection_fields",
]

_DEFAULT_LIMITS = Limits()


def _whole(decoder: RequestDecoder | ResponseDecoder, data: bytes) -> list[Event]:
    return decoder.feed(data) + decoder.finish()


def _content_and_trailers(events: list[Event]) -> tuple[bytes, tuple[Field, ...]]:
    content = b"".join(event.data for event in events if isinstance(event, BodyChunk))
    trailers = next((event.fields for event in events if isinstance(event, Trailers)), ())
    return content, trailers


def decode_request(data: bytes, limits: Limits = _DEFAULT_LIMITS) -> Request:
    """Decode a whole request; truncation (§3.8) and zero padding accepted."""
    straight = decode_known_length_request(data, limits)
    if straight is not None:
        return straight
    events = _whole(RequestDecoder(limits), data)
    head = next(event for event in events if isinstance(event, RequestHead))
    content, trailers = _content_and_trailers(events)
    return Request(
        head.method, head.scheme, head.authority, head.path, head.headers, content, trailers
    )


def decode_response(data: bytes, limits: Limits = _DEFAULT_LIMITS) -> Response:
    """Decode a whole response; truncation (§3.8) and zero padding accepted."""
    events = _whole(ResponseDecoder(limits), data)
    head = next(event for event in events if isinstance(event, ResponseHead))
    interim = tuple(
        InformationalResponse(event.status, event.headers)
        for event in events
        if isinstance(event, InformationalHead)
    )
    content, trailers = _content_and_trailers(events)
    return Response(head.status, head.headers, content, trailers, interim)


# RFC 9110 §7.6.1 and RFC 9113 §8.2.2: fields that concern one connection. RFC 9292 §3.6 says an
# encoder SHOULD drop them, and a gateway must not let them act on its own connections.
CONNECTION_SPECIFIC_FIELDS = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"te", b"transfer-encoding", b"upgrade"}
)


def strip_connection_fields(fields: Iterable[Field]) -> tuple[Field, ...]:
    """``fields`` without connection-specific ones, including those named in ``connection``."""
    fields = tuple(fields)
    named = {
        token.strip().lower().encode("latin-1")
        for name, value in fields
        if name == b"connection"
        for token in value.decode("latin-1").split(",")
    }
    dropped = CONNECTION_SPECIFIC_FIELDS | named
    return tuple(field for field in fields if field[0] not in dropped)
