"""The four RFC 9292 §5 examples: decoded to their documented meaning, re-encoded byte for byte."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.errors import BhttpError
from gateway.protocol.bhttp import (
    Field,
    Framing,
    Request,
    decode_request,
    decode_response,
    encode_request,
    encode_response,
)
from tests.support.bhttp_messages import request_events, response_events
from tests.support.vectors import load_vectors

EXAMPLES: dict[str, Any] = load_vectors()["rfc9292_examples"]
REQUESTS = ["known_length_request", "indeterminate_length_request_with_10_bytes_padding"]
RESPONSES = [
    "indeterminate_length_response_with_102_103_informational",
    "known_length_response_with_trailer",
]
PADDING = {"indeterminate_length_request_with_10_bytes_padding": 10}


def _fields(pairs: list[list[str]]) -> tuple[Field, ...]:
    return tuple((name.encode(), value.encode()) for name, value in pairs)


def _framing(example: dict[str, Any]) -> Framing:
    return Framing.KNOWN_LENGTH if example["framing"] < 2 else Framing.INDETERMINATE_LENGTH


def _expected_request(decoded: dict[str, Any]) -> Request:
    return Request(
        decoded["method"].encode(),
        decoded["scheme"].encode(),
        decoded["authority"].encode(),
        decoded["path"].encode(),
        _fields(decoded["headers"]),
        decoded["content"].encode(),
        _fields(decoded["trailers"]),
    )


def test_the_four_examples_are_present() -> None:
    assert set(REQUESTS + RESPONSES) <= set(EXAMPLES)


@pytest.mark.parametrize("name", REQUESTS)
def test_request_example(name: str) -> None:
    data = bytes.fromhex(EXAMPLES[name]["hex"])
    decoded = EXAMPLES[name]["decoded"]
    request = decode_request(data)
    assert request == _expected_request(decoded)
    assert request.header(b"host") == b"www.example.com"
    assert encode_request(request, _framing(decoded), padding=PADDING.get(name, 0)) == data


@pytest.mark.parametrize("name", RESPONSES)
def test_response_example(name: str) -> None:
    data = bytes.fromhex(EXAMPLES[name]["hex"])
    decoded = EXAMPLES[name]["decoded"]
    response = decode_response(data)
    assert response.status == decoded["status"]
    assert response.headers == _fields(decoded["headers"])
    assert response.content == decoded["content"].encode()
    assert response.trailers == _fields(decoded["trailers"])
    interim = [(i.status, i.headers) for i in response.informational]
    assert interim == [(status, _fields(pairs)) for status, pairs in decoded["informational"]]
    assert encode_response(response, _framing(decoded)) == data


@pytest.mark.parametrize("name", REQUESTS + RESPONSES)
def test_example_byte_by_byte_matches_whole(name: str) -> None:
    data = bytes.fromhex(EXAMPLES[name]["hex"])
    events = request_events if name in REQUESTS else response_events
    assert events(data, [data[i : i + 1] for i in range(len(data))]) == events(data)


def test_known_length_request_last_two_bytes_can_be_removed() -> None:
    # RFC 9292 §5.1: the empty content and trailer section may each be truncated.
    data = bytes.fromhex(EXAMPLES["known_length_request"]["hex"])
    whole = decode_request(data)
    assert decode_request(data[:-1]) == whole
    assert decode_request(data[:-2]) == whole


def test_indeterminate_request_up_to_twelve_bytes_can_be_removed() -> None:
    # RFC 9292 §5.1: 10 bytes of padding plus the empty content and trailers.
    data = bytes.fromhex(EXAMPLES["indeterminate_length_request_with_10_bytes_padding"]["hex"])
    whole = decode_request(data)
    for cut in range(13):
        assert decode_request(data[: len(data) - cut]) == whole
    with pytest.raises(BhttpError, match="truncated"):
        decode_request(data[:-13])  # the header section's terminator is gone
