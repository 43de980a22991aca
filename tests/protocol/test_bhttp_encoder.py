"""The streaming encoders (exact bytes, order of use) and the connection-field helper."""

from __future__ import annotations

import pytest

from gateway.errors import BhttpError
from gateway.protocol.bhttp import (
    CONNECTION_SPECIFIC_FIELDS,
    Framing,
    InformationalResponse,
    Request,
    RequestEncoder,
    Response,
    ResponseEncoder,
    decode_response,
    encode_request,
    encode_response,
    strip_connection_fields,
)


def test_request_encoder_exact_bytes() -> None:
    encoder = RequestEncoder()
    wire = encoder.head(b"POST", b"https", b"", b"/x", [(b"a", b"1")])
    assert wire == bytes.fromhex("02 04504f5354 056874747073 00 022f78 0161 0131 00")
    assert encoder.body(b"hi") == bytes.fromhex("02 6869")
    assert encoder.body(b"") == b""  # an empty chunk would be read as the terminator
    assert encoder.end([(b"t", b"")], padding=2) == bytes.fromhex("00 0174 00 00 0000")


def test_streamed_request_equals_the_whole_message_encoding() -> None:
    request = Request(b"POST", b"https", b"", b"/x", ((b"a", b"1"),), b"hi", ((b"t", b""),))
    encoder = RequestEncoder()
    head = encoder.head(
        request.method, request.scheme, request.authority, request.path, request.headers
    )
    wire = head + encoder.body(request.content) + encoder.end(request.trailers)
    assert wire == encode_request(request, Framing.INDETERMINATE_LENGTH)


def test_response_encoder_with_informational_responses() -> None:
    encoder = ResponseEncoder()
    wire = encoder.informational(100) + encoder.informational(103, [(b"link", b"</a>")])
    wire += encoder.head(200, [(b"content-type", b"text/event-stream")])
    wire += encoder.body(b"data: 1\n\n") + encoder.body(b"data: 2\n\n") + encoder.end()
    expected = Response(
        200,
        ((b"content-type", b"text/event-stream"),),
        b"data: 1\n\ndata: 2\n\n",
        (),
        (InformationalResponse(100), InformationalResponse(103, ((b"link", b"</a>"),))),
    )
    assert decode_response(wire) == expected
    assert wire.startswith(b"\x03\x40\x64")  # one framing indicator, then status 100


def test_response_encoder_without_informational() -> None:
    encoder = ResponseEncoder()
    wire = encoder.head(204) + encoder.end()
    assert wire == encode_response(Response(204), Framing.INDETERMINATE_LENGTH)


def test_out_of_order_use_is_refused() -> None:
    with pytest.raises(BhttpError, match="out of order"):
        RequestEncoder().body(b"x")
    with pytest.raises(BhttpError, match="out of order"):
        ResponseEncoder().end()
    encoder = ResponseEncoder()
    encoder.head(200)
    with pytest.raises(BhttpError, match="out of order"):
        encoder.head(200)
    with pytest.raises(BhttpError, match="out of order"):
        encoder.informational(100)
    encoder.end()
    with pytest.raises(BhttpError, match="out of order"):
        encoder.end()
    with pytest.raises(BhttpError, match="out of order"):
        encoder.body(b"late")


def test_a_refused_head_leaves_the_encoder_usable() -> None:
    encoder = ResponseEncoder()
    with pytest.raises(BhttpError, match="status out of range"):
        encoder.head(700)
    with pytest.raises(BhttpError, match="invalid field name"):
        encoder.head(200, [(b"Content-Type", b"x")])
    with pytest.raises(BhttpError, match="status out of range"):
        encoder.informational(200)
    assert decode_response(encoder.head(200) + encoder.end()).status == 200


def test_stream_encoder_refuses_invalid_trailers() -> None:
    encoder = RequestEncoder()
    encoder.head(b"GET", b"https", b"", b"/", [])
    with pytest.raises(BhttpError, match="pseudo-field"):
        encoder.end([(b":status", b"200")])


def test_strip_connection_fields() -> None:
    fields = [
        (b"connection", b"close, X-Custom"),
        (b"x-custom", b"1"),
        (b"keep-alive", b"timeout=5"),
        (b"transfer-encoding", b"chunked"),
        (b"te", b"trailers"),
        (b"upgrade", b"h2c"),
        (b"proxy-connection", b"keep-alive"),
        (b"content-type", b"audio/wav"),
        (b"x-other", b"2"),
    ]
    assert strip_connection_fields(fields) == ((b"content-type", b"audio/wav"), (b"x-other", b"2"))
    assert b"connection" in CONNECTION_SPECIFIC_FIELDS
