"""RFC 9458 §4 encapsulation, both sides: vectors, round trips for every suite, failures."""

from __future__ import annotations

import struct

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.errors import (
    ConfigError,
    ContextReused,
    DecryptionFailed,
    KeyConfigError,
    MalformedRequestHeader,
    ResponseDecryptionFailed,
    SuiteNotAllowed,
    UnknownKeyId,
)
from gateway.protocol._hpke import response_key_material, suite
from gateway.protocol.keys import AeadId, KdfId, KemId, KeyRing, SymmetricSuite
from gateway.protocol.ohttp import (
    REQUEST_LABEL,
    RESPONSE_LABEL,
    RequestHeader,
    decapsulate_request,
    encapsulate_request,
)
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
KEYS = derived_keys(10)
RING = ring_of(KEYS)
h = hex_reader(RFC)


def rfc_ring() -> KeyRing:
    return KeyRing([vector_key(RFC)])


# --- RFC 9458 Appendix A, byte for byte ------------------------------------------------------


def test_header_and_info() -> None:
    header = RequestHeader(1, KemId.X25519_SHA256, KdfId.HKDF_SHA256, AeadId.AES_128_GCM)
    assert header.encode() == h("hdr")
    assert header.info(REQUEST_LABEL) == h("info")
    assert RequestHeader.decode(h("hdr")) == header


def test_client_encapsulates_the_rfc_request() -> None:
    config = rfc_ring().get(1).config
    encapsulated, context = encapsulate_request(
        config, RFC_SUITES[0], h("request_bhttp"), _ephemeral_private_key=h("skE")
    )
    assert encapsulated == h("encapsulated_request")
    assert context.enc == h("pkE_enc")
    assert context.decapsulate_response(h("encapsulated_response")) == h("response_bhttp")


def test_gateway_decapsulates_and_encapsulates_the_rfc_messages() -> None:
    request, context = decapsulate_request(rfc_ring(), h("encapsulated_request"))
    assert request == h("request_bhttp")
    assert context.enc == h("pkE_enc")
    assert context.header.encode() == h("hdr")
    exported = context.exporter().export(RESPONSE_LABEL, 16)
    assert exported == h("exported_secret")
    chosen = context.suite
    assert h("salt") == context.enc + h("response_nonce")
    assert chosen.hpke.kdf.extract(h("salt"), exported) == h("prk")
    key, nonce = response_key_material(
        chosen, context.exporter(), RESPONSE_LABEL, context.enc, h("response_nonce")
    )
    assert (key, nonce) == (h("aead_key"), h("aead_nonce"))
    assert AESGCM(key).encrypt(nonce, h("response_bhttp"), b"") == h("encapsulated_response")[16:]
    response = context.encapsulate_response(
        h("response_bhttp"), _response_nonce=h("response_nonce")
    )
    assert response == h("encapsulated_response")


# --- round trips ----------------------------------------------------------------------------


@pytest.mark.parametrize("kem", list(KemId))
@pytest.mark.parametrize("chosen", ALL_SUITES, ids=lambda s: f"{s.kdf_id.name}-{s.aead_id.name}")
def test_round_trip_every_suite(kem: KemId, chosen: SymmetricSuite) -> None:
    run_round_trip(kem, chosen, b"request body", b"response body")


@settings(max_examples=60, deadline=None)
@given(
    st.sampled_from(list(KemId)),
    st.sampled_from(ALL_SUITES),
    st.binary(max_size=300),
    st.binary(max_size=300),
)
def test_round_trip_property(
    kem: KemId, chosen: SymmetricSuite, request: bytes, response: bytes
) -> None:
    run_round_trip(kem, chosen, request, response)


def run_round_trip(kem: KemId, chosen: SymmetricSuite, request: bytes, response: bytes) -> None:
    encapsulated, client = encapsulate_request(KEYS[kem].config, chosen, request)
    assert (
        len(encapsulated) == 7 + suite(kem, chosen.kdf_id, chosen.aead_id).n_enc + len(request) + 16
    )
    opened, server = decapsulate_request(RING, encapsulated)
    assert opened == request
    assert server.enc == client.enc
    sealed = server.encapsulate_response(response)
    assert (
        len(sealed)
        == max(12, suite(kem, chosen.kdf_id, chosen.aead_id).key_size) + len(response) + 16
    )
    assert client.decapsulate_response(sealed) == response


def test_memoryview_and_bytearray_inputs() -> None:
    encapsulated, client = encapsulate_request(
        KEYS[KemId.X25519_SHA256].config, ALL_SUITES[0], bytearray(b"x")
    )
    opened, server = decapsulate_request(RING, memoryview(encapsulated))
    assert opened == b"x"
    assert (
        client.decapsulate_response(bytearray(server.encapsulate_response(memoryview(b"y"))))
        == b"y"
    )


def test_response_nonces_are_fresh() -> None:
    encapsulated, _ = encapsulate_request(KEYS[KemId.X25519_SHA256].config, ALL_SUITES[0], b"x")
    first = decapsulate_request(RING, encapsulated)[1].encapsulate_response(b"same")
    second = decapsulate_request(RING, encapsulated)[1].encapsulate_response(b"same")
    assert first[:16] != second[:16]
    assert first != second


# --- failures -------------------------------------------------------------------------------


def rfc_request() -> bytearray:
    return bytearray(h("encapsulated_request"))


def test_unknown_key_id() -> None:
    data = rfc_request()
    data[0] = 2
    with pytest.raises(UnknownKeyId):
        decapsulate_request(rfc_ring(), bytes(data))


def test_suite_not_listed_for_the_key() -> None:
    data = rfc_request()
    data[5:7] = b"\x00\x02"  # AES-256-GCM is not in the RFC config
    with pytest.raises(SuiteNotAllowed):
        decapsulate_request(rfc_ring(), bytes(data))


def test_kem_mismatch() -> None:
    data = rfc_request()
    data[1:3] = b"\x00\x10"  # P-256 against the X25519 key
    with pytest.raises(SuiteNotAllowed):
        decapsulate_request(rfc_ring(), bytes(data))


def test_export_only_never_accepted() -> None:
    data = rfc_request()
    data[5:7] = b"\xff\xff"
    with pytest.raises(SuiteNotAllowed):
        decapsulate_request(rfc_ring(), bytes(data))


@pytest.mark.parametrize(
    ("offset", "value"), [(1, b"\x00\x21"), (3, b"\x00\x09"), (5, b"\x00\x04")]
)
def test_unknown_algorithm_ids(offset: int, value: bytes) -> None:
    data = rfc_request()
    data[offset : offset + 2] = value
    with pytest.raises(MalformedRequestHeader):
        decapsulate_request(rfc_ring(), bytes(data))


def test_short_header_and_short_enc() -> None:
    data = h("encapsulated_request")
    for cut in range(7 + 32):
        with pytest.raises(MalformedRequestHeader):
            decapsulate_request(rfc_ring(), data[:cut])


def test_short_ciphertext() -> None:
    data = h("encapsulated_request")
    for cut in range(7 + 32, len(data)):
        with pytest.raises(DecryptionFailed):
            decapsulate_request(rfc_ring(), data[:cut])


def test_zero_x25519_enc() -> None:
    data = rfc_request()
    data[7:39] = bytes(32)
    with pytest.raises(DecryptionFailed):
        decapsulate_request(rfc_ring(), bytes(data))


def test_invalid_p256_enc() -> None:
    encapsulated, _ = encapsulate_request(KEYS[KemId.P256_SHA256].config, ALL_SUITES[0], b"x")
    data = bytearray(encapsulated)
    data[7 + 1 : 7 + 65] = bytes(64)  # not a point on the curve
    with pytest.raises(DecryptionFailed):
        decapsulate_request(RING, bytes(data))


def test_every_bit_flip_in_enc_or_ciphertext_fails() -> None:
    data = h("encapsulated_request")
    for index in range(7, len(data)):
        flipped = bytearray(data)
        flipped[index] ^= 0x01
        with pytest.raises(DecryptionFailed):
            decapsulate_request(rfc_ring(), bytes(flipped))


def test_response_tag_flip_and_truncation() -> None:
    for index in range(len(h("encapsulated_response"))):
        flipped = bytearray(h("encapsulated_response"))
        flipped[index] ^= 0x80
        _, client = encapsulate_request(
            rfc_ring().get(1).config, RFC_SUITES[0], b"", _ephemeral_private_key=h("skE")
        )
        with pytest.raises(ResponseDecryptionFailed):
            client.decapsulate_response(bytes(flipped))
    for cut in range(len(h("encapsulated_response"))):
        _, client = encapsulate_request(
            rfc_ring().get(1).config, RFC_SUITES[0], b"", _ephemeral_private_key=h("skE")
        )
        with pytest.raises(ResponseDecryptionFailed):
            client.decapsulate_response(h("encapsulated_response")[:cut])


def test_contexts_are_single_use() -> None:
    encapsulated, client = encapsulate_request(
        KEYS[KemId.X25519_SHA256].config, ALL_SUITES[0], b"x"
    )
    _, server = decapsulate_request(RING, encapsulated)
    response = server.encapsulate_response(b"once")
    with pytest.raises(ContextReused):
        server.encapsulate_response(b"twice")
    assert client.decapsulate_response(response) == b"once"
    with pytest.raises(ContextReused):
        client.decapsulate_response(response)


def test_client_refuses_unlisted_suite_and_bad_seams() -> None:
    config = rfc_ring().get(1).config
    with pytest.raises(KeyConfigError):
        encapsulate_request(config, SymmetricSuite(KdfId.HKDF_SHA384, AeadId.AES_256_GCM), b"x")
    with pytest.raises(KeyConfigError):
        encapsulate_request(config, RFC_SUITES[0], b"x", _ephemeral_private_key=b"short")
    _, server = decapsulate_request(rfc_ring(), h("encapsulated_request"))
    with pytest.raises(ConfigError):
        server.encapsulate_response(b"", _response_nonce=b"short")


def test_reprs_and_errors_hold_no_secrets() -> None:
    request, server = decapsulate_request(rfc_ring(), h("encapsulated_request"))
    _, client = encapsulate_request(
        rfc_ring().get(1).config, RFC_SUITES[0], request, _ephemeral_private_key=h("skE")
    )
    text = repr(server) + repr(client)
    for secret in ("skR", "skE", "request_bhttp", "aead_key", "exported_secret", "prk"):
        assert RFC[secret] not in text
    data = rfc_request()
    data[-1] ^= 1
    with pytest.raises(DecryptionFailed) as caught:
        decapsulate_request(rfc_ring(), bytes(data))
    assert str(caught.value) == "Decryption failed."
    assert data.hex()[:40] not in repr(caught.value)


def test_header_struct_is_seven_bytes() -> None:
    assert RequestHeader.SIZE == struct.calcsize(">BHHH") == 7


def test_large_bodies_round_trip_in_place() -> None:
    # Above the in-place threshold the response is sealed into one preallocated buffer.
    body = bytes(range(256)) * 4096  # 1 MiB
    chosen = SymmetricSuite(KdfId.HKDF_SHA384, AeadId.AES_256_GCM)
    encapsulated, client = encapsulate_request(KEYS[KemId.P384_SHA384].config, chosen, body)
    opened, server = decapsulate_request(RING, encapsulated)
    assert opened == body
    sealed = server.encapsulate_response(body)
    assert isinstance(sealed, memoryview)
    assert len(sealed) == 32 + len(body) + 16
    assert client.decapsulate_response(sealed) == body
