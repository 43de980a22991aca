"""The Azure-compatible response framing (microsoft/ohttp encapsulate_stream), both sides."""

from __future__ import annotations

import itertools

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.errors import (
    AzureFramingError,
    ConfigError,
    ContextReused,
    ResponseDecryptionFailed,
)
from gateway.protocol.azure_profile import (
    AZURE_CHUNK,
    AzureResponseDecapsulator,
    AzureResponseEncapsulator,
)
from gateway.protocol.keys import AeadId, KdfId, KemId, KeyRing, SymmetricSuite
from gateway.protocol.ohttp import (
    ClientResponseContext,
    ServerResponseContext,
    decapsulate_request,
    encapsulate_request,
)
from gateway.protocol.varint import encode_leb128
from tests.support.ohttp_keys import (
    ALL_SUITES,
    RFC_SUITES,
    derived_keys,
    hex_reader,
    ring_of,
    vector_key,
)
from tests.support.vectors import load_vectors

RFC = load_vectors()["rfc9458_appendix_a"]
AZURE_SUITE = SymmetricSuite(KdfId.HKDF_SHA384, AeadId.AES_256_GCM)
KEYS = derived_keys(30)
RING = ring_of(KEYS)
h = hex_reader(RFC)


def rfc_contexts() -> tuple[ServerResponseContext, ClientResponseContext]:
    key = vector_key(RFC)
    _, server = decapsulate_request(KeyRing([key]), h("encapsulated_request"))
    _, client = encapsulate_request(key.config, RFC_SUITES[0], b"", _ephemeral_private_key=h("skE"))
    return server, client


def pair(kem: KemId, chosen: SymmetricSuite) -> tuple[ServerResponseContext, ClientResponseContext]:
    encapsulated, client = encapsulate_request(KEYS[kem].config, chosen, b"known-length bhttp")
    _, server = decapsulate_request(RING, encapsulated)
    return server, client


def decode(client: ClientResponseContext, pieces: list[bytes]) -> bytes:
    receiver = AzureResponseDecapsulator(client)
    out: list[bytes] = []
    for piece in pieces:
        out += receiver.feed(piece)
    out += receiver.finish()
    assert receiver.done
    return b"".join(out)


def test_framing_byte_for_byte_with_the_rfc_keys() -> None:
    # Same key schedule as RFC 9458, so the RFC's aead_key/aead_nonce seal every chunk.
    server, _ = rfc_contexts()
    first, last = b"x" * 200, b"tail"
    sender = AzureResponseEncapsulator(server, _response_nonce=h("response_nonce"))
    encoded = sender.start() + sender.encapsulate_chunk(first) + sender.finish(last)
    aead, base = AESGCM(h("aead_key")), int.from_bytes(h("aead_nonce"), "big")
    ct0 = aead.encrypt(base.to_bytes(12, "big"), first, b"")
    ct1 = aead.encrypt((base ^ 1).to_bytes(12, "big"), last, b"final")
    expected = (
        h("response_nonce")
        + encode_leb128(len(ct0))
        + ct0
        + b"\x00"
        + encode_leb128(len(ct1))
        + ct1
    )
    assert encode_leb128(len(ct0)) == b"\xd8\x01"  # 216: a two-byte LEB128
    assert encoded == expected


def test_p384_aes256_uses_a_32_byte_nonce() -> None:
    server, client = pair(KemId.P384_SHA384, AZURE_SUITE)
    sender = AzureResponseEncapsulator(server)
    nonce = sender.start()
    assert len(nonce) == 32
    body = nonce + sender.encapsulate_chunk(b'{"text": "hello"}') + sender.finish()
    assert decode(client, [body]) == b'{"text": "hello"}'


@pytest.mark.parametrize("kem", list(KemId))
@pytest.mark.parametrize("chosen", ALL_SUITES, ids=lambda s: f"{s.kdf_id.name}-{s.aead_id.name}")
def test_round_trip_every_suite(kem: KemId, chosen: SymmetricSuite) -> None:
    server, client = pair(kem, chosen)
    sender = AzureResponseEncapsulator(server)
    assert decode(client, [sender.encapsulate_chunk(b"ab") + sender.finish(b"c")]) == b"abc"


def slices(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


@settings(max_examples=80, deadline=None)
@given(
    st.sampled_from(list(KemId)),
    st.sampled_from(ALL_SUITES),
    st.lists(st.binary(max_size=300), max_size=5),
    st.binary(max_size=50),
    st.lists(st.integers(0, 2000), max_size=12),
)
def test_round_trip_any_slicing(
    kem: KemId, chosen: SymmetricSuite, chunks: list[bytes], last: bytes, cuts: list[int]
) -> None:
    server, client = pair(kem, chosen)
    sender = AzureResponseEncapsulator(server)
    encoded = sender.start() + b"".join(map(sender.encapsulate_chunk, chunks)) + sender.finish(last)
    assert decode(client, slices(encoded, cuts)) == b"".join(chunks) + last


@settings(max_examples=10, deadline=None)
@given(st.lists(st.binary(max_size=40), max_size=4))
def test_round_trip_one_byte_slices(chunks: list[bytes]) -> None:
    server, client = pair(KemId.X25519_SHA256, ALL_SUITES[0])
    sender = AzureResponseEncapsulator(server)
    encoded = b"".join(map(sender.encapsulate_chunk, chunks)) + sender.finish()
    assert decode(client, [bytes([b]) for b in encoded]) == b"".join(chunks)


def test_one_chunk_per_input_split_only_above_1_mib() -> None:
    # Microsoft's client opens one chunk per read: an upstream read must stay one chunk.
    server, client = pair(KemId.P384_SHA384, AZURE_SUITE)
    sender = AzureResponseEncapsulator(server)
    body = bytes(range(256)) * 200
    big = bytes(AZURE_CHUNK + 5)
    encoded = [sender.start(), sender.encapsulate_chunk(body), sender.encapsulate_chunk(big)]
    encoded.append(sender.finish(body))
    assert len(encoded[1]) == 3 + len(body) + 16  # LEB128(51216) is 3 bytes: one chunk
    receiver = AzureResponseDecapsulator(client)
    opened = [chunk for piece in encoded for chunk in receiver.feed(piece)] + receiver.finish()
    assert [len(c) for c in opened] == [len(body), AZURE_CHUNK, 5, len(body)]
    assert b"".join(opened) == body + big + body


# --- failures -------------------------------------------------------------------------------


def rfc_stream() -> bytes:
    server, _ = rfc_contexts()
    sender = AzureResponseEncapsulator(server, _response_nonce=h("response_nonce"))
    return sender.encapsulate_chunk(b"abc") + sender.finish(b"def")


def test_truncation_at_every_cut_point() -> None:
    data = rfc_stream()
    for cut in range(len(data)):
        _, client = rfc_contexts()
        with pytest.raises(AzureFramingError):
            decode(client, [bytes([b]) for b in data[:cut]])


def test_tag_flips_and_junk() -> None:
    data = rfc_stream()
    for index in range(len(data)):
        flipped = bytearray(data)
        flipped[index] ^= 0x01
        _, client = rfc_contexts()
        with pytest.raises((ResponseDecryptionFailed, AzureFramingError)):
            decode(client, [bytes(flipped)])
    _, client = rfc_contexts()
    with pytest.raises(AzureFramingError):
        decode(client, [data + b"\x00"])


@pytest.mark.parametrize(
    "framing",
    [b"\x80\x00", b"\x00\x00", b"\xff" * 11, encode_leb128((1 << 20) + 17)],
    ids=["zero-length", "zero-length-final", "overlong", "oversize"],
)
def test_bad_lengths(framing: bytes) -> None:
    _, client = rfc_contexts()
    receiver = AzureResponseDecapsulator(client)
    with pytest.raises(AzureFramingError):
        receiver.feed(h("response_nonce") + framing)
    with pytest.raises(AzureFramingError):  # broken for good
        receiver.finish()


def test_single_use_and_limits() -> None:
    server, client = rfc_contexts()
    AzureResponseEncapsulator(server)
    with pytest.raises(ContextReused):
        AzureResponseEncapsulator(server)
    with pytest.raises(ContextReused):
        server.encapsulate_response(b"")
    AzureResponseDecapsulator(client)
    with pytest.raises(ContextReused):
        AzureResponseDecapsulator(client)
    _, client = rfc_contexts()
    with pytest.raises(ConfigError):
        AzureResponseDecapsulator(client, max_chunk_size=100)
    server, _ = rfc_contexts()
    with pytest.raises(ConfigError):
        AzureResponseEncapsulator(server, _response_nonce=b"short")


def test_reprs_hold_no_secrets() -> None:
    server, client = rfc_contexts()
    text = repr(AzureResponseEncapsulator(server)) + repr(AzureResponseDecapsulator(client))
    for name in ("skR", "skE", "aead_key", "prk"):
        assert RFC[name] not in text
