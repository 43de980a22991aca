"""Cross-check against an independent HPKE: cryptography's native (OpenSSL) implementation.

cryptography's ``hpke.Suite`` has no exporter, so it cannot produce an OHTTP response, but its
single-shot base mode must open our Encapsulated Requests (``hdr ‖ enc ‖ ct`` with the RFC 9458
info) and we must open its ``enc ‖ ct`` behind a header, for every KEM, KDF and AEAD.
"""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric import ec, x25519

from gateway.protocol.keys import AeadId, GatewayKey, KdfId, KemId, KeyRing, SymmetricSuite
from gateway.protocol.ohttp import (
    REQUEST_LABEL,
    RequestHeader,
    decapsulate_request,
    encapsulate_request,
)
from tests.support.ohttp_keys import ALL_SUITES

NATIVE_KEM = {
    KemId.X25519_SHA256: hpke.KEM.X25519,
    KemId.P256_SHA256: hpke.KEM.P256,
    KemId.P384_SHA384: hpke.KEM.P384,
}
NATIVE_KDF = {
    KdfId.HKDF_SHA256: hpke.KDF.HKDF_SHA256,
    KdfId.HKDF_SHA384: hpke.KDF.HKDF_SHA384,
    KdfId.HKDF_SHA512: hpke.KDF.HKDF_SHA512,
}
NATIVE_AEAD = {
    AeadId.AES_128_GCM: hpke.AEAD.AES_128_GCM,
    AeadId.AES_256_GCM: hpke.AEAD.AES_256_GCM,
    AeadId.CHACHA20_POLY1305: hpke.AEAD.CHACHA20_POLY1305,
}


def native_private_key(kem: KemId) -> x25519.X25519PrivateKey | ec.EllipticCurvePrivateKey:
    if kem is KemId.X25519_SHA256:
        return x25519.X25519PrivateKey.generate()
    return ec.generate_private_key(ec.SECP256R1() if kem is KemId.P256_SHA256 else ec.SECP384R1())


def gateway_key(
    kem: KemId, private: x25519.X25519PrivateKey | ec.EllipticCurvePrivateKey
) -> GatewayKey:
    if isinstance(private, ec.EllipticCurvePrivateKey):
        return GatewayKey.from_cryptography(5, private, ALL_SUITES)
    return GatewayKey.from_private_bytes(5, kem, private.private_bytes_raw(), ALL_SUITES)


@pytest.mark.parametrize("kem", list(KemId))
@pytest.mark.parametrize("chosen", ALL_SUITES, ids=lambda s: f"{s.kdf_id.name}-{s.aead_id.name}")
def test_native_hpke_opens_our_requests_and_we_open_its(kem: KemId, chosen: SymmetricSuite) -> None:
    private = native_private_key(kem)
    key = gateway_key(kem, private)
    native = hpke.Suite(NATIVE_KEM[kem], NATIVE_KDF[chosen.kdf_id], NATIVE_AEAD[chosen.aead_id])
    header = RequestHeader(5, kem, chosen.kdf_id, chosen.aead_id)
    info = header.info(REQUEST_LABEL)

    ours, _ = encapsulate_request(key.config, chosen, b"from pyhpke")
    assert native.decrypt(ours[7:], private, info) == b"from pyhpke"

    theirs = header.encode() + native.encrypt(b"from OpenSSL", private.public_key(), info)
    opened, context = decapsulate_request(KeyRing([key]), theirs)
    assert opened == b"from OpenSSL"
    assert context.enc == theirs[7 : 7 + len(context.enc)]
