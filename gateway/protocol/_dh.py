"""The Diffie-Hellman step of DHKEM (RFC 9180 §4.1, §7.1) and skR (de)serialisation, alone.

It is the part of a request's decapsulation that costs (a P-384 exchange takes about 0.4 ms), so
the gateway may compute it in another thread or in a child process
(gateway/server/agreement_child.py). That child imports this module and nothing heavier: no
pyhpke, no asyncio. KEM ids are the RFC 9180 code points as plain integers for the same reason
(``KemId`` members compare and hash equal to them).
"""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric import ec, x25519

from gateway.errors import DecryptionFailed, KeyConfigError

X25519_KEM, P256_KEM, P384_KEM = 0x0020, 0x0010, 0x0011
_CURVES: dict[int, tuple[ec.EllipticCurve, int]] = {
    P256_KEM: (ec.SECP256R1(), 32),
    P384_KEM: (ec.SECP384R1(), 48),
}

PrivateKey = x25519.X25519PrivateKey | ec.EllipticCurvePrivateKey


def diffie_hellman(kem_id: int, enc: bytes, private_key: PrivateKey) -> bytes:
    """DH(skR, pkE) of DHKEM Decap (RFC 9180 §4.1), the one expensive step of a recipient setup.

    DecryptionFailed for an unusable ``enc``: not a point of the curve, not the uncompressed form,
    a low-order X25519 point. (The setup refuses an all-zero result, wherever it was computed.)
    Pure: the gateway may run it in another thread or process and hand the result to
    :func:`gateway.protocol._recipient.setup_base_recipient`."""
    try:
        if isinstance(private_key, x25519.X25519PrivateKey):
            dh = private_key.exchange(x25519.X25519PublicKey.from_public_bytes(enc))
        else:
            if enc[:1] != b"\x04":  # SerializePublicKey is the uncompressed form only
                raise DecryptionFailed()
            peer = ec.EllipticCurvePublicKey.from_encoded_point(_CURVES[kem_id][0], enc)
            dh = private_key.exchange(ec.ECDH(), peer)
    except (ValueError, TypeError) as cause:
        raise DecryptionFailed() from cause
    return dh


def serialize_private_key(kem_id: int, private_key: PrivateKey) -> bytes:
    """SerializePrivateKey (RFC 9180 §7.1.2): Nsk bytes. (pyhpke's ``to_private_bytes`` pads a
    NIST-curve scalar to the key size in bits, not in bytes.)"""
    if isinstance(private_key, x25519.X25519PrivateKey):
        return private_key.private_bytes_raw()
    return private_key.private_numbers().private_value.to_bytes(_CURVES[kem_id][1], "big")


def deserialize_private_key(kem_id: int, secret: bytes) -> PrivateKey:
    """DeserializePrivateKey (RFC 9180 §7.1.2); KeyConfigError for a KEM or value that is not
    one."""
    try:
        if kem_id == X25519_KEM and len(secret) == 32:
            return x25519.X25519PrivateKey.from_private_bytes(secret)
        curve, size = _CURVES[kem_id]
        if len(secret) != size:
            raise KeyConfigError("private key length does not match the KEM")
        return ec.derive_private_key(int.from_bytes(secret, "big"), curve)
    except (KeyError, ValueError, TypeError) as cause:
        raise KeyConfigError("not a private key of this KEM") from cause
