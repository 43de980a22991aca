"""Keys and suites shared by the OHTTP tests: deterministic, one gateway key per KEM."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from gateway.protocol.keys import AeadId, GatewayKey, KdfId, KemId, KeyRing, SymmetricSuite

ALL_SUITES = tuple(SymmetricSuite(kdf, aead) for kdf in KdfId for aead in AeadId)
"""Every (KDF, AEAD) pair we support: 3 x 3."""

RFC_SUITES = (
    SymmetricSuite(KdfId.HKDF_SHA256, AeadId.AES_128_GCM),
    SymmetricSuite(KdfId.HKDF_SHA256, AeadId.CHACHA20_POLY1305),
)
"""The pairs of the RFC 9458 and chunked-08 Appendix A key configs."""


def derived_keys(
    first_key_id: int, suites: tuple[SymmetricSuite, ...] = ALL_SUITES
) -> dict[KemId, GatewayKey]:
    """One DeriveKeyPair key per KEM, key ids counting up from ``first_key_id``."""
    return {
        kem: GatewayKey.derive(first_key_id + i, kem, bytes(range(32)), suites)
        for i, kem in enumerate(KemId)
    }


def ring_of(keys: Mapping[KemId, GatewayKey]) -> KeyRing:
    return KeyRing(keys.values())


def hex_reader(vectors: Mapping[str, object]) -> Callable[[str], bytes]:
    """``h(name)``: the vector field ``name`` decoded from hex."""

    def h(name: str) -> bytes:
        return bytes.fromhex(str(vectors[name]))

    return h


def vector_key(vectors: Mapping[str, object], key_id: int = 1) -> GatewayKey:
    """The X25519 gateway key of an Appendix A vector set (its skR, the RFC suites)."""
    return GatewayKey.from_private_bytes(
        key_id, KemId.X25519_SHA256, hex_reader(vectors)("skR"), RFC_SUITES
    )
