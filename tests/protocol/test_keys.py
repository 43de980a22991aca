"""Key configs (RFC 9458 §3), gateway keys and the key ring."""

from __future__ import annotations

import struct

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, x25519
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.errors import ConfigError, KeyConfigError, UnknownKeyId
from gateway.protocol.keys import (
    AeadId,
    GatewayKey,
    KdfId,
    KemId,
    KeyConfig,
    KeyRing,
    SymmetricSuite,
    decode_key_configs,
    encode_key_configs,
)
from tests.support.ohttp_keys import ALL_SUITES, RFC_SUITES
from tests.support.vectors import load_vectors

RFC = load_vectors()["rfc9458_appendix_a"]
DKP = load_vectors()["derive_key_pair_martinthomson"]
# Deterministic keys, one per KEM, for the property tests.
KEYS = {kem: GatewayKey.derive(7, kem, bytes(range(64)), ALL_SUITES) for kem in KemId}


def rfc_key() -> GatewayKey:
    return GatewayKey.from_private_bytes(
        1, KemId.X25519_SHA256, bytes.fromhex(RFC["skR"]), RFC_SUITES
    )


# --- vectors --------------------------------------------------------------------------------


def test_rfc9458_key_config_from_private_key() -> None:
    key = rfc_key()
    assert key.config.public_key.hex() == RFC["pkR"]
    assert key.config.encode().hex() == RFC["key_config"]
    assert KeyConfig.decode(bytes.fromhex(RFC["key_config"])) == key.config


def test_rfc9458_ohttp_keys_list() -> None:
    ring = KeyRing([rfc_key()])
    assert ring.encoded_configs.hex() == RFC["application_ohttp_keys"]
    assert decode_key_configs(bytes.fromhex(RFC["application_ohttp_keys"])) == [rfc_key().config]


def test_martinthomson_derive_key_pair() -> None:
    key = GatewayKey.derive(1, KemId.X25519_SHA256, bytes.fromhex(DKP["ikm"]), RFC_SUITES)
    assert key.config.encode().hex() == DKP["key_config"]


# --- key sources ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("curve", "kem"), [(ec.SECP256R1(), KemId.P256_SHA256), (ec.SECP384R1(), KemId.P384_SHA384)]
)
def test_from_cryptography_ec_keys(curve: ec.EllipticCurve, kem: KemId) -> None:
    private = ec.generate_private_key(curve)
    key = GatewayKey.from_cryptography(3, private, ALL_SUITES)
    assert key.kem_id is kem
    assert key.config.public_key == private.public_key().public_bytes(
        Encoding.X962, PublicFormat.UncompressedPoint
    )
    raw = private.private_numbers().private_value.to_bytes(len(key.config.public_key) // 2, "big")
    assert GatewayKey.from_private_bytes(3, kem, raw, ALL_SUITES).config == key.config


def test_from_cryptography_refuses_other_keys() -> None:
    with pytest.raises(KeyConfigError):
        GatewayKey.from_cryptography(1, ec.generate_private_key(ec.SECP521R1()), ALL_SUITES)
    with pytest.raises(KeyConfigError):
        GatewayKey.from_cryptography(1, x25519.X25519PrivateKey.generate(), ALL_SUITES)  # type: ignore[arg-type]


@pytest.mark.parametrize("kem", list(KemId))
def test_generate_gives_distinct_valid_keys(kem: KemId) -> None:
    first = GatewayKey.generate(1, kem, ALL_SUITES)
    second = GatewayKey.generate(1, kem, ALL_SUITES)
    assert first.config.public_key != second.config.public_key
    assert KeyConfig.decode(first.config.encode()) == first.config


def test_bad_private_keys() -> None:
    with pytest.raises(KeyConfigError):
        GatewayKey.from_private_bytes(1, KemId.P256_SHA256, bytes(31), ALL_SUITES)
    with pytest.raises(KeyConfigError):  # zero is not a valid P-256 scalar
        GatewayKey.from_private_bytes(1, KemId.P256_SHA256, bytes(32), ALL_SUITES)
    with pytest.raises(KeyConfigError):
        GatewayKey.derive(1, KemId.X25519_SHA256, b"short", ALL_SUITES)


def test_private_key_never_in_repr() -> None:
    key = rfc_key()
    text = repr(key) + str(key) + repr(KeyRing([key]))
    assert RFC["skR"] not in text
    assert RFC["skR"] not in text.lower()
    assert "redacted" in repr(key)
    for kem, derived in KEYS.items():
        raw = derived.private_key.to_private_bytes().hex()
        assert raw not in repr(derived), kem


# --- strict decoding ------------------------------------------------------------------------


def config_bytes(
    *, kem: int = 0x20, pk: bytes = bytes(range(1, 33)), algs: bytes = b"\x00\x01\x00\x01"
) -> bytes:
    return struct.pack(">BH", 5, kem) + pk + struct.pack(">H", len(algs)) + algs


def test_trailing_bytes_are_refused() -> None:
    with pytest.raises(KeyConfigError):
        KeyConfig.decode(bytes.fromhex(RFC["key_config"]) + b"\x00")
    with pytest.raises(KeyConfigError):
        decode_key_configs(bytes.fromhex(RFC["application_ohttp_keys"]) + b"\x00")


@pytest.mark.parametrize(
    "algs",
    [b"", b"\x00\x01", b"\x00\x01\x00\x01\x00\x01", b"\x00\x01\x00"],
    ids=["zero", "two", "six", "three"],
)
def test_bad_symmetric_algorithms_lengths(algs: bytes) -> None:
    with pytest.raises(KeyConfigError):
        KeyConfig.decode(config_bytes(algs=algs))
    entry = config_bytes(algs=algs)
    with pytest.raises(KeyConfigError):  # a malformed entry fails the whole list
        decode_key_configs(
            encode_key_configs([rfc_key().config]) + struct.pack(">H", len(entry)) + entry
        )


def test_length_field_larger_than_data() -> None:
    data = config_bytes()[:-4] + b"\x00\x08\x00\x01\x00\x01"
    with pytest.raises(KeyConfigError):
        KeyConfig.decode(data)


@pytest.mark.parametrize(("kem", "length"), [(0x20, 31), (0x20, 33), (0x10, 64), (0x11, 65)])
def test_wrong_public_key_length(kem: int, length: int) -> None:
    with pytest.raises(KeyConfigError):
        KeyConfig.decode(config_bytes(kem=kem, pk=b"\x04" + bytes(length - 1)))


def test_invalid_ec_point_is_refused() -> None:
    with pytest.raises(KeyConfigError):
        KeyConfig.decode(config_bytes(kem=0x10, pk=b"\x04" + bytes(64)))


def test_truncated_configs() -> None:
    encoded = bytes.fromhex(RFC["key_config"])
    for cut in range(len(encoded)):
        with pytest.raises(KeyConfigError):
            KeyConfig.decode(encoded[:cut])
    listed = bytes.fromhex(RFC["application_ohttp_keys"])
    for cut in range(1, len(listed)):
        with pytest.raises(KeyConfigError):
            decode_key_configs(listed[:cut])


def test_zero_length_list_entry_is_malformed() -> None:
    with pytest.raises(KeyConfigError):
        decode_key_configs(b"\x00\x00")


def test_unsupported_kem_is_skipped_in_a_list_but_refused_alone() -> None:
    x448 = struct.pack(">BH", 9, 0x21) + bytes(56) + b"\x00\x04\x00\x01\x00\x01"
    listed = struct.pack(">H", len(x448)) + x448 + encode_key_configs([rfc_key().config])
    assert decode_key_configs(listed) == [rfc_key().config]
    with pytest.raises(KeyConfigError):
        KeyConfig.decode(x448)


def test_unsupported_pairs_are_dropped() -> None:
    algs = b"\x00\x01\xff\xff" + b"\x00\x09\x00\x01" + b"\x00\x01\x00\x03"
    config = KeyConfig.decode(config_bytes(algs=algs))
    assert config.suites == (SymmetricSuite(KdfId.HKDF_SHA256, AeadId.CHACHA20_POLY1305),)
    with pytest.raises(KeyConfigError):  # export-only is all it lists: unusable
        KeyConfig.decode(config_bytes(algs=b"\x00\x01\xff\xff"))
    entry = config_bytes(algs=b"\x00\x01\xff\xff")
    assert decode_key_configs(struct.pack(">H", len(entry)) + entry) == []


def test_constructor_validates() -> None:
    public = rfc_key().config.public_key
    with pytest.raises(KeyConfigError):
        KeyConfig(256, KemId.X25519_SHA256, public, RFC_SUITES)
    with pytest.raises(KeyConfigError):
        KeyConfig(1, KemId.X25519_SHA256, public, ())
    with pytest.raises(KeyConfigError):
        KeyConfig(1, KemId.P256_SHA256, public, RFC_SUITES)


# --- key ring -------------------------------------------------------------------------------


def test_key_ring_rotation_with_overlap() -> None:
    old = rfc_key()
    new = GatewayKey.derive(2, KemId.P384_SHA384, bytes(48), (ALL_SUITES[4],))
    ring = KeyRing([old])
    ring.add(new)
    assert ring.key_ids == (1, 2)
    assert ring.get(2) is new
    assert ring.encoded_configs == encode_key_configs([old.config, new.config])
    assert decode_key_configs(ring.encoded_configs) == [old.config, new.config]
    ring.remove(1)
    assert ring.key_ids == (2,)
    assert ring.configs == (new.config,)
    with pytest.raises(UnknownKeyId):
        ring.get(1)
    with pytest.raises(UnknownKeyId):
        ring.remove(1)
    with pytest.raises(ConfigError):
        ring.add(new)
    assert len(ring) == 1


# --- properties -----------------------------------------------------------------------------

suites = st.lists(
    st.builds(SymmetricSuite, st.sampled_from(list(KdfId)), st.sampled_from(list(AeadId))),
    min_size=1,
    max_size=12,
).map(tuple)
configs = st.builds(
    lambda key_id, kem, chosen: KeyConfig(key_id, kem, KEYS[kem].config.public_key, chosen),
    st.integers(0, 255),
    st.sampled_from(list(KemId)),
    suites,
)


@given(configs)
def test_key_config_round_trip(config: KeyConfig) -> None:
    assert KeyConfig.decode(config.encode()) == config


@settings(max_examples=50)
@given(st.lists(configs, max_size=5))
def test_key_config_list_round_trip(listed: list[KeyConfig]) -> None:
    encoded = encode_key_configs(listed)
    assert decode_key_configs(encoded) == listed
    assert encode_key_configs(decode_key_configs(encoded)) == encoded
