"""The one-pass request decoder (gateway/protocol/bhttp_whole.py) against the state machine: on
every input it returns None or exactly what the state machine decodes, and it takes the common
case (our clients' requests) for real. Fuzzed from the RFC 9292 examples and generated messages;
``make fuzz-long`` runs it with the other decoders' long fuzz."""

from __future__ import annotations

import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.errors import BhttpError, BhttpLimitError, GatewayError
from gateway.protocol.bhttp import (
    BodyChunk,
    Framing,
    Limits,
    Request,
    RequestDecoder,
    RequestHead,
    Trailers,
    decode_request,
    encode_request,
)
from gateway.protocol.bhttp_whole import decode_known_length_request
from gateway.protocol.varint import encode_varint
from tests.support.bhttp_messages import SAMPLE_REQUEST, line, requests, seed_messages, vec
from tests.support.fuzzing import cases
from tests.support.vectors import load_vectors

SMALL = Limits(
    max_field_section_size=40,
    max_fields=2,
    max_content_length=10,
    max_control_data_size=30,
)


def by_state_machine(data: bytes, limits: Limits = Limits()) -> Request | type[GatewayError]:  # noqa: B008
    """What the incremental decoder makes of ``data`` as one whole message."""
    decoder = RequestDecoder(limits)
    try:
        events = decoder.feed(data) + decoder.finish()
    except GatewayError as error:
        return type(error)
    head = next(event for event in events if isinstance(event, RequestHead))
    content = b"".join(event.data for event in events if isinstance(event, BodyChunk))
    trailers = next((event.fields for event in events if isinstance(event, Trailers)), ())
    fields = (head.method, head.scheme, head.authority, head.path, head.headers)
    return Request(*fields, content, trailers)


def assert_agrees(data: bytes, limits: Limits = Limits()) -> Request | None:  # noqa: B008
    straight = decode_known_length_request(data, limits)
    if straight is not None:
        assert straight == by_state_machine(data, limits), data.hex()
    return straight


@given(requests, st.integers(0, 40))
def test_known_length_requests_take_the_straight_path(request: Request, padding: int) -> None:
    data = encode_request(request, Framing.KNOWN_LENGTH, padding)
    assert assert_agrees(data) == request


@given(requests)
def test_indeterminate_length_is_left_to_the_state_machine(request: Request) -> None:
    data = encode_request(request, Framing.INDETERMINATE_LENGTH)
    assert decode_known_length_request(data, Limits()) is None
    assert decode_request(data) == request


@pytest.mark.parametrize("cut", ["control", "headers", "content"])
def test_truncation_at_a_section_boundary_is_straight(cut: str) -> None:
    """RFC 9292 §3.8: a message may end before a section that would be empty."""
    control = b"\x00" + vec(b"GET") + vec(b"https") + vec(b"a.example") + vec(b"/")
    headers = vec(line(b"accept", b"*/*"))
    data = {
        "control": control,
        "headers": control + headers,
        "content": control + headers + vec(b"body"),
    }[cut]
    decoded = assert_agrees(data)
    assert decoded is not None
    assert decoded.content == (b"body" if cut == "content" else b"")


def test_our_requests_take_the_straight_path() -> None:
    assert decode_known_length_request(encode_request(SAMPLE_REQUEST), Limits()) == SAMPLE_REQUEST


CONTROL = b"\x00" + vec(b"POST") + vec(b"https") + vec(b"w") + vec(b"/t")


@pytest.mark.parametrize(
    ("data", "error"),
    [
        # Each limit of SMALL, exceeded by one.
        (
            b"\x00" + vec(b"POST") + vec(b"https") + vec(b"w") + vec(b"/" + bytes(b"a" * 21)),
            BhttpLimitError,
        ),
        (CONTROL + vec(line(b"a", b"v" * 38)) + vec(b""), BhttpLimitError),
        (CONTROL + vec(line(b"a") + line(b"b") + line(b"c")), BhttpLimitError),
        (CONTROL + vec(b"") + vec(b"x" * 11), BhttpLimitError),
        # Invalid: a field overruns its section, a bad name, non-zero padding, cut mid-section.
        (CONTROL + encode_varint(3) + line(b"name"), BhttpError),
        (CONTROL + vec(line(b"Upper")), BhttpError),
        (CONTROL + vec(b"") + vec(b"") + vec(b"") + b"\x00\x01", BhttpError),
        (CONTROL + vec(line(b"a"))[:-1], BhttpError),
        (CONTROL + vec(b"") + encode_varint(5) + b"abc", BhttpError),
        (b"\x00" + vec(b"P OST") + vec(b"https") + vec(b"w") + vec(b"/"), BhttpError),
        (b"\x01" + b"\x40\xc8", BhttpError),  # a response
        (b"", BhttpError),
    ],
)
def test_what_it_refuses_the_state_machine_refuses(data: bytes, error: type[Exception]) -> None:
    assert decode_known_length_request(data, SMALL) is None
    with pytest.raises(error):
        decode_request(data, SMALL)


def test_only_bytes_are_taken() -> None:
    data = encode_request(SAMPLE_REQUEST)
    assert decode_known_length_request(bytearray(data), Limits()) is None  # type: ignore[arg-type]


SEEDS = [
    bytes.fromhex(example["hex"])
    for example in load_vectors()["rfc9292_examples"].values()
    if isinstance(example, dict) and bytes.fromhex(example["hex"])[:1] in (b"\x00", b"\x02")
] + [data for data in seed_messages() if data[0] in (0, 2)]


def _fuzz(count: int, seed: int) -> int:
    """Agreement on every case, and no valid known-length request missed; how many it took."""
    straight = 0
    for index, data in enumerate(cases(SEEDS, count, seed)):
        limits = SMALL if index % 4 == 0 else Limits()
        taken = assert_agrees(data, limits) is not None
        if data[:1] == b"\x00" and isinstance(by_state_machine(data, limits), Request):
            assert taken, data.hex()
        straight += taken
    return straight


def test_fuzz_agrees_with_the_state_machine() -> None:
    assert _fuzz(4000, seed=9292) > 100  # mutations leave enough inputs valid to exercise it


@pytest.mark.fuzz_long
def test_fuzz_long_agrees_with_the_state_machine() -> None:
    total = int(os.environ.get("FUZZ_CASES", "1000000"))
    _fuzz(total // 5, seed=int(os.environ.get("FUZZ_SEED", "9292")))


def test_decode_request_takes_it_first(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only what the straight path leaves reaches the state machine."""
    from gateway.protocol import bhttp

    built: list[Limits] = []

    class Counting(RequestDecoder):
        def __init__(self, limits: Limits = Limits()) -> None:  # noqa: B008
            built.append(limits)
            super().__init__(limits)

    monkeypatch.setattr(bhttp, "RequestDecoder", Counting)
    assert bhttp.decode_request(encode_request(SAMPLE_REQUEST)) == SAMPLE_REQUEST
    assert built == []
    indeterminate = encode_request(SAMPLE_REQUEST, Framing.INDETERMINATE_LENGTH)
    assert bhttp.decode_request(indeterminate) == SAMPLE_REQUEST
    assert len(built) == 1
