"""DSSE: the pre-authentication encoding, ECDSA P-256 signatures, a decoder that fails closed."""

from __future__ import annotations

import base64
import json

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.support.fuzzing import cases
from tools.sbom import dsse
from tools.sbom.errors import EnvelopeMalformed, KeyUnusable, SbomError, SignatureInvalid

TYPE = "application/vnd.in-toto+json"


@pytest.fixture(scope="module")
def key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def test_pae_matches_the_dsse_specification() -> None:
    # The example of the DSSE protocol document (secure-systems-lab/dsse, protocol.md).
    assert dsse.pae("http://example.com/HelloWorld", b"hello world") == (
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    )
    assert dsse.pae("", b"") == b"DSSEv1 0  0 "
    # Lengths are of the UTF-8 bytes, not of characters.
    assert dsse.pae("t\u00e9", b"x").startswith(b"DSSEv1 3 t\xc3\xa9 1 x")


def test_round_trip(key: ec.EllipticCurvePrivateKey) -> None:
    envelope = dsse.sign(TYPE, b'{"a":1}', key)
    decoded = dsse.decode(envelope.to_json())
    assert decoded == envelope
    dsse.verify(decoded, key.public_key())
    assert decoded.signatures[0].keyid == dsse.keyid(key.public_key())


@pytest.mark.parametrize("field", ["payload", "payloadType", "sig"])
def test_any_change_breaks_the_signature(key: ec.EllipticCurvePrivateKey, field: str) -> None:
    document = json.loads(dsse.sign(TYPE, b'{"a":1}', key).to_json())
    if field == "payload":
        document["payload"] = base64.b64encode(b'{"a":2}').decode()
    elif field == "payloadType":
        document["payloadType"] = "application/json"
    else:
        raw = bytearray(base64.b64decode(document["signatures"][0]["sig"]))
        raw[-1] ^= 1
        document["signatures"][0]["sig"] = base64.b64encode(bytes(raw)).decode()
    envelope = dsse.decode(json.dumps(document).encode())
    with pytest.raises(SignatureInvalid):
        dsse.verify(envelope, key.public_key())


def test_other_signer_is_refused(key: ec.EllipticCurvePrivateKey) -> None:
    other = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(SignatureInvalid):
        dsse.verify(dsse.sign(TYPE, b"x", other), key.public_key())


def test_url_safe_base64_and_empty_keyid_are_accepted(key: ec.EllipticCurvePrivateKey) -> None:
    envelope = dsse.sign(TYPE, b"\xfb\xff" * 10, key)
    document = {
        "payload": base64.urlsafe_b64encode(envelope.payload).decode().rstrip("="),
        "payloadType": TYPE,
        "signatures": [{"sig": base64.urlsafe_b64encode(envelope.signatures[0].sig).decode()}],
    }
    dsse.verify(dsse.decode(json.dumps(document).encode()), key.public_key())


def test_keys_of_other_curves_are_refused() -> None:
    p384 = ec.generate_private_key(ec.SECP384R1())
    pem = p384.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(KeyUnusable):
        dsse.load_private_key(pem)
    public = p384.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    with pytest.raises(KeyUnusable):
        dsse.load_public_key(public)
    with pytest.raises(KeyUnusable):
        dsse.load_private_key(b"not a key")
    with pytest.raises(KeyUnusable):
        dsse.load_public_key(b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")


@pytest.mark.parametrize(
    "document",
    [
        b"",
        b"[]",
        b'{"payloadType": "t", "payload": "", "signatures": []}',
        b'{"payloadType": "", "payload": "", "signatures": [{"sig": ""}]}',
        b'{"payloadType": "t", "payload": "!!", "signatures": [{"sig": ""}]}',
        b'{"payloadType": "t", "payload": "", "signatures": [{"sig": 1}]}',
        b'{"payloadType": "t", "payload": "", "signatures": [{"sig": "", "keyid": 5}]}',
        b'{"payloadType": "t", "payload": "", "signatures": ["x"]}',
        b"1" * 5000,
        b"[" * 100000,
        b"\xff\xfe",
    ],
)
def test_malformed_envelopes_are_refused(document: bytes) -> None:
    with pytest.raises(EnvelopeMalformed):
        dsse.decode(document)


def test_error_messages_never_echo_content() -> None:
    secret = "c2VjcmV0LXRva2Vu!"
    with pytest.raises(EnvelopeMalformed) as caught:
        dsse.decode(json.dumps({"payloadType": "t", "payload": secret, "signatures": []}).encode())
    assert secret not in str(caught.value)


def test_fuzz_decode_and_verify(key: ec.EllipticCurvePrivateKey) -> None:
    # The fuzz invariant for this decoder: a result or our own error, nothing else; and what
    # decodes either verifies (the untouched seed) or raises SignatureInvalid.
    seed = dsse.sign(TYPE, b'{"_type":"x"}', key).to_json()
    compact = json.dumps(json.loads(seed), separators=(",", ":")).encode()
    verified = 0
    for data in cases([seed, compact], count=3000, seed=7):
        try:
            envelope = dsse.decode(data)
            dsse.verify(envelope, key.public_key())
            verified += 1
        except SbomError:
            continue
    assert verified >= 2
