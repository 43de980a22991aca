"""The seam between the trust lifecycle and the app: which keys may decrypt, and whether to serve.

The app only reads a :class:`KeySource`. Whoever owns the keys writes it: dev mode installs keys
generated (or derived from a seed) in memory at startup; the trust lifecycle (attest → release →
ready, gateway/trust/) installs released keys (:meth:`KeySource.install`), publishes the
attestation document (:meth:`KeySource.publish_attestation`), rotates keys with another
``install``, or stops serving (:meth:`KeySource.fail`). The trust layer cannot import the server, so
it receives this object through an interface of its own with these methods.
Installing a new key ring is one reference swap, so a request in flight keeps the ring it started
with. Dev keys are derived with HKDF from the seed, so replicas and workers given the same seed
serve identical key configs (RFC 9458 §7: distinct keys partition the anonymity set).
"""

from __future__ import annotations

import enum
import secrets
import time
from collections.abc import Callable

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from gateway.protocol.keys import (
    AeadId,
    GatewayKey,
    KdfId,
    KemId,
    KeyRing,
    SymmetricSuite,
)


class AttestationState(enum.Enum):
    """Where the key lifecycle stands; ``dev`` means keys exist but are not confidential."""

    PENDING = "pending"
    ATTESTED = "attested"
    FAILED = "failed"
    DEV = "dev"


# The natural suite of each KEM first: clients that take the first suite (Microsoft's client
# takes symmetric[0]) get the one its deployments use; every registered pair follows.
_ALL_SUITES = tuple(SymmetricSuite(kdf, aead) for kdf in KdfId for aead in AeadId)
_FIRST_SUITE = {
    KemId.X25519_SHA256: SymmetricSuite(KdfId.HKDF_SHA256, AeadId.AES_128_GCM),
    KemId.P256_SHA256: SymmetricSuite(KdfId.HKDF_SHA256, AeadId.AES_128_GCM),
    KemId.P384_SHA384: SymmetricSuite(KdfId.HKDF_SHA384, AeadId.AES_256_GCM),
}
DEV_KEMS = ((1, KemId.X25519_SHA256), (2, KemId.P384_SHA384))


def suites_for(kem_id: KemId) -> tuple[SymmetricSuite, ...]:
    """Every symmetric suite, the KEM's natural one first."""
    first = _FIRST_SUITE[kem_id]
    return (first, *(suite for suite in _ALL_SUITES if suite != first))


def derive_ikm(seed: bytes, kem_id: KemId) -> bytes:
    """Input keying material for DeriveKeyPair, one independent value per KEM."""
    info = b"ohttp-gateway dev key " + kem_id.name.encode()
    return HKDF(algorithm=hashes.SHA512(), length=64, salt=None, info=info).derive(seed)


def dev_key_ring(seed: bytes | None = None) -> KeyRing:
    """X25519 (key id 1) and P-384 (key id 2) keys: random, or derived from ``seed``."""
    keys = []
    for key_id, kem_id in DEV_KEMS:
        ikm = derive_ikm(seed if seed is not None else secrets.token_bytes(32), kem_id)
        keys.append(GatewayKey.derive(key_id, kem_id, ikm, suites_for(kem_id)))
    return KeyRing(keys)


class KeySource:
    """The keys the app decrypts with, when they were loaded, and the attestation state."""

    def __init__(self, *, dev: bool) -> None:
        self.dev = dev
        self._ring: KeyRing | None = None
        self._loaded_at: dict[int, float] = {}
        self.state = AttestationState.DEV if dev else AttestationState.PENDING
        self.attestation: bytes | None = None
        self.token_expiry: float | None = None
        # Called when a request names a key id not in the ring (the lifecycle refreshes).
        self.on_unknown_key: Callable[[], None] | None = None

    def install(self, ring: KeyRing, state: AttestationState | None = None) -> None:
        """Serve ``ring`` from now on; key ids already known keep their load time."""
        now = time.time()
        self._loaded_at = {kid: self._loaded_at.get(kid, now) for kid in ring.key_ids}
        self._ring = ring
        if state is not None:
            self.state = state

    def publish_attestation(self, document: bytes, token_expiry: float) -> None:
        """The JSON served at /.well-known/ohttp-gateway/attestation (the MAA token and what a
        client needs to re-verify it and its binding to the served key configs)."""
        self.attestation = document
        self.token_expiry = token_expiry

    def fail(self) -> None:
        """The lifecycle lost its keys or its attestation: stop serving."""
        self._ring = None
        self._loaded_at = {}
        self.attestation = None
        self.token_expiry = None
        self.state = AttestationState.FAILED

    @property
    def key_ring(self) -> KeyRing | None:
        """The ring to decrypt with, or None when no usable key is loaded."""
        if self.state not in (AttestationState.ATTESTED, AttestationState.DEV):
            return None
        return self._ring

    def key_ages(self, now: float | None = None) -> dict[int, float]:
        """Seconds since each active key was loaded."""
        now = time.time() if now is None else now
        return {kid: max(0.0, now - loaded) for kid, loaded in self._loaded_at.items()}

    @classmethod
    def for_dev(cls, seed: bytes | None) -> KeySource:
        source = cls(dev=True)
        source.install(dev_key_ring(seed), AttestationState.DEV)
        return source
