"""Guards against quadratic buffering: the 25 MiB benchmark stays far above a floor, and a large
header section fed one byte at a time stays linear."""

from __future__ import annotations

import time

import pytest

from bench.bhttp_bench import run
from gateway.protocol.bhttp import Framing, Request, RequestDecoder, encode_request

FLOOR_MB_PER_S = 50  # measured: 1.5-12 GB/s; a quadratic decoder falls far below this


def test_25_mib_body_decodes_fast_in_every_slicing() -> None:
    for framing, size, rate in run():
        assert rate > FLOOR_MB_PER_S, (framing, size, rate)


@pytest.mark.parametrize("framing", list(Framing))
def test_large_header_fed_one_byte_at_a_time_is_linear(framing: Framing) -> None:
    request = Request(b"GET", b"https", b"", b"/", ((b"a", b"v" * 60000),))
    wire = encode_request(request, framing)
    start = time.perf_counter()
    decoder = RequestDecoder()
    for index in range(len(wire)):
        decoder.feed(wire[index : index + 1])
    assert decoder.ended
    assert time.perf_counter() - start < 3  # measured 0.03-0.13 s
