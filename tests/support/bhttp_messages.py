"""Shared helpers for the Binary HTTP tests: driving the incremental decoders, sample messages,
and hypothesis strategies for valid messages."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence

from hypothesis import strategies as st

from gateway.protocol.bhttp import (
    BodyChunk,
    Event,
    Field,
    Framing,
    InformationalResponse,
    Limits,
    Request,
    RequestDecoder,
    Response,
    ResponseDecoder,
    encode_request,
    encode_response,
)
from gateway.protocol.varint import encode_varint

BOTH_FRAMINGS = (Framing.KNOWN_LENGTH, Framing.INDETERMINATE_LENGTH)

SAMPLE_REQUEST = Request(
    b"POST",
    b"https",
    b"whisper.example",
    b"/v1/audio/transcriptions",
    ((b"content-type", b"audio/wav"), (b"x-trace", b"")),
    b"RIFF....WAVEfmt ",
    ((b"digest", b"sha-256=abc"),),
)
SAMPLE_RESPONSE = Response(
    200,
    ((b"content-type", b"application/json"),),
    b'{"text": "hello"}',
    ((b"server-timing", b"asr;dur=12"),),
    (InformationalResponse(103, ((b"link", b"</a>"),)),),
)


def vec(data: bytes) -> bytes:
    """``data`` with its varint length prefix, as RFC 9292 frames every string."""
    return encode_varint(len(data)) + data


def line(name: bytes, value: bytes = b"v") -> bytes:
    """One field line, built by hand (around the encoder's checks)."""
    return vec(name) + vec(value)


def slices_of(data: bytes, cuts: Iterable[int]) -> list[bytes]:
    """``data`` cut at the (sorted, deduplicated) offsets ``cuts``."""
    points = [0, *sorted(set(cuts)), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(points)]


def decode_slices(
    decoder: RequestDecoder | ResponseDecoder, slices: Iterable[bytes]
) -> list[Event]:
    """Feed every slice, then finish; all events."""
    events: list[Event] = []
    for piece in slices:
        events += decoder.feed(piece)
    return events + decoder.finish()


def merge_body(events: Sequence[Event]) -> list[Event]:
    """The events with consecutive body chunks joined, so that slicings compare equal."""
    merged: list[Event] = []
    for event in events:
        if isinstance(event, BodyChunk) and merged and isinstance(merged[-1], BodyChunk):
            merged[-1] = BodyChunk(merged[-1].data + event.data)
        else:
            merged.append(event)
    return merged


def request_events(data: bytes, slices: Iterable[bytes] | None = None) -> list[Event]:
    """Merged events of a request, fed whole or in ``slices``."""
    return merge_body(decode_slices(RequestDecoder(Limits()), slices or [data]))


def response_events(data: bytes, slices: Iterable[bytes] | None = None) -> list[Event]:
    """Merged events of a response, fed whole or in ``slices``."""
    return merge_body(decode_slices(ResponseDecoder(Limits()), slices or [data]))


def seed_messages() -> list[bytes]:
    """Valid requests and responses in both framings, with and without padding."""
    out = []
    for framing in BOTH_FRAMINGS:
        out.append(encode_request(SAMPLE_REQUEST, framing))
        out.append(encode_request(SAMPLE_REQUEST, framing, padding=3))
        out.append(encode_response(SAMPLE_RESPONSE, framing))
        out.append(encode_response(Response(404), framing, padding=2))
    return out


# --- hypothesis strategies for valid messages ----------------------------------------------------

_NAME_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789!#$%&'*+-.^_`|~"
names = st.text(_NAME_CHARS, min_size=1, max_size=12).map(str.encode)
_VALUE_BYTES = st.integers(1, 255).filter(lambda b: b not in (0x0A, 0x0D))
values = st.lists(_VALUE_BYTES, max_size=20).map(bytes).map(lambda v: v.strip(b" \t"))
fields: st.SearchStrategy[tuple[Field, ...]] = st.lists(st.tuples(names, values), max_size=5).map(
    tuple
)
contents = st.binary(max_size=300)
_visible = st.text("abcdefghijklmnopqrstuvwxyz0123456789-._~%!$&'()*+,;=:@/?", max_size=20)

requests = st.builds(
    Request,
    method=st.sampled_from([b"GET", b"POST", b"PUT", b"DELETE", b"PATCH", b"M-SEARCH"]),
    scheme=st.sampled_from([b"https", b"http", b"coap+tcp"]),
    authority=_visible.map(str.encode),
    path=_visible.map(lambda p: ("/" + p).encode()),
    headers=fields,
    content=contents,
    trailers=fields,
)
informational = st.builds(InformationalResponse, status=st.integers(100, 199), headers=fields)
responses = st.builds(
    Response,
    status=st.integers(200, 599),
    headers=fields,
    content=contents,
    trailers=fields,
    informational=st.lists(informational, max_size=3).map(tuple),
)
framings = st.sampled_from(BOTH_FRAMINGS)
