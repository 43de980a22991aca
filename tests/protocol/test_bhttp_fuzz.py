"""Fuzzing the Binary HTTP decoders (tests/support/fuzzing.py): any input, whole or fed in slices
(one byte at a time included), parses or raises our own error, and the incremental decoders agree
with whole-message decoding on every input. Seeds: the RFC 9292 examples and generated messages.

The normal run does a few thousand cases; ``make fuzz-long`` runs FUZZ_CASES (default 1,000,000)
cases in total across the four decoders."""

from __future__ import annotations

import os
import random
from collections.abc import Callable

import pytest

from gateway.errors import GatewayError
from gateway.protocol.bhttp import (
    Event,
    RequestDecoder,
    ResponseDecoder,
    decode_request,
    decode_response,
)
from tests.support.bhttp_messages import decode_slices, merge_body, seed_messages, slices_of
from tests.support.fuzzing import assert_parses_or_raises_ours, cases
from tests.support.vectors import load_vectors

SEEDS = [
    bytes.fromhex(example["hex"])
    for example in load_vectors()["rfc9292_examples"].values()
    if isinstance(example, dict)
] + seed_messages()

Decoder = type[RequestDecoder] | type[ResponseDecoder]
Outcome = list[Event] | type[GatewayError]


def _outcome(decoder: Decoder, slices: list[bytes]) -> Outcome:
    try:
        return merge_body(decode_slices(decoder(), slices))
    except GatewayError as error:
        return type(error)


def _incremental(decoder: Decoder, rng: random.Random) -> Callable[[bytes], object]:
    """Decode in random slices (one byte at a time in a quarter of the cases) and check that the
    outcome is the whole-message outcome."""

    def run(data: bytes) -> None:
        if rng.random() < 0.25:
            slices = [data[i : i + 1] for i in range(len(data))]
        else:
            slices = slices_of(data, rng.sample(range(1, len(data) + 1), min(len(data), 6)))
        assert _outcome(decoder, slices) == _outcome(decoder, [data]), data.hex()

    return run


MODES: dict[str, tuple[Decoder, bool]] = {
    "request-whole": (RequestDecoder, False),
    "response-whole": (ResponseDecoder, False),
    "request-incremental": (RequestDecoder, True),
    "response-incremental": (ResponseDecoder, True),
}
WHOLE = {RequestDecoder: decode_request, ResponseDecoder: decode_response}


def _seeds_for(decoder: Decoder) -> list[bytes]:
    """The seeds of the decoder's kind, whose framing indicator is even for requests."""
    return [data for data in SEEDS if (data[0] % 2 == 1) == (decoder is ResponseDecoder)]


def _fuzz(mode: str, count: int, seed: int) -> None:
    decoder, incremental = MODES[mode]
    rng = random.Random(seed)
    decode = _incremental(decoder, rng) if incremental else WHOLE[decoder]
    for data in cases(_seeds_for(decoder), count, seed):
        assert_parses_or_raises_ours(decode, data)


@pytest.mark.parametrize("decoder", [RequestDecoder, ResponseDecoder])
def test_seeds_are_valid(decoder: Decoder) -> None:
    assert len(_seeds_for(decoder)) >= 6
    for data in _seeds_for(decoder):
        assert isinstance(_outcome(decoder, [data]), list)


@pytest.mark.parametrize("mode", MODES)
def test_fuzz(mode: str) -> None:
    _fuzz(mode, 2500 if mode.endswith("whole") else 1000, seed=9292)


@pytest.mark.fuzz_long
@pytest.mark.parametrize("mode", MODES)
def test_fuzz_long(mode: str) -> None:
    total = int(os.environ.get("FUZZ_CASES", "1000000"))
    _fuzz(mode, total // len(MODES), seed=int(os.environ.get("FUZZ_SEED", "9292")))
