"""Every way RFC 9292 §4 (with RFC 9113 §8.2.1 and §8.3.1) makes a message invalid, one test each,
in both framings where the framing matters. Messages are built by hand, around the encoder, whose
own refusals are tested at the end."""

from __future__ import annotations

import pytest

from gateway.errors import BhttpError, BhttpLimitError
from gateway.protocol.bhttp import (
    Framing,
    InformationalResponse,
    Request,
    RequestDecoder,
    Response,
    decode_request,
    decode_response,
    encode_request,
    encode_response,
)
from gateway.protocol.varint import encode_varint
from tests.support.bhttp_messages import line, vec


def control(
    method: bytes = b"GET", scheme: bytes = b"https", authority: bytes = b"", path: bytes = b"/"
) -> bytes:
    return vec(method) + vec(scheme) + vec(authority) + vec(path)


def request(headers: bytes = b"", trailers: bytes = b"", known: bool = True, **ctl: bytes) -> bytes:
    """A request with raw field lines ``headers`` and ``trailers`` and content ``c``."""
    if known:
        return b"\x00" + control(**ctl) + vec(headers) + vec(b"c") + vec(trailers)
    return b"\x02" + control(**ctl) + headers + b"\x00" + vec(b"c") + b"\x00" + trailers + b"\x00"


def response(status: int = 200, headers: bytes = b"", known: bool = True) -> bytes:
    if known:
        return b"\x01" + encode_varint(status) + vec(headers) + b"\x00\x00"
    return b"\x03" + encode_varint(status) + headers + b"\x00\x00\x00"


KNOWN = pytest.mark.parametrize("known", [True, False], ids=["known", "indeterminate"])


def test_builders_make_valid_messages() -> None:
    # the baseline each invalid case departs from
    for known in (True, False):
        assert decode_request(request(line(b"a"), line(b"b"), known)).content == b"c"
        assert decode_response(response(200, line(b"a"), known)).status == 200


# --- framing indicator (§3.3) ------------------------------------------------------------------


@pytest.mark.parametrize("indicator", [4, 5, 63, 16383])
def test_unknown_framing_indicator(indicator: int) -> None:
    data = encode_varint(indicator) + request()[1:]
    with pytest.raises(BhttpError, match="framing indicator"):
        decode_request(data)
    with pytest.raises(BhttpError, match="framing indicator"):
        decode_response(data)


@pytest.mark.parametrize("indicator", [1, 3])
def test_response_indicator_given_to_request_decoder(indicator: int) -> None:
    with pytest.raises(BhttpError, match="framing indicator"):
        decode_request(bytes([indicator]) + request()[1:])


@pytest.mark.parametrize("indicator", [0, 2])
def test_request_indicator_given_to_response_decoder(indicator: int) -> None:
    with pytest.raises(BhttpError, match="framing indicator"):
        decode_response(bytes([indicator]) + response()[1:])


# --- pseudo-fields (§3.6) -----------------------------------------------------------------------

PSEUDO = [b":method", b":scheme", b":authority", b":path", b":status", b":protocol", b":"]


@KNOWN
@pytest.mark.parametrize("name", PSEUDO)
def test_pseudo_field_in_headers(name: bytes, known: bool) -> None:
    with pytest.raises(BhttpError, match="pseudo-field"):
        decode_request(request(line(name), known=known))


@KNOWN
@pytest.mark.parametrize("name", PSEUDO)
def test_pseudo_field_in_trailers(name: bytes, known: bool) -> None:
    with pytest.raises(BhttpError, match="pseudo-field"):
        decode_request(request(trailers=line(name), known=known))


@KNOWN
def test_pseudo_field_after_regular_field(known: bool) -> None:
    with pytest.raises(BhttpError, match="pseudo-field"):
        decode_request(request(line(b"a") + line(b":path", b"/"), known=known))


@KNOWN
def test_status_pseudo_field_in_response(known: bool) -> None:
    with pytest.raises(BhttpError, match="pseudo-field"):
        decode_response(response(200, line(b":status", b"200"), known))


def test_pseudo_field_in_informational_response() -> None:
    data = b"\x01" + encode_varint(103) + vec(line(b":status")) + encode_varint(200)
    with pytest.raises(BhttpError, match="pseudo-field"):
        decode_response(data)


# --- field names (RFC 9110 §5.1, RFC 9113 §8.2.1) ------------------------------------------------


@KNOWN
@pytest.mark.parametrize("name", [b"Host", b"content-Type", b"X", b"ACCEPT"])
def test_uppercase_field_name(name: bytes, known: bool) -> None:
    with pytest.raises(BhttpError, match="invalid field name"):
        decode_request(request(line(name), known=known))


@KNOWN
@pytest.mark.parametrize(
    "name",
    [b"a b", b" a", b"a\t", b"a\x00", b"a\r\nb", b"a:b", b"a(b)", b"caf\xc3\xa9", b'a"', b"\x7f"],
)
def test_invalid_byte_in_field_name(name: bytes, known: bool) -> None:
    with pytest.raises(BhttpError, match="invalid field name"):
        decode_request(request(line(name), known=known))


def test_empty_field_name_in_known_length_section() -> None:
    # In the indeterminate-length form a zero name length is the section terminator instead.
    with pytest.raises(BhttpError, match="empty field name"):
        decode_request(request(line(b"")))


def test_zero_name_length_ends_an_indeterminate_section() -> None:
    # "00 01 76" after a field: terminator, then the content starts with a 1-byte chunk
    data = b"\x02" + control() + line(b"a") + b"\x00" + vec(b"v") + b"\x00\x00"
    assert decode_request(data) == Request(b"GET", b"https", b"", b"/", ((b"a", b"v"),), b"v")


# --- field values (RFC 9113 §8.2.1) --------------------------------------------------------------


@KNOWN
@pytest.mark.parametrize(
    "value", [b"a\x00b", b"a\rb", b"a\nb", b"\r\n", b" a", b"a ", b"\ta", b"a\t", b" "]
)
def test_invalid_field_value(value: bytes, known: bool) -> None:
    with pytest.raises(BhttpError, match="invalid field value"):
        decode_request(request(line(b"a", value), known=known))


@KNOWN
def test_invalid_trailer_value(known: bool) -> None:
    with pytest.raises(BhttpError, match="invalid field value"):
        decode_request(request(trailers=line(b"t", b"x\n"), known=known))


@pytest.mark.parametrize("value", [b"", b"a b", b"\x80\xff", b"a\tb", b'"q"'])
def test_field_values_that_are_valid(value: bytes) -> None:
    assert decode_request(request(line(b"a", value))).headers == ((b"a", value),)


# --- control data (RFC 9292 §3.4, RFC 9113 §8.3.1) -----------------------------------------------


@pytest.mark.parametrize(
    ("ctl", "message"),
    [
        ({"method": b""}, "invalid method"),
        ({"method": b"GE T"}, "invalid method"),
        ({"method": b"GET\x00"}, "invalid method"),
        ({"scheme": b""}, "invalid scheme"),
        ({"scheme": b"1http"}, "invalid scheme"),
        ({"scheme": b"ht tp"}, "invalid scheme"),
        ({"authority": b"a b"}, "invalid authority"),
        ({"authority": b"a\x00"}, "invalid authority"),
        ({"path": b""}, "invalid path"),
        ({"path": b"x"}, "invalid path"),
        ({"path": b"/a b"}, "invalid path"),
        ({"path": b"/\xc3\xa9"}, "invalid path"),
        ({"path": b"/\r\n"}, "invalid path"),
    ],
)
def test_invalid_control_data(ctl: dict[str, bytes], message: str) -> None:
    with pytest.raises(BhttpError, match=message):
        decode_request(request(**ctl))


def test_connect_may_have_empty_scheme_and_path() -> None:
    data = request(method=b"CONNECT", scheme=b"", authority=b"h:443", path=b"")
    assert decode_request(data).authority == b"h:443"


def test_options_asterisk_path() -> None:
    assert decode_request(request(method=b"OPTIONS", path=b"*")).path == b"*"


# --- status codes (§3.5) ----------------------------------------------------------------------


@KNOWN
@pytest.mark.parametrize("status", [0, 1, 99, 600, 999, 1000, 2**62 - 1])
def test_status_out_of_range(status: int, known: bool) -> None:
    with pytest.raises(BhttpError, match="status out of range"):
        decode_response(response(status, known=known))


@pytest.mark.parametrize("status", [600, 99])
def test_status_out_of_range_after_informational(status: int) -> None:
    data = b"\x03" + encode_varint(100) + b"\x00" + encode_varint(status) + b"\x00\x00\x00"
    with pytest.raises(BhttpError, match="status out of range"):
        decode_response(data)


@pytest.mark.parametrize("status", [100, 101, 102, 103, 150, 199])
def test_1xx_where_a_final_status_might_be_is_informational(status: int) -> None:
    data = b"\x01" + encode_varint(status) + b"\x00" + response(204)[1:]
    decoded = decode_response(data)
    assert decoded.informational == (InformationalResponse(status),)
    assert decoded.status == 204


@pytest.mark.parametrize("status", [200, 204, 304, 404, 599])
def test_final_statuses(status: int) -> None:
    assert decode_response(response(status)).status == status


# --- padding (§3.8) ---------------------------------------------------------------------------


@KNOWN
@pytest.mark.parametrize("padding", [b"\x01", b"\x00\x00\x80", b"\x00" * 100 + b"\xff"])
def test_non_zero_padding(padding: bytes, known: bool) -> None:
    with pytest.raises(BhttpError, match="non-zero padding"):
        decode_request(request(known=known) + padding)
    with pytest.raises(BhttpError, match="non-zero padding"):
        decode_response(response(known=known) + padding)


def test_non_zero_padding_in_a_later_slice() -> None:
    decoder = RequestDecoder()
    decoder.feed(request() + b"\x00\x00")
    with pytest.raises(BhttpError, match="non-zero padding"):
        decoder.feed(b"\x00\x07")


# --- framing errors -------------------------------------------------------------------------------


def test_field_line_overruns_known_length_section() -> None:
    # the section says 3 bytes; the line inside claims a 5-byte value
    data = b"\x00" + control() + b"\x03\x01a\x05" + b"vvvvv" + b"\x00\x00"
    with pytest.raises(BhttpError, match="overruns"):
        decode_request(data)


def test_value_length_prefix_cut_by_known_length_section() -> None:
    data = b"\x00" + control() + b"\x02\x01a" + b"\x01v\x00\x00"
    with pytest.raises(BhttpError, match="overruns"):
        decode_request(data)


def test_zero_chunk_length_is_the_content_terminator() -> None:
    # chunk "hi", terminator, then what follows is the trailer section: "hi" with an empty value
    data = b"\x02" + control() + b"\x00" + vec(b"hi") + b"\x00" + vec(b"hi") + b"\x00\x00"
    decoded = decode_request(data)
    assert decoded.content == b"hi"
    assert decoded.trailers == ((b"hi", b""),)


def test_empty_input() -> None:
    with pytest.raises(BhttpError, match="truncated"):
        decode_request(b"")
    with pytest.raises(BhttpError, match="truncated"):
        decode_response(b"")


def test_bhttp_limit_error_is_a_bhttp_error() -> None:
    # callers catching BhttpError see limit violations too
    assert issubclass(BhttpLimitError, BhttpError)


# --- the encoders refuse what the decoders refuse ------------------------------------------------

BAD_FIELDS = [(b":path", b"/"), (b"Host", b"h"), (b"", b"v"), (b"a b", b"v"), (b"a", b"x\r\n")]


@pytest.mark.parametrize("framing", list(Framing))
@pytest.mark.parametrize("field", BAD_FIELDS)
def test_encoder_refuses_invalid_fields(field: tuple[bytes, bytes], framing: Framing) -> None:
    with pytest.raises(BhttpError):
        encode_request(Request(b"GET", b"https", b"", b"/", (field,)), framing)
    with pytest.raises(BhttpError):
        encode_response(Response(200, trailers=(field,)), framing)


@pytest.mark.parametrize(
    "bad",
    [
        Response(99),
        Response(600),
        Response(150),
        Response(200, informational=(InformationalResponse(200),)),
    ],
)
def test_encoder_refuses_status_out_of_range(bad: Response) -> None:
    with pytest.raises(BhttpError, match="status out of range"):
        encode_response(bad)


def test_encoder_refuses_invalid_control_data_and_negative_padding() -> None:
    with pytest.raises(BhttpError, match="invalid path"):
        encode_request(Request(b"GET", b"https", b"", b"no-slash"))
    with pytest.raises(BhttpError, match="padding"):
        encode_request(Request(b"GET", b"https", b"", b"/"), padding=-1)
