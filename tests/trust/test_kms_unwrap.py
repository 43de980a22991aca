"""The pure parts of key release: Key Vault's key_hsm wrap/unwrap for each algorithm, the
confidential KMS's COSE_Key, released-key checks, and the fuzz invariant for every decoder."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from pathlib import Path

import cbor2
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from gateway.emulators.keyvault_signing import ReleaseSigner
from gateway.errors import (
    ConfigError,
    KeyUnwrapFailed,
    ReleasedKeyInvalid,
    ReleaseResponseInvalid,
)
from gateway.trust.kms import ReleasedKey, ec_key_from_pkcs8, now_utc, refused
from gateway.trust.kms.cose import decode_cose_key, encode_cose_key
from gateway.trust.kms.dev import DevBackend
from gateway.trust.kms.skr import ENC_HASHES, unwrap_key_hsm, verify_release, wrap_key_hsm
from tests.support.fuzzing import assert_parses_or_raises_ours, cases
from tests.support.kms_world import rsa_wrapping_key

WRAPPING = rsa_wrapping_key()
P384 = ec.generate_private_key(ec.SECP384R1())
PKCS8 = P384.private_bytes(
    serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
)


@pytest.mark.parametrize("enc", sorted(ENC_HASHES))
def test_key_hsm_round_trip(enc: str) -> None:
    key_hsm = wrap_key_hsm(PKCS8, WRAPPING.public_key, WRAPPING.kid, enc)
    assert unwrap_key_hsm(key_hsm, WRAPPING, enc) == PKCS8
    # EC P-384 in a 2048-bit wrap: 256 + KWP(185 -> 192 + 8) bytes, as research §5.3 measured
    blob = json.loads(base64.urlsafe_b64decode(key_hsm + "=" * (-len(key_hsm) % 4)))
    ciphertext = base64.urlsafe_b64decode(blob["ciphertext"] + "=" * (-len(blob["ciphertext"]) % 4))
    assert len(ciphertext) == 256 + (len(PKCS8) + 7) // 8 * 8 + 8


def test_key_hsm_for_another_kid_or_algorithm_is_refused() -> None:
    key_hsm = wrap_key_hsm(PKCS8, WRAPPING.public_key, "someone-else", "RSA_AES_KEY_WRAP_256")
    with pytest.raises(ReleaseResponseInvalid):
        unwrap_key_hsm(key_hsm, WRAPPING, "RSA_AES_KEY_WRAP_256")
    key_hsm = wrap_key_hsm(PKCS8, WRAPPING.public_key, WRAPPING.kid, "CKM_RSA_AES_KEY_WRAP")
    with pytest.raises(ReleaseResponseInvalid):
        unwrap_key_hsm(key_hsm, WRAPPING, "RSA_AES_KEY_WRAP_256")


def test_oaep_hash_mismatch_does_not_unwrap() -> None:
    key_hsm = wrap_key_hsm(PKCS8, WRAPPING.public_key, WRAPPING.kid, "RSA_AES_KEY_WRAP_384")
    blob = json.loads(base64.urlsafe_b64decode(key_hsm + "=" * (-len(key_hsm) % 4)))
    blob["header"]["enc"] = "RSA_AES_KEY_WRAP_256"  # header lies about the OAEP hash
    relabelled = base64.urlsafe_b64encode(json.dumps(blob).encode()).decode().rstrip("=")
    with pytest.raises(KeyUnwrapFailed):
        unwrap_key_hsm(relabelled, WRAPPING, "RSA_AES_KEY_WRAP_256")


def test_only_p256_and_p384_keys_are_accepted() -> None:
    assert ec_key_from_pkcs8(PKCS8).curve.name == "secp384r1"
    p521 = ec.generate_private_key(ec.SECP521R1()).private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(ReleasedKeyInvalid):
        ec_key_from_pkcs8(p521)
    with pytest.raises(ReleasedKeyInvalid):
        ec_key_from_pkcs8(b"\x30\x03\x02\x01\x00")
    with pytest.raises(ReleasedKeyInvalid):
        ReleasedKey(256, P384, now_utc(), "test")


def test_released_key_repr_hides_the_private_key() -> None:
    released = ReleasedKey(3, P384, now_utc(), "ccf kid 3")
    text = repr(released)
    assert "private_key" not in text
    assert str(P384.private_numbers().private_value) not in text
    assert "decrypt" not in repr(WRAPPING)


def test_refusal_keeps_a_safe_reason_and_drops_blobs() -> None:
    ok = refused("m", "Forbidden", "claim x-ms-sevsnpvm-is-debuggable fails equals.")
    assert (ok.code, ok.detail) == ("Forbidden", "claim x-ms-sevsnpvm-is-debuggable fails equals.")
    leaky = refused(
        "m", "bad code!", "token eyJhbGciOiJSUzI1NiJ9eyJhbGciOiJSUzI1NiJ9eyJhbGciOiJSUzI1NiJ9"
    )
    assert (leaky.code, leaky.detail) == ("", "")
    assert str(leaky) == "m"


def test_cose_key_round_trip_and_microsoft_label_order() -> None:
    data = encode_cose_key(P384, 5)
    assert data[0] == 0xA5
    assert data[1] == 0x23
    decoded = decode_cose_key(data)
    assert decoded.key_id == 5
    assert decoded.private_key.private_numbers() == P384.private_numbers()


@pytest.mark.parametrize(
    "mutation",
    [
        "extra label",
        "missing kid",
        "kid 256",
        "curve P-256",
        "x of another key",
        "short d",
        "d zero",
    ],
)
def test_cose_key_shapes_are_refused(mutation: str) -> None:
    key = cbor2.loads(encode_cose_key(P384, 5))
    other = cbor2.loads(encode_cose_key(ec.generate_private_key(ec.SECP384R1()), 5))
    if mutation == "extra label":
        key[1] = 2
    elif mutation == "missing kid":
        del key[4]
    elif mutation == "kid 256":
        key[4] = 256
    elif mutation == "curve P-256":
        key[-1] = 1
    elif mutation == "x of another key":
        key[-2] = other[-2]
    elif mutation == "short d":
        key[-4] = key[-4][1:]
    else:
        key[-4] = bytes(48)
    with pytest.raises(ReleasedKeyInvalid):
        decode_cose_key(cbor2.dumps(key))


def test_dev_backend_is_refused_without_explicit_dev_mode(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="dev mode"):
        DevBackend(dev_mode=False)
    with pytest.raises(ConfigError):
        DevBackend(dev_mode="yes")  # type: ignore[arg-type]
    import asyncio

    (generated,) = asyncio.run(DevBackend(dev_mode=True, key_id=4).release("", WRAPPING))
    assert generated.key_id == 4
    assert generated.gateway_key().key_id == 4
    pem = tmp_path / "dev.pem"
    pem.write_bytes(
        P384.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    (loaded,) = asyncio.run(DevBackend(dev_mode=True, key_file=pem).release("", WRAPPING))
    assert loaded.private_key.private_numbers() == P384.private_numbers()
    pem.write_text("not a key")
    with pytest.raises(ConfigError):
        DevBackend(dev_mode=True, key_file=pem)


# --- fuzz invariant: every decoder parses or raises our own error ---------------------------


def test_fuzz_cose_key() -> None:
    for data in cases([encode_cose_key(P384, 7), encode_cose_key(P384, 23)], 3000, seed=0xC05E):
        assert_parses_or_raises_ours(decode_cose_key, data)


def test_fuzz_key_hsm() -> None:
    seed = wrap_key_hsm(PKCS8, WRAPPING.public_key, WRAPPING.kid, "RSA_AES_KEY_WRAP_256")

    def decode(data: bytes) -> None:
        ec_key_from_pkcs8(unwrap_key_hsm(data.decode("latin-1"), WRAPPING, "RSA_AES_KEY_WRAP_256"))

    blob = base64.urlsafe_b64decode(seed + "=" * (-len(seed) % 4))
    for data in cases([seed.encode()], 600, seed=0x45A):
        assert_parses_or_raises_ours(decode, data)

    def decode_blob(data: bytes) -> None:
        decode(base64.urlsafe_b64encode(data).rstrip(b"="))

    for data in cases([blob], 600, seed=0x45B):
        assert_parses_or_raises_ours(decode_blob, data)


def test_fuzz_release_jws() -> None:
    signer = ReleaseSigner("vault.example")
    payload = {
        "request": {"enc": "RSA_AES_KEY_WRAP_256", "nonce": "n"},
        "response": {
            "key": {
                "key": {"kid": "https://vault.example/keys/k/1", "kty": "EC-HSM", "key_hsm": "e30"},
                "tags": {"ohttp-key-id": "3"},
            }
        },
    }
    jws = signer.sign(payload)

    def decode(data: bytes) -> None:
        verify_release(
            data.decode("latin-1"),
            vault_url="https://vault.example",
            key_name="k",
            nonce="n",
            enc="RSA_AES_KEY_WRAP_256",
            trust_roots=[signer.root],
            now=now_utc(),
        )

    decode(jws.encode())  # the seed itself verifies
    for data in cases([jws.encode()], 400, seed=0x1E5):
        assert_parses_or_raises_ours(decode, data)
    _head, body, _signature = jws.split(".")
    raw_body = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))

    def decode_payload(data: bytes) -> None:
        # a payload with a valid signature: only the payload checks stand between it and use
        resigned = signer.sign(json.loads(data)) if _json(data) else jws
        decode(resigned.encode())

    for data in cases([raw_body], 300, seed=0x1E6):
        assert_parses_or_raises_ours(decode_payload, data)


@pytest.mark.parametrize(
    ("tags", "expected"),
    [
        (None, {}),
        ({}, {}),
        ({"ohttp-key-id": "4"}, {"ohttp-key-id": "4"}),
        ([], None),
        ("ohttp-key-id=4", None),
        ({"ohttp-key-id": 4}, None),
    ],
)
def test_release_tags_are_text_or_refused(tags: object, expected: dict[str, str] | None) -> None:
    signer = ReleaseSigner("vault.example")
    key = {"kid": "https://vault.example/keys/k/v1", "kty": "EC-HSM", "key_hsm": "e30"}
    payload = {
        "request": {"enc": "RSA_AES_KEY_WRAP_256", "nonce": "n"},
        "response": {"key": {"key": key, "tags": tags}},
    }

    def verify() -> Mapping[str, str]:
        return verify_release(
            signer.sign(payload),
            vault_url="https://vault.example",
            key_name="k",
            nonce="n",
            enc="RSA_AES_KEY_WRAP_256",
            trust_roots=[signer.root],
            now=now_utc(),
        ).tags

    if expected is None:
        with pytest.raises(ReleaseResponseInvalid):
            verify()
    else:
        assert verify() == expected


def _json(data: bytes) -> bool:
    try:
        return isinstance(json.loads(data), dict)
    except (ValueError, UnicodeDecodeError):
        return False


def test_cose_key_as_the_reference_kms_hand_builds_it() -> None:
    # microsoft/azure-transparent-kms writes these bytes by hand (MaaWrapping.ts):
    # a5 23 5830 d 21 5830 x 22 5830 y 20 02 04 kid
    numbers = P384.private_numbers()
    public = numbers.public_numbers

    def field(label: int, value: int) -> bytes:
        return bytes([label, 0x58, 0x30]) + value.to_bytes(48, "big")

    data = (
        b"\xa5"
        + field(0x23, numbers.private_value)
        + field(0x21, public.x)
        + field(0x22, public.y)
        + b"\x20\x02\x04\x11"
    )
    decoded = decode_cose_key(data)
    assert decoded.key_id == 17
    assert decoded.private_key.private_numbers() == numbers
