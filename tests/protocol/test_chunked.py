"""Chunked OHTTP (draft-ietf-ohai-chunked-ohttp-08): vectors, slicings, failures."""

from __future__ import annotations

import itertools
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.errors import (
    ChunkedStreamError,
    ConfigError,
    ContextReused,
    DecryptionFailed,
    MalformedRequestHeader,
    ResponseDecryptionFailed,
    SuiteNotAllowed,
    TruncatedStream,
    UnknownKeyId,
)
from gateway.protocol._hpke import response_key_material
from gateway.protocol.chunked import (
    MAX_CHUNK,
    RESPONSE_LABEL,
    ChunkedRequestDecapsulator,
    ChunkedRequestEncapsulator,
    ChunkedResponseDecapsulator,
)
from gateway.protocol.keys import GatewayKey, KemId, KeyRing, SymmetricSuite
from gateway.protocol.varint import encode_varint
from tests.support.ohttp_keys import ALL_SUITES, RFC_SUITES, derived_keys, hex_reader, ring_of
from tests.support.ohttp_keys import vector_key as chunked_vector_key
from tests.support.vectors import load_vectors

V = load_vectors()["chunked_ohttp_08_appendix_a"]
SUITES = RFC_SUITES
KEYS = derived_keys(20)
RING = ring_of(KEYS)
h = hex_reader(V)


def vector_key() -> GatewayKey:
    return chunked_vector_key(V)


def vector_client() -> ChunkedRequestEncapsulator:
    return ChunkedRequestEncapsulator(
        vector_key().config, SUITES[0], _ephemeral_private_key=h("skE")
    )


def feed_all(
    receiver: ChunkedRequestDecapsulator | ChunkedResponseDecapsulator, pieces: list[bytes]
) -> list[bytes]:
    out: list[bytes] = []
    for piece in pieces:
        out += receiver.feed(piece)
    return out + receiver.finish()


def slices(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


# --- draft-08 Appendix A --------------------------------------------------------------------


def test_vector_key_config_and_request() -> None:
    assert vector_key().config.encode() == h("key_config")
    chunks = [bytes.fromhex(c) for c in V["request_plaintext_chunks"]]
    client = vector_client()
    encoded = (
        client.start() + client.encapsulate_chunk(chunks[0]) + client.encapsulate_chunk(chunks[1])
    )
    encoded += client.finish(chunks[2])
    assert encoded == h("encapsulated_request")


def test_vector_gateway_side_byte_by_byte() -> None:
    gateway = ChunkedRequestDecapsulator(KeyRing([vector_key()]))
    opened = feed_all(gateway, [bytes([b]) for b in h("encapsulated_request")])
    assert b"".join(opened) == h("request_bhttp")
    assert opened == [bytes.fromhex(c) for c in V["request_plaintext_chunks"] if c]
    assert gateway.done
    assert gateway.enc == h("pkE_enc")
    assert gateway.header is not None
    assert gateway.header.info(b"message/bhttp chunked request") == h("info")
    response = gateway.response_encapsulator(_response_nonce=h("response_nonce"))
    chunks = [bytes.fromhex(c) for c in V["response_plaintext_chunks"]]
    encoded = (
        response.start()
        + response.encapsulate_chunk(chunks[0])
        + response.encapsulate_chunk(chunks[1])
    )
    encoded += response.finish(chunks[2])
    assert encoded == h("encapsulated_response")


def test_vector_response_key_schedule_and_chunk_nonces() -> None:
    client = vector_client()
    client.start()
    context = client._response_context
    assert context is not None
    exporter = context.exporter()
    assert exporter.export(RESPONSE_LABEL, 16) == h("exported_secret")
    assert context.enc + h("response_nonce") == h("salt")
    assert context.suite.hpke.kdf.extract(h("salt"), h("exported_secret")) == h("prk")
    key, nonce = response_key_material(
        context.suite, exporter, RESPONSE_LABEL, context.enc, h("response_nonce")
    )
    assert (key, nonce) == (h("aead_key"), h("aead_nonce"))
    receiver = client.response_decapsulator()
    opened = feed_all(receiver, [bytes([b]) for b in h("encapsulated_response")])
    assert opened == [b"\x01", b"\x40\xc8"]
    keys = receiver._keys
    assert keys is not None
    assert keys.counter == 3
    keys.counter = 0
    assert [keys._next_nonce().hex() for _ in range(3)] == V["chunk_nonces"]


# --- round trips ----------------------------------------------------------------------------


def round_trip(
    kem: KemId, chosen: SymmetricSuite, request: list[bytes], response: list[bytes], cuts: list[int]
) -> None:
    client = ChunkedRequestEncapsulator(KEYS[kem].config, chosen)
    stream = (
        client.start()
        + b"".join(client.encapsulate_chunk(c) for c in request[:-1])
        + client.finish(request[-1])
    )
    gateway = ChunkedRequestDecapsulator(RING)
    assert b"".join(feed_all(gateway, slices(stream, cuts))) == b"".join(request)
    assert gateway.done
    sender = gateway.response_encapsulator()
    encoded = b"".join(sender.encapsulate_chunk(c) for c in response[:-1]) + sender.finish(
        response[-1]
    )
    receiver = client.response_decapsulator()
    assert b"".join(feed_all(receiver, slices(encoded, cuts))) == b"".join(response)


@pytest.mark.parametrize("kem", list(KemId))
@pytest.mark.parametrize("chosen", ALL_SUITES, ids=lambda s: f"{s.kdf_id.name}-{s.aead_id.name}")
def test_round_trip_every_suite(kem: KemId, chosen: SymmetricSuite) -> None:
    round_trip(kem, chosen, [b"ab", b"", b"cde"], [b"x", b"yz"], [5, 50, 100])


chunk_lists = st.lists(st.binary(max_size=40), min_size=1, max_size=5)


@settings(max_examples=80, deadline=None)
@given(
    st.sampled_from(list(KemId)),
    st.sampled_from(ALL_SUITES),
    chunk_lists,
    chunk_lists,
    st.lists(st.integers(0, 1000), max_size=12),
)
def test_round_trip_any_slicing(
    kem: KemId, chosen: SymmetricSuite, request: list[bytes], response: list[bytes], cuts: list[int]
) -> None:
    round_trip(kem, chosen, request, response, cuts)


@settings(max_examples=15, deadline=None)
@given(chunk_lists, chunk_lists)
def test_round_trip_one_byte_slices(request: list[bytes], response: list[bytes]) -> None:
    round_trip(KemId.X25519_SHA256, ALL_SUITES[0], request, response, list(range(2000)))


def test_large_inputs_are_split_at_16k_and_16k_chunks_accepted() -> None:
    body = bytes(range(256)) * 300  # 76800 bytes
    client = ChunkedRequestEncapsulator(KEYS[KemId.P384_SHA384].config, ALL_SUITES[4])
    stream = client.start() + client.encapsulate_chunk(body) + client.finish(body)
    gateway = ChunkedRequestDecapsulator(RING, max_chunk_size=MAX_CHUNK)
    opened = gateway.feed(stream) + gateway.finish()
    assert b"".join(opened) == body * 2
    assert max(map(len, opened)) == MAX_CHUNK


# --- failures -------------------------------------------------------------------------------


def vector_request() -> bytes:
    return h("encapsulated_request")


@pytest.mark.parametrize("whole", [True, False], ids=["whole", "bytewise"])
def test_truncation_at_every_cut_point(whole: bool) -> None:
    data = vector_request()
    for cut in range(len(data)):
        gateway = ChunkedRequestDecapsulator(KeyRing([vector_key()]))
        pieces = [data[:cut]] if whole else [bytes([b]) for b in data[:cut]]
        with pytest.raises(TruncatedStream):
            feed_all(gateway, pieces)
        assert not gateway.done


def test_response_truncation_at_every_cut_point() -> None:
    data = h("encapsulated_response")
    for cut in range(len(data)):
        receiver = vector_client().response_decapsulator()
        with pytest.raises(TruncatedStream):
            feed_all(receiver, [data[:cut]])


def test_trailing_junk_after_final_chunk_fails() -> None:
    gateway = ChunkedRequestDecapsulator(KeyRing([vector_key()]))
    with pytest.raises(TruncatedStream):
        feed_all(gateway, [vector_request() + b"\x00"])


def test_tag_flips() -> None:
    data = vector_request()
    for index in range(39, len(data)):
        flipped = bytearray(data)
        flipped[index] ^= 0x01
        gateway = ChunkedRequestDecapsulator(KeyRing([vector_key()]))
        with pytest.raises((DecryptionFailed, TruncatedStream, ChunkedStreamError)):
            feed_all(gateway, [bytes(flipped)])
    response = h("encapsulated_response")
    for index in range(len(response)):
        flipped = bytearray(response)
        flipped[index] ^= 0x01
        receiver = vector_client().response_decapsulator()
        with pytest.raises((ResponseDecryptionFailed, TruncatedStream, ChunkedStreamError)):
            feed_all(receiver, [bytes(flipped)])


def test_empty_non_final_chunk_is_a_decryption_error() -> None:
    client = vector_client()
    empty = client._seal(memoryview(b""), b"")
    stream = client.start() + encode_varint(len(empty)) + empty + client.finish(b"x")
    gateway = ChunkedRequestDecapsulator(KeyRing([vector_key()]))
    with pytest.raises(DecryptionFailed):
        gateway.feed(stream)
    with pytest.raises(DecryptionFailed):  # the stream stays broken
        gateway.feed(b"")

    gateway2 = ChunkedRequestDecapsulator(KeyRing([vector_key()]))
    gateway2.feed(vector_client().finish(b"q"))
    sender = gateway2.response_encapsulator()
    empty = sender._seal(memoryview(b""), b"")
    receiver = vector_client().response_decapsulator()
    with pytest.raises(ResponseDecryptionFailed):
        receiver.feed(sender.start() + encode_varint(len(empty)) + empty)


def test_oversize_chunks_refused_before_buffering() -> None:
    client = vector_client()
    prefix = client.start()
    gateway = ChunkedRequestDecapsulator(KeyRing([vector_key()]), max_chunk_size=MAX_CHUNK)
    with pytest.raises(ChunkedStreamError):
        gateway.feed(prefix + encode_varint(MAX_CHUNK + 17))
    gateway = ChunkedRequestDecapsulator(KeyRing([vector_key()]), max_chunk_size=MAX_CHUNK)
    gateway.feed(prefix + encode_varint(MAX_CHUNK + 16))  # exactly the limit: waits for the bytes
    gateway = ChunkedRequestDecapsulator(KeyRing([vector_key()]))
    with pytest.raises(ChunkedStreamError):
        gateway.feed(prefix + encode_varint((1 << 62) - 1))
    final = ChunkedRequestDecapsulator(KeyRing([vector_key()]), max_chunk_size=MAX_CHUNK)
    final.feed(prefix + b"\x00" + bytes(MAX_CHUNK))
    with pytest.raises(ChunkedStreamError):
        final.feed(bytes(17))


def test_max_chunk_size_floor() -> None:
    with pytest.raises(ConfigError):
        ChunkedRequestDecapsulator(RING, max_chunk_size=MAX_CHUNK - 1)


def test_header_errors_surface_while_streaming() -> None:
    data = bytearray(vector_request())
    data[0] = 9
    with pytest.raises(UnknownKeyId):
        ChunkedRequestDecapsulator(KeyRing([vector_key()])).feed(bytes(data[:7]))
    data = bytearray(vector_request())
    data[5:7] = b"\x00\x02"
    with pytest.raises(SuiteNotAllowed):
        ChunkedRequestDecapsulator(KeyRing([vector_key()])).feed(bytes(data))
    data[5:7] = b"\x00\x07"
    with pytest.raises(MalformedRequestHeader):
        ChunkedRequestDecapsulator(KeyRing([vector_key()])).feed(bytes(data))
    data = bytearray(vector_request())
    data[7:39] = bytes(32)
    with pytest.raises(DecryptionFailed):
        ChunkedRequestDecapsulator(KeyRing([vector_key()])).feed(bytes(data))
    short = bytearray(vector_request()[:7])
    short[3] = 0x77
    with pytest.raises(MalformedRequestHeader):
        ChunkedRequestDecapsulator(KeyRing([vector_key()])).feed(bytes(short))


def test_single_use() -> None:
    gateway = ChunkedRequestDecapsulator(KeyRing([vector_key()]))
    with pytest.raises(ContextReused):  # no header yet
        gateway.response_encapsulator()
    feed_all(gateway, [vector_request()])
    with pytest.raises(ContextReused):
        gateway.feed(b"")
    with pytest.raises(ContextReused):
        gateway.finish()
    sender = gateway.response_encapsulator()
    with pytest.raises(ContextReused):
        gateway.response_encapsulator()
    sender.start()
    with pytest.raises(ContextReused):
        sender.start()
    sender.finish(b"done")
    with pytest.raises(ContextReused):
        sender.encapsulate_chunk(b"more")
    with pytest.raises(ContextReused):
        sender.finish()
    client = vector_client()
    client.response_decapsulator()
    with pytest.raises(ContextReused):
        client.response_decapsulator()
    client.finish()
    with pytest.raises(ContextReused):
        client.encapsulate_chunk(b"late")


def test_reprs_hold_no_secrets() -> None:
    client = vector_client()
    gateway = ChunkedRequestDecapsulator(KeyRing([vector_key()]))
    feed_all(gateway, [vector_request()])
    sender = gateway.response_encapsulator(_response_nonce=h("response_nonce"))
    text = repr(client) + repr(gateway) + repr(sender) + repr(client.response_decapsulator())
    for name in ("skR", "skE", "aead_key", "prk", "request_bhttp"):
        assert V[name] not in text


def test_25_mib_is_linear_for_any_slicing() -> None:
    body = bytes(25 << 20)
    client = ChunkedRequestEncapsulator(KEYS[KemId.X25519_SHA256].config, ALL_SUITES[0])
    stream = client.start() + client.encapsulate_chunk(body) + client.finish()
    for piece in (len(stream), 65536, 1000):
        gateway = ChunkedRequestDecapsulator(RING)
        started = time.perf_counter()
        total = 0
        view = memoryview(stream)
        for start in range(0, len(stream), piece):
            total += sum(map(len, gateway.feed(view[start : start + piece])))
        gateway.finish()
        assert total == len(body)
        assert time.perf_counter() - started < 10, piece
