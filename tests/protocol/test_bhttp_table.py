"""One table of (message, framing, padding, exact bytes) drives both encoder and decoder (h11's
test_io.py style), and a second table of non-canonical encodings drives the decoder alone."""

from __future__ import annotations

import pytest

from gateway.protocol.bhttp import (
    Framing,
    InformationalResponse,
    Request,
    Response,
    decode_request,
    decode_response,
    encode_request,
    encode_response,
)
from tests.support.bhttp_messages import request_events, response_events

KL = Framing.KNOWN_LENGTH
IL = Framing.INDETERMINATE_LENGTH

GET = Request(b"GET", b"https", b"a.example", b"/")
GET_CONTROL = "03474554 056874747073 09612e6578616d706c65 012f"
POST = Request(b"POST", b"https", b"", b"/x", ((b"a", b"1"),), b"hi", ((b"t", b""),))
POST_CONTROL = "04504f5354 056874747073 00 022f78"
BIG = Request(b"PUT", b"http", b"h", b"/", (), b"x" * 64)
EARLY_HINTS = Response(404, (), b"no!", (), (InformationalResponse(103, ((b"l", b"<>"),)),))

TABLE: list[tuple[Request | Response, Framing, int, str]] = [
    # framing indicator, control data, then header section, content, trailer section
    (GET, KL, 0, f"00 {GET_CONTROL} 00 00 00"),
    (GET, IL, 0, f"02 {GET_CONTROL} 00 00 00"),
    (GET, KL, 4, f"00 {GET_CONTROL} 00 00 00 00000000"),
    (POST, KL, 0, f"00 {POST_CONTROL} 04 0161 0131 02 6869 03 0174 00"),
    (POST, IL, 0, f"02 {POST_CONTROL} 0161 0131 00 02 6869 00 0174 00 00"),
    (BIG, KL, 0, "00 03505554 0468747470 0168 012f 00 4040" + "78" * 64 + "00"),
    (BIG, IL, 0, "02 03505554 0468747470 0168 012f 00 4040" + "78" * 64 + "00 00"),
    # status codes are varints: 204 is 40cc, 100 is 4064, 103 is 4067, 404 is 4194
    (Response(204), KL, 0, "01 40cc 00 00 00"),
    (Response(204), IL, 2, "03 40cc 00 00 00 0000"),
    (Response(200, informational=(InformationalResponse(100),)), IL, 0, "03 4064 00 40c8 00 00 00"),
    (EARLY_HINTS, KL, 0, "01 4067 05 016c 023c3e 4194 00 03 6e6f21 00"),
    (EARLY_HINTS, IL, 0, "03 4067 016c 023c3e 00 4194 00 03 6e6f21 00 00"),
]


def _hex(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


def _byte_slices(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


@pytest.mark.parametrize(("message", "framing", "padding", "wire"), TABLE)
def test_encoder_writes_exact_bytes(
    message: Request | Response, framing: Framing, padding: int, wire: str
) -> None:
    if isinstance(message, Request):
        assert encode_request(message, framing, padding) == _hex(wire)
    else:
        assert encode_response(message, framing, padding) == _hex(wire)


@pytest.mark.parametrize(("message", "framing", "padding", "wire"), TABLE)
def test_decoder_reads_exact_bytes(
    message: Request | Response, framing: Framing, padding: int, wire: str
) -> None:
    data = _hex(wire)
    if isinstance(message, Request):
        assert decode_request(data) == message
        assert request_events(data, _byte_slices(data)) == request_events(data)
    else:
        assert decode_response(data) == message
        assert response_events(data, _byte_slices(data)) == response_events(data)


NON_CANONICAL: list[tuple[Request | Response, str, str]] = [
    (GET, "00 " + GET_CONTROL, "truncated after control data (§3.8)"),
    (GET, "02 " + GET_CONTROL + " 00", "indeterminate, truncated after the header section"),
    (GET, "4000 4003474554 056874747073 09612e6578616d706c65 012f", "non-minimal varints"),
    (GET, f"00 {GET_CONTROL} 4000 800000 00 0000", "non-minimal lengths, zero padding"),
    (POST, f"02 {POST_CONTROL} 0161 0131 00 0168 0169 00 0174 00 00", "content in two chunks"),
    (POST, f"02 {POST_CONTROL} 0161 0131 00 400268 69 00 0174 00 00", "non-minimal chunk length"),
    (Response(200), "01 40c8", "truncated after the final status (RFC 9458 example)"),
    (Response(200), "01 800000c8 00", "non-minimal status"),
    (Response(200), "03 40c8 00 00", "indeterminate, no trailer section"),
]


@pytest.mark.parametrize(("message", "wire", "why"), NON_CANONICAL)
def test_decoder_accepts_non_canonical(message: Request | Response, wire: str, why: str) -> None:
    data = _hex(wire)
    if isinstance(message, Request):
        assert decode_request(data) == message, why
    else:
        assert decode_response(data) == message, why
