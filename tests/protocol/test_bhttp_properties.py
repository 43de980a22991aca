"""Property tests: encode-then-decode is the identity, in both framings, with padding; and the
incremental decoders give the same events for every slicing of the input."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from gateway.protocol.bhttp import (
    Framing,
    Request,
    RequestEncoder,
    Response,
    ResponseEncoder,
    decode_request,
    decode_response,
    encode_request,
    encode_response,
)
from tests.support.bhttp_messages import (
    framings,
    request_events,
    requests,
    response_events,
    responses,
    slices_of,
)

paddings = st.integers(0, 40)


def _cuts(data: bytes) -> st.SearchStrategy[list[int]]:
    return st.lists(st.integers(1, max(1, len(data) - 1)), max_size=12)


@given(requests, framings, paddings)
def test_request_round_trip(request: Request, framing: Framing, padding: int) -> None:
    assert decode_request(encode_request(request, framing, padding)) == request


@given(responses, framings, paddings)
def test_response_round_trip(response: Response, framing: Framing, padding: int) -> None:
    assert decode_response(encode_response(response, framing, padding)) == response


@given(requests, framings, paddings, st.data())
def test_request_every_slicing_same_events(
    request: Request, framing: Framing, padding: int, data: st.DataObject
) -> None:
    wire = encode_request(request, framing, padding)
    whole = request_events(wire)
    assert request_events(wire, slices_of(wire, data.draw(_cuts(wire)))) == whole
    assert request_events(wire, slices_of(wire, range(1, len(wire)))) == whole


@given(responses, framings, paddings, st.data())
def test_response_every_slicing_same_events(
    response: Response, framing: Framing, padding: int, data: st.DataObject
) -> None:
    wire = encode_response(response, framing, padding)
    whole = response_events(wire)
    assert response_events(wire, slices_of(wire, data.draw(_cuts(wire)))) == whole
    assert response_events(wire, slices_of(wire, range(1, len(wire)))) == whole


def _pieces(content: bytes, cuts: list[int]) -> list[bytes]:
    return slices_of(content, [c for c in cuts if 0 < c < len(content)]) if content else []


@given(requests, st.lists(st.integers(0, 300), max_size=6), paddings)
def test_streamed_request_decodes_to_the_message(
    request: Request, cuts: list[int], padding: int
) -> None:
    encoder = RequestEncoder()
    wire = encoder.head(
        request.method, request.scheme, request.authority, request.path, request.headers
    )
    wire += b"".join(encoder.body(piece) for piece in _pieces(request.content, cuts))
    wire += encoder.end(request.trailers, padding)
    assert decode_request(wire) == request


@given(responses, st.lists(st.integers(0, 300), max_size=6), paddings)
def test_streamed_response_decodes_to_the_message(
    response: Response, cuts: list[int], padding: int
) -> None:
    encoder = ResponseEncoder()
    wire = b"".join(encoder.informational(i.status, i.headers) for i in response.informational)
    wire += encoder.head(response.status, response.headers)
    wire += b"".join(encoder.body(piece) for piece in _pieces(response.content, cuts))
    wire += encoder.end(response.trailers, padding)
    assert decode_response(wire) == response
