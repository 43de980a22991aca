"""The incremental decoders: event order, streaming without buffering content, input types, and
refusing use after an error or after finish()."""

from __future__ import annotations

import pytest

from gateway.errors import BhttpError
from gateway.protocol.bhttp import (
    BodyChunk,
    Framing,
    InformationalHead,
    MessageEnd,
    Request,
    RequestDecoder,
    RequestHead,
    Response,
    ResponseDecoder,
    ResponseHead,
    Trailers,
    encode_request,
    encode_response,
)
from tests.support.bhttp_messages import SAMPLE_REQUEST, SAMPLE_RESPONSE

KL = Framing.KNOWN_LENGTH
IL = Framing.INDETERMINATE_LENGTH


@pytest.mark.parametrize("framing", [KL, IL])
def test_response_event_order(framing: Framing) -> None:
    decoder = ResponseDecoder()
    events = decoder.feed(encode_response(SAMPLE_RESPONSE, framing)) + decoder.finish()
    assert [type(event) for event in events] == [
        InformationalHead,
        ResponseHead,
        BodyChunk,
        Trailers,
        MessageEnd,
    ]
    assert events[0] == InformationalHead(103, ((b"link", b"</a>"),))
    assert events[1] == ResponseHead(200, SAMPLE_RESPONSE.headers, framing)
    assert events[3] == Trailers(SAMPLE_RESPONSE.trailers)
    assert decoder.framing is framing
    assert decoder.ended


@pytest.mark.parametrize("framing", [KL, IL])
def test_message_end_arrives_with_the_last_byte_not_at_finish(framing: Framing) -> None:
    decoder = RequestDecoder()
    events = decoder.feed(encode_request(SAMPLE_REQUEST, framing))
    assert events[-1] == MessageEnd()
    assert decoder.finish() == []


def test_empty_trailers_emit_no_trailers_event() -> None:
    decoder = RequestDecoder()
    events = decoder.feed(encode_request(Request(b"GET", b"https", b"", b"/"), IL))
    assert [type(event) for event in events] == [RequestHead, MessageEnd]


@pytest.mark.parametrize("framing", [KL, IL])
def test_head_comes_out_before_the_content(framing: Framing) -> None:
    wire = encode_request(Request(b"PUT", b"https", b"h", b"/u", content=b"x" * 1000), framing)
    decoder = RequestDecoder()
    events = decoder.feed(wire[:30])
    assert isinstance(events[0], RequestHead)
    assert events[0].framing is framing


@pytest.mark.parametrize("framing", [KL, IL])
def test_content_comes_out_as_it_arrives(framing: Framing) -> None:
    # A 4 MiB body fed in 1 MiB slices: each slice's content comes out at once, none held back.
    content = bytes(range(256)) * (4 * 4096)
    wire = encode_request(Request(b"PUT", b"https", b"h", b"/u", content=content), framing)
    decoder = RequestDecoder()
    prefix = wire.find(content[:256])  # everything before the content bytes
    received = b""
    for start in range(0, len(wire), 1 << 20):
        piece = wire[start : start + (1 << 20)]
        received += b"".join(e.data for e in decoder.feed(piece) if isinstance(e, BodyChunk))
        fed = min(start + len(piece), prefix + len(content))
        assert len(received) == fed - prefix
    assert received == content


def test_known_length_content_partial_chunks_byte_by_byte() -> None:
    wire = encode_response(Response(200, content=b"abc"), KL)
    decoder = ResponseDecoder()
    chunks = [e for i in range(len(wire)) for e in decoder.feed(wire[i : i + 1])]
    assert [e for e in chunks if isinstance(e, BodyChunk)] == [
        BodyChunk(b"a"),
        BodyChunk(b"b"),
        BodyChunk(b"c"),
    ]


@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview])
def test_accepts_bytes_like_input(kind: type) -> None:
    wire = encode_request(SAMPLE_REQUEST, IL)
    decoder = RequestDecoder()
    events = decoder.feed(kind(wire[:5])) + decoder.feed(kind(wire[5:])) + decoder.finish()
    assert events[0] == RequestHead(
        b"POST",
        b"https",
        b"whisper.example",
        b"/v1/audio/transcriptions",
        SAMPLE_REQUEST.headers,
        IL,
    )
    assert all(isinstance(e.data, bytes) for e in events if isinstance(e, BodyChunk))


def test_empty_feed_is_harmless() -> None:
    decoder = RequestDecoder()
    assert decoder.feed(b"") == []
    assert decoder.framing is None
    assert not decoder.ended


def test_zero_padding_after_the_end_is_accepted_in_later_slices() -> None:
    decoder = ResponseDecoder()
    decoder.feed(encode_response(Response(200), IL))
    assert decoder.feed(bytes(1000)) == []
    assert decoder.finish() == []


def test_refuses_use_after_an_error() -> None:
    decoder = RequestDecoder()
    with pytest.raises(BhttpError, match="framing indicator"):
        decoder.feed(b"\x07")
    with pytest.raises(BhttpError, match="already found invalid"):
        decoder.feed(b"\x00")
    with pytest.raises(BhttpError, match="already found invalid"):
        decoder.finish()


def test_refuses_use_after_finish() -> None:
    decoder = RequestDecoder()
    decoder.feed(encode_request(SAMPLE_REQUEST))
    decoder.finish()
    with pytest.raises(BhttpError, match="already finished"):
        decoder.feed(b"\x00")
    with pytest.raises(BhttpError, match="already finished"):
        decoder.finish()


def test_refuses_use_after_a_bad_truncation() -> None:
    decoder = RequestDecoder()
    decoder.feed(b"\x00\x03GE")
    with pytest.raises(BhttpError, match="truncated"):
        decoder.finish()
    with pytest.raises(BhttpError):
        decoder.feed(b"T")


def test_truncated_header_section_comes_out_empty_at_finish() -> None:
    decoder = ResponseDecoder()
    assert decoder.feed(b"\x01\x40\xc8") == []
    assert decoder.finish() == [ResponseHead(200, (), KL), MessageEnd()]


def test_head_conveniences() -> None:
    head = RequestHead(b"GET", b"https", b"", b"/", ((b"a", b"1"), (b"b", b"2"), (b"a", b"3")), KL)
    assert head.header(b"a") == b"1"
    assert head.header(b"missing") is None
    assert head.header_values(b"a") == [b"1", b"3"]
    assert SAMPLE_RESPONSE.header(b"content-type") == b"application/json"
