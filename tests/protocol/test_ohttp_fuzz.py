"""Fuzz invariant for every decoder of keys, ohttp, chunked and azure_profile: each input, whole
or byte by byte, parses or raises a GatewayError, nothing else (tests/support/fuzzing.py).

The normal run feeds a few thousand cases; ``make fuzz-long`` runs FUZZ_CASES (default 1,000,000)
in total, split evenly across the decoders.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest

from gateway.protocol.azure_profile import AzureResponseDecapsulator, AzureResponseEncapsulator
from gateway.protocol.chunked import (
    REQUEST_LABEL as CHUNKED_REQUEST_LABEL,
)
from gateway.protocol.chunked import (
    ChunkedRequestDecapsulator,
    ChunkedRequestEncapsulator,
    ChunkedResponseDecapsulator,
)
from gateway.protocol.keys import (
    AeadId,
    KdfId,
    KeyConfig,
    KeyRing,
    SymmetricSuite,
    decode_key_configs,
    encode_key_configs,
)
from gateway.protocol.ohttp import (
    REQUEST_LABEL,
    ClientResponseContext,
    decapsulate_request,
    encapsulate_request,
    setup_sender,
)
from tests.support.fuzzing import assert_parses_or_raises_ours, cases
from tests.support.ohttp_keys import derived_keys

SUITES = (
    SymmetricSuite(KdfId.HKDF_SHA256, AeadId.AES_128_GCM),
    SymmetricSuite(KdfId.HKDF_SHA384, AeadId.AES_256_GCM),
    SymmetricSuite(KdfId.HKDF_SHA512, AeadId.CHACHA20_POLY1305),
)
KEYS = list(derived_keys(40, SUITES).values())
RING = KeyRing(KEYS)
X25519 = KEYS[2].config
SKE = bytes(range(100, 132))


def requests() -> list[bytes]:
    return [
        encapsulate_request(key.config, suite, body)[0]
        for key in KEYS
        for suite, body in zip(SUITES, (b"", b"\x00\x03GET", b"x" * 40), strict=True)
    ]


def chunked_requests() -> list[bytes]:
    seeds = []
    for key, suite in zip(KEYS, SUITES, strict=True):
        sender = ChunkedRequestEncapsulator(key.config, suite)
        seeds.append(
            sender.start()
            + sender.encapsulate_chunk(b"ab")
            + sender.encapsulate_chunk(b"c" * 70)
            + sender.finish(b"end")
        )
    sender = ChunkedRequestEncapsulator(X25519, SUITES[0])
    seeds.append(sender.finish())
    return seeds


# Fixed client state for the response decoders: a fresh one-shot context per case is cheap.
RESPONSE_SETUP = setup_sender(X25519, SUITES[1], REQUEST_LABEL, SKE)
CHUNKED_SETUP = setup_sender(X25519, SUITES[1], CHUNKED_REQUEST_LABEL, SKE)


def responses() -> list[bytes]:
    encapsulated = encapsulate_request(X25519, SUITES[1], b"", _ephemeral_private_key=SKE)[0]
    return [
        decapsulate_request(RING, encapsulated)[1].encapsulate_response(body)
        for body in (b"", b"\x01\x40\xc8", b"z" * 50)
    ]


def chunked_responses() -> list[bytes]:
    sender = ChunkedRequestEncapsulator(X25519, SUITES[1], _ephemeral_private_key=SKE)
    gateway = ChunkedRequestDecapsulator(RING)
    gateway.feed(sender.finish())
    gateway.finish()
    response = gateway.response_encapsulator()
    return [
        response.start()
        + response.encapsulate_chunk(b"\x01")
        + response.encapsulate_chunk(b"q" * 30)
        + response.finish(b"\x40\xc8")
    ]


def azure_responses() -> list[bytes]:
    encapsulated = encapsulate_request(X25519, SUITES[1], b"", _ephemeral_private_key=SKE)[0]
    seeds = []
    for chunks in ([], [b"a"], [b"{}", b"x" * 140]):
        sender = AzureResponseEncapsulator(decapsulate_request(RING, encapsulated)[1])
        seeds.append(
            sender.start() + b"".join(map(sender.encapsulate_chunk, chunks)) + sender.finish(b"!")
        )
    return seeds


def stream(
    factory: Callable[
        [], ChunkedRequestDecapsulator | ChunkedResponseDecapsulator | AzureResponseDecapsulator
    ],
    bytewise: bool,
) -> Callable[[bytes], object]:
    def decode(data: bytes) -> object:
        receiver = factory()
        out = []
        for piece in [data[i : i + 1] for i in range(len(data))] if bytewise else [data]:
            out += receiver.feed(piece)
        return out + receiver.finish()

    return decode


def decode_response(data: bytes) -> object:
    return ClientResponseContext(RESPONSE_SETUP).decapsulate_response(data)


DECODERS: dict[str, tuple[Callable[[], list[bytes]], Callable[[bytes], object]]] = {
    "key_config": (lambda: [k.config.encode() for k in KEYS], KeyConfig.decode),
    "key_config_list": (
        lambda: [RING.encoded_configs, encode_key_configs([X25519])],
        decode_key_configs,
    ),
    "ohttp_request": (requests, lambda data: decapsulate_request(RING, data)),
    "ohttp_response": (responses, decode_response),
    "chunked_request": (
        chunked_requests,
        stream(lambda: ChunkedRequestDecapsulator(RING), bytewise=False),
    ),
    "chunked_request_bytewise": (
        chunked_requests,
        stream(lambda: ChunkedRequestDecapsulator(RING), bytewise=True),
    ),
    "chunked_response": (
        chunked_responses,
        stream(
            lambda: ChunkedResponseDecapsulator(ClientResponseContext(CHUNKED_SETUP)),
            bytewise=False,
        ),
    ),
    "chunked_response_bytewise": (
        chunked_responses,
        stream(
            lambda: ChunkedResponseDecapsulator(ClientResponseContext(CHUNKED_SETUP)), bytewise=True
        ),
    ),
    "azure_response": (
        azure_responses,
        stream(
            lambda: AzureResponseDecapsulator(ClientResponseContext(RESPONSE_SETUP)), bytewise=False
        ),
    ),
    "azure_response_bytewise": (
        azure_responses,
        stream(
            lambda: AzureResponseDecapsulator(ClientResponseContext(RESPONSE_SETUP)), bytewise=True
        ),
    ),
}


def run(name: str, count: int, seed: int) -> None:
    make_seeds, decode = DECODERS[name]
    seeds = make_seeds()
    for data in seeds:  # the seeds themselves must decode
        decode(data)
    for data in cases(seeds, count, seed):
        assert_parses_or_raises_ours(decode, data)


@pytest.mark.parametrize("name", sorted(DECODERS))
def test_fuzz(name: str) -> None:
    run(name, 600, seed=sorted(DECODERS).index(name))


@pytest.mark.fuzz_long
@pytest.mark.parametrize("name", sorted(DECODERS))
def test_fuzz_long(name: str) -> None:
    total = int(os.environ.get("FUZZ_CASES", "1000000"))
    run(name, total // len(DECODERS), seed=1000 + sorted(DECODERS).index(name))
