"""Limits: each is enforced in both framings, as soon as the offending length is read (before the
excess is buffered), with a clear fixed message; exactly-at-the-limit passes."""

from __future__ import annotations

import pytest

from gateway.errors import BhttpLimitError, ConfigError
from gateway.protocol.bhttp import (
    Framing,
    InformationalResponse,
    Limits,
    Request,
    RequestDecoder,
    Response,
    ResponseDecoder,
    decode_request,
    decode_response,
    encode_request,
    encode_response,
)
from gateway.protocol.varint import encode_varint

BOTH = pytest.mark.parametrize("framing", list(Framing))
GET = Request(b"GET", b"https", b"", b"/")
CONTROL = b"\x03GET\x05https\x00\x01/"


def _with_headers(count: int, value_size: int = 1) -> Request:
    return Request(b"GET", b"https", b"", b"/", ((b"h", b"v" * value_size),) * count)


def test_defaults_are_sane() -> None:
    limits = Limits()
    assert limits.max_field_section_size == 64 * 1024
    assert limits.max_fields == 256
    assert limits.max_content_length == 32 * 1024 * 1024
    assert limits.max_informational == 16
    assert limits.max_control_data_size == 8 * 1024


@pytest.mark.parametrize("bad", [{"max_fields": -1}, {"max_content_length": True}])
def test_invalid_limits_are_refused(bad: dict[str, int]) -> None:
    with pytest.raises(ConfigError):
        Limits(**bad)


@BOTH
def test_field_count(framing: Framing) -> None:
    limits = Limits(max_fields=3)
    assert len(decode_request(encode_request(_with_headers(3), framing), limits).headers) == 3
    with pytest.raises(BhttpLimitError, match="field count limit"):
        decode_request(encode_request(_with_headers(4), framing), limits)


@BOTH
def test_field_count_applies_to_trailers(framing: Framing) -> None:
    trailers = ((b"t", b""),) * 3
    wire = encode_response(Response(200, trailers=trailers), framing)
    with pytest.raises(BhttpLimitError, match="field count limit"):
        decode_response(wire, Limits(max_fields=2))


@BOTH
def test_field_section_size_counts_encoded_lines_in_both_framings(framing: Framing) -> None:
    # one line: 1 (name length) + 1 (name) + 1 (value length) + 10 (value) = 13 bytes
    wire = encode_request(_with_headers(2, value_size=10), framing)
    assert decode_request(wire, Limits(max_field_section_size=26)).headers
    with pytest.raises(BhttpLimitError, match="field section exceeds the size limit"):
        decode_request(wire, Limits(max_field_section_size=25))


def test_known_length_section_refused_on_its_length_prefix() -> None:
    decoder = RequestDecoder(Limits(max_field_section_size=1000))
    with pytest.raises(BhttpLimitError, match="size limit"):
        decoder.feed(b"\x00" + CONTROL + encode_varint(1001))  # no section bytes sent


def test_indeterminate_name_refused_on_its_length_prefix() -> None:
    decoder = RequestDecoder(Limits(max_field_section_size=1000))
    with pytest.raises(BhttpLimitError, match="size limit"):
        decoder.feed(b"\x02" + CONTROL + encode_varint(2000))


def test_indeterminate_value_refused_on_its_length_prefix() -> None:
    decoder = RequestDecoder(Limits(max_field_section_size=1000))
    decoder.feed(b"\x02" + CONTROL + b"\x01a")
    with pytest.raises(BhttpLimitError, match="size limit"):
        decoder.feed(encode_varint(2**40))


def test_informational_section_size_is_limited_too() -> None:
    interim = InformationalResponse(103, ((b"link", b"x" * 100),))
    wire = encode_response(Response(200, informational=(interim,)))
    with pytest.raises(BhttpLimitError, match="size limit"):
        decode_response(wire, Limits(max_field_section_size=50))


@BOTH
def test_content_length(framing: Framing) -> None:
    limits = Limits(max_content_length=100)
    wire = encode_request(Request(b"PUT", b"https", b"", b"/", content=b"x" * 100), framing)
    assert len(decode_request(wire, limits).content) == 100
    wire = encode_request(Request(b"PUT", b"https", b"", b"/", content=b"x" * 101), framing)
    with pytest.raises(BhttpLimitError, match="content exceeds the length limit"):
        decode_request(wire, limits)


def test_known_length_content_refused_on_its_length_prefix() -> None:
    decoder = RequestDecoder(Limits(max_content_length=10))
    with pytest.raises(BhttpLimitError, match="length limit"):
        decoder.feed(b"\x00" + CONTROL + b"\x00" + encode_varint(2**62 - 1))


def test_indeterminate_chunks_add_up() -> None:
    decoder = ResponseDecoder(Limits(max_content_length=10))
    decoder.feed(b"\x03\x40\xc8\x00" + encode_varint(6) + b"x" * 6)
    with pytest.raises(BhttpLimitError, match="length limit"):
        decoder.feed(encode_varint(5))  # refused before any of its 5 bytes arrive


def test_informational_count() -> None:
    interim = (InformationalResponse(100),) * 3
    wire = encode_response(Response(200, informational=interim))
    assert len(decode_response(wire, Limits(max_informational=3)).informational) == 3
    with pytest.raises(BhttpLimitError, match="too many informational responses"):
        decode_response(wire, Limits(max_informational=2))


def test_control_data_size() -> None:
    wire = encode_request(Request(b"GET", b"https", b"a" * 20, b"/"))
    assert decode_request(wire, Limits(max_control_data_size=29)).authority == b"a" * 20
    with pytest.raises(BhttpLimitError, match="control data exceeds the size limit"):
        decode_request(wire, Limits(max_control_data_size=28))


def test_control_data_refused_on_its_length_prefix() -> None:
    decoder = RequestDecoder(Limits(max_control_data_size=100))
    with pytest.raises(BhttpLimitError, match="control data"):
        decoder.feed(b"\x00" + encode_varint(101))


def test_limit_errors_answer_413_after_decapsulation() -> None:
    error = BhttpLimitError("content exceeds the length limit")
    assert error.status == 413
    assert error.phase.value == "after"
