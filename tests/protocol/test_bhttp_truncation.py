"""RFC 9292 §3.8 truncation: each message is cut after every part, and each cut says why it is
valid or invalid. A valid cut decodes as if the missing sections were sent empty; every other cut
(including every cut inside a part) is invalid, whole and fed byte by byte."""

from __future__ import annotations

from dataclasses import replace

import pytest

from gateway.errors import BhttpError
from gateway.protocol.bhttp import (
    Event,
    InformationalResponse,
    Request,
    RequestDecoder,
    Response,
    ResponseDecoder,
    decode_request,
    decode_response,
)
from gateway.protocol.varint import encode_varint
from tests.support.bhttp_messages import decode_slices, line, merge_body, vec

REQUEST = Request(
    b"POST", b"https", b"", b"/x", ((b"a", b"1"), (b"b", b"2")), b"hello", ((b"t", b"x"),)
)
NO_TRAILERS = replace(REQUEST, trailers=())
NO_CONTENT = replace(NO_TRAILERS, content=b"")
NO_HEADERS = replace(NO_CONTENT, headers=())

# (bytes of one part, the message a cut right after it means, or None if invalid, and why)
Part = tuple[bytes, Request | Response | None, str]

KNOWN_LENGTH_REQUEST: list[Part] = [
    (b"\x00", None, "control data is not optional"),
    (vec(b"POST"), None, "inside the control data"),
    (vec(b"https"), None, "inside the control data"),
    (vec(b""), None, "inside the control data: path missing"),
    (vec(b"/x"), NO_HEADERS, "before the header section length: the rest is empty"),
    (encode_varint(8), None, "the section length promises 8 bytes"),
    (line(b"a", b"1"), None, "inside a known-length section"),
    (line(b"b", b"2"), NO_CONTENT, "before the content length"),
    (encode_varint(5), None, "the content length promises 5 bytes"),
    (b"hello", NO_TRAILERS, "before the trailer section length"),
    (encode_varint(4), None, "the section length promises 4 bytes"),
    (line(b"t", b"x"), REQUEST, "the whole message"),
    (b"\x00", REQUEST, "the whole message and zero padding"),
    (b"\x00", REQUEST, "the whole message and zero padding"),
]

INDETERMINATE_REQUEST: list[Part] = [
    (b"\x02" + vec(b"POST") + vec(b"https"), None, "inside the control data"),
    (vec(b"") + vec(b"/x"), NO_HEADERS, "before the header section: the rest is empty"),
    (line(b"a", b"1"), None, "inside a section: its terminator is missing"),
    (line(b"b", b"2"), None, "inside a section: its terminator is missing"),
    (b"\x00", NO_CONTENT, "header section ended; before the content"),
    (vec(b"hel"), None, "inside the content: the terminator is missing"),
    (vec(b"lo"), None, "inside the content: the terminator is missing"),
    (b"\x00", NO_TRAILERS, "content ended; before the trailer section"),
    (line(b"t", b"x"), None, "inside the trailer section: terminator missing"),
    (b"\x00", REQUEST, "the whole message"),
    (b"\x00", REQUEST, "the whole message and zero padding"),
]

EARLY_HINTS = InformationalResponse(103, ((b"link", b"</a>"),))
RESPONSE = Response(200, ((b"c", b"d"),), b"body", ((b"t", b"x"),), (EARLY_HINTS,))
R_NO_TRAILERS = replace(RESPONSE, trailers=())
R_NO_CONTENT = replace(R_NO_TRAILERS, content=b"")
R_NO_HEADERS = replace(R_NO_CONTENT, headers=())

KNOWN_LENGTH_RESPONSE: list[Part] = [
    (b"\x01", None, "a response needs a final status"),
    (encode_varint(103), None, "an informational response is not the final one"),
    (encode_varint(10), None, "the informational section length promises bytes"),
    (line(b"link", b"</a>"), None, "after an informational response: final status missing"),
    (encode_varint(200), R_NO_HEADERS, "after the final status (the RFC 9458 example cut)"),
    (vec(line(b"c", b"d")), R_NO_CONTENT, "before the content length"),
    (vec(b"body"), R_NO_TRAILERS, "before the trailer section length"),
    (vec(line(b"t", b"x")), RESPONSE, "the whole message"),
]

INDETERMINATE_RESPONSE: list[Part] = [
    (b"\x03" + encode_varint(103), None, "an informational response is not the final one"),
    (line(b"link", b"</a>"), None, "inside the informational section"),
    (b"\x00", None, "after an informational response: final status missing"),
    (encode_varint(200), R_NO_HEADERS, "after the final status, before its header section"),
    (line(b"c", b"d"), None, "inside the header section: terminator missing"),
    (b"\x00", R_NO_CONTENT, "header section ended; before the content"),
    (vec(b"body"), None, "inside the content: terminator missing"),
    (b"\x00", R_NO_TRAILERS, "content ended; before the trailer section"),
    (line(b"t", b"x"), None, "inside the trailer section: terminator missing"),
    (b"\x00", RESPONSE, "the whole message"),
]

CASES = {
    "known-length request": (KNOWN_LENGTH_REQUEST, False),
    "indeterminate request": (INDETERMINATE_REQUEST, False),
    "known-length response": (KNOWN_LENGTH_RESPONSE, True),
    "indeterminate response": (INDETERMINATE_RESPONSE, True),
}


def _expected_at_every_length(parts: list[Part]) -> dict[int, Request | Response | None]:
    """The meaning of each prefix length; lengths inside a part are invalid."""
    expected: dict[int, Request | Response | None] = {0: None}
    length = 0
    for data, meaning, _why in parts:
        for inside in range(length + 1, length + len(data)):
            expected[inside] = None
        length += len(data)
        expected[length] = meaning
    return expected


def _decode(data: bytes, is_response: bool) -> Request | Response:
    return decode_response(data) if is_response else decode_request(data)


def _decode_bytewise(data: bytes, is_response: bool) -> list[Event]:
    decoder = ResponseDecoder() if is_response else RequestDecoder()
    return merge_body(decode_slices(decoder, [data[i : i + 1] for i in range(len(data))]))


def _decode_whole(data: bytes, is_response: bool) -> list[Event]:
    decoder = ResponseDecoder() if is_response else RequestDecoder()
    return merge_body(decode_slices(decoder, [data]))


@pytest.mark.parametrize("name", CASES)
def test_every_cut(name: str) -> None:
    parts, is_response = CASES[name]
    message = b"".join(data for data, _, _ in parts)
    for length, meaning in _expected_at_every_length(parts).items():
        cut = message[:length]
        if meaning is None:
            with pytest.raises(BhttpError, match="truncated"):
                _decode(cut, is_response)
            with pytest.raises(BhttpError, match="truncated"):
                _decode_bytewise(cut, is_response)
        else:
            assert _decode(cut, is_response) == meaning, length
            assert _decode_bytewise(cut, is_response) == _decode_whole(cut, is_response)


@pytest.mark.parametrize("name", CASES)
def test_the_tables_have_valid_and_invalid_cuts(name: str) -> None:
    parts, _ = CASES[name]
    assert any(meaning is None for _, meaning, _ in parts)
    assert any(meaning is not None for _, meaning, _ in parts)
    assert parts[-1][1] is not None
