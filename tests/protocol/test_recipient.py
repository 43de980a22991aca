"""Our HPKE base-mode recipient against pyhpke's sender, for every KEM, KDF and AEAD we speak.

The RFC 9458 Appendix A vectors (test_ohttp.py) and OpenSSL's own HPKE (test_ohttp_interop.py)
check it too; here it meets pyhpke contexts directly: several messages in sequence with AAD, the
exporter at several lengths, and every way an ``enc`` can be unusable.
"""

from __future__ import annotations

import random

import pytest

from gateway.errors import DecryptionFailed
from gateway.protocol._hpke import suite
from gateway.protocol._recipient import setup_base_recipient
from gateway.protocol.keys import GatewayKey, KemId, SymmetricSuite
from tests.support.ohttp_keys import ALL_SUITES, derived_keys

KEYS = derived_keys(1)
INFO = b"message/bhttp request\x00\x01\x00\x20\x00\x01\x00\x01"
CASES = [(kem, chosen) for kem in KemId for chosen in ALL_SUITES]


def _ids(case: tuple[KemId, SymmetricSuite]) -> str:
    return f"{case[0].name}-{case[1].kdf_id.name}-{case[1].aead_id.name}"


def _recipient(key: GatewayKey, chosen: SymmetricSuite, enc: bytes):  # type: ignore[no-untyped-def]
    hpke_suite = suite(key.kem_id, chosen.kdf_id, chosen.aead_id)
    return setup_base_recipient(hpke_suite, enc, key.private_key.raw, key.config.public_key, INFO)


def _sender(key: GatewayKey, chosen: SymmetricSuite):  # type: ignore[no-untyped-def]
    hpke_suite = suite(key.kem_id, chosen.kdf_id, chosen.aead_id).hpke
    public = hpke_suite.kem.deserialize_public_key(key.config.public_key)
    return hpke_suite.create_sender_context(public, INFO)


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_opens_pyhpke_messages_in_sequence_and_exports_the_same_secrets(
    case: tuple[KemId, SymmetricSuite],
) -> None:
    kem, chosen = case
    key = KEYS[kem]
    enc, sender = _sender(key, chosen)
    recipient = _recipient(key, chosen, enc)
    for index in range(4):
        aad = b"final" if index == 3 else b""
        message = bytes([index]) * (index * 100)
        assert recipient.open(sender.seal(message, aad), aad) == message
    for label, length in ((b"message/bhttp response", 16), (b"sec", 32), (b"", 97)):
        assert recipient.export(label, length) == sender.export(label, length)


def test_messages_open_only_in_order() -> None:
    key, chosen = KEYS[KemId.X25519_SHA256], ALL_SUITES[0]
    enc, sender = _sender(key, chosen)
    first, second = sender.seal(b"one", b""), sender.seal(b"two", b"")
    recipient = _recipient(key, chosen, enc)
    with pytest.raises(DecryptionFailed):
        recipient.open(second, b"")
    assert recipient.open(first, b"") == b"one"  # a failed open does not advance the sequence
    assert recipient.open(second, b"") == b"two"


def test_wrong_aad_or_tampered_ciphertext_fails() -> None:
    key, chosen = KEYS[KemId.P256_SHA256], ALL_SUITES[4]
    enc, sender = _sender(key, chosen)
    sealed = sender.seal(b"payload", b"aad")
    with pytest.raises(DecryptionFailed):
        _recipient(key, chosen, enc).open(sealed, b"other")
    with pytest.raises(DecryptionFailed):
        _recipient(key, chosen, enc).open(sealed[:-1] + bytes([sealed[-1] ^ 1]), b"aad")


@pytest.mark.parametrize(
    ("kem", "enc"),
    [
        (KemId.X25519_SHA256, bytes(32)),  # low order: all-zero shared secret
        (KemId.X25519_SHA256, b"\x01" + bytes(31)),  # low order too
        (KemId.P256_SHA256, b"\x04" + bytes(64)),  # not on the curve
        (KemId.P384_SHA384, b"\x04" + b"\xff" * 96),  # coordinates out of range
        (KemId.P384_SHA384, b"\x02" + bytes(96)),  # not the uncompressed form
        (KemId.P256_SHA256, b"\x04" + bytes(10)),  # wrong length
    ],
)
def test_unusable_enc_is_a_decryption_failure(kem: KemId, enc: bytes) -> None:
    with pytest.raises(DecryptionFailed):
        _recipient(KEYS[kem], ALL_SUITES[0], enc)


def test_mutated_enc_only_ever_fails_with_decryption_failed() -> None:
    rng = random.Random(9180)
    for kem in KemId:
        key = KEYS[kem]
        enc, _ = _sender(key, ALL_SUITES[0])
        for _ in range(150):
            mutated = bytearray(enc)
            mutated[rng.randrange(len(mutated))] ^= 1 << rng.randrange(8)
            try:
                _recipient(key, ALL_SUITES[0], bytes(mutated))
            except DecryptionFailed:
                continue  # any other exception fails the test


def test_repr_shows_no_key_material() -> None:
    key, chosen = KEYS[KemId.X25519_SHA256], ALL_SUITES[0]
    enc, _ = _sender(key, chosen)
    assert repr(_recipient(key, chosen, enc)) == "RecipientContext(sequence=0)"
