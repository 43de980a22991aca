"""The HPKE algorithms we speak, and the OHTTP response-key derivation shared by every profile.

Accepts algorithm identifiers (RFC 9180 §7) and returns cached pyhpke cipher suites plus the
sizes the wire formats need. HPKE itself is pyhpke's, except the gateway's per-request recipient
setup (:mod:`gateway.protocol._recipient`, measured faster). This module only adds what
RFC 9458 §4.4 defines outside HPKE: the response key and nonce (plain HKDF-Extract/Expand, not
the labelled forms) and the response AEAD (cryptography's AESGCM / ChaCha20Poly1305).

This module and :mod:`gateway.protocol._recipient` are where pyhpke and cryptography exceptions
are mapped to gateway errors. Nothing here keeps or prints key material beyond the objects it
returns.
"""

from __future__ import annotations

import enum
import functools
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from pyhpke import (
    AEADId,
    CipherSuite,
    KDFId,
    KEMId,
    KEMKey,
    KEMKeyInterface,
    KEMKeyPair,
    PyHPKEError,
)

from gateway.errors import GatewayError, ResponseDecryptionFailed


class KemId(enum.IntEnum):
    """HPKE KEM identifiers we support (RFC 9180 §7.1)."""

    P256_SHA256 = 0x0010
    P384_SHA384 = 0x0011
    X25519_SHA256 = 0x0020


class KdfId(enum.IntEnum):
    """HPKE KDF identifiers (RFC 9180 §7.2)."""

    HKDF_SHA256 = 0x0001
    HKDF_SHA384 = 0x0002
    HKDF_SHA512 = 0x0003


class AeadId(enum.IntEnum):
    """HPKE AEAD identifiers usable with OHTTP; Export-only (0xFFFF) never is (RFC 9458 §4.4)."""

    AES_128_GCM = 0x0001
    AES_256_GCM = 0x0002
    CHACHA20_POLY1305 = 0x0003


EXPORT_ONLY_AEAD = 0xFFFF
AEAD_TAG_LENGTH = 16  # Nt of every AEAD in AeadId


@dataclass(frozen=True)
class KemParams:
    """Sizes from RFC 9180 §7.1: encapsulated key, public key, private key."""

    n_enc: int
    n_pk: int
    n_sk: int


KEM_PARAMS = {
    KemId.P256_SHA256: KemParams(n_enc=65, n_pk=65, n_sk=32),
    KemId.P384_SHA384: KemParams(n_enc=97, n_pk=97, n_sk=48),
    KemId.X25519_SHA256: KemParams(n_enc=32, n_pk=32, n_sk=32),
}

_AEAD_KEY_SIZE = {AeadId.AES_128_GCM: 16, AeadId.AES_256_GCM: 32, AeadId.CHACHA20_POLY1305: 32}
AEAD_NONCE_SIZE = 12  # Nn of every AEAD in AeadId


Bytes = bytes | bytearray | memoryview


class Aead(Protocol):
    """What we use of cryptography's AEAD classes (they accept any contiguous buffer)."""

    def encrypt(self, nonce: bytes, data: Bytes, associated_data: bytes | None) -> bytes: ...
    def decrypt(self, nonce: bytes, data: Bytes, associated_data: bytes | None) -> bytes: ...
    def encrypt_into(
        self, nonce: bytes, data: Bytes, associated_data: bytes | None, buf: memoryview
    ) -> int: ...


def make_aead(aead_id: AeadId, key: bytes) -> Aead:
    """The cryptography AEAD object for ``aead_id`` keyed with ``key``."""
    if aead_id is AeadId.CHACHA20_POLY1305:
        return ChaCha20Poly1305(key)
    return AESGCM(key)


def kem_id_of(value: int) -> KemId | None:
    """The supported KEM with numeric id ``value``, or None."""
    try:
        return KemId(value)
    except ValueError:
        return None


def kdf_id_of(value: int) -> KdfId | None:
    """The supported KDF with numeric id ``value``, or None."""
    try:
        return KdfId(value)
    except ValueError:
        return None


def aead_id_of(value: int) -> AeadId | None:
    """The OHTTP-usable AEAD with numeric id ``value``, or None (including Export-only)."""
    try:
        return AeadId(value)
    except ValueError:
        return None


@dataclass(frozen=True, eq=False)
class Suite:
    """A full HPKE suite with the sizes OHTTP needs: Nk, Nn, the response nonce length and Nenc."""

    kem_id: KemId
    kdf_id: KdfId
    aead_id: AeadId
    hpke: CipherSuite
    key_size: int
    nonce_size: int
    n_enc: int
    response_nonce_size: int
    """max(Nn, Nk): the response nonce and exported secret length (RFC 9458 §4.4)."""


@functools.lru_cache(maxsize=64)
def suite(kem_id: KemId, kdf_id: KdfId, aead_id: AeadId) -> Suite:
    """The cached suite for these ids (all of them supported by construction)."""
    hpke = CipherSuite.new(KEMId(kem_id.value), KDFId(kdf_id.value), AEADId(aead_id.value))
    return Suite(
        kem_id=kem_id,
        kdf_id=kdf_id,
        aead_id=aead_id,
        hpke=hpke,
        key_size=_AEAD_KEY_SIZE[aead_id],
        nonce_size=AEAD_NONCE_SIZE,
        n_enc=KEM_PARAMS[kem_id].n_enc,
        response_nonce_size=max(AEAD_NONCE_SIZE, _AEAD_KEY_SIZE[aead_id]),
    )


@functools.lru_cache(maxsize=8)
def kem_suite(kem_id: KemId) -> CipherSuite:
    """A suite for KEM-only operations (key (de)serialisation, DeriveKeyPair)."""
    return suite(kem_id, KdfId.HKDF_SHA256, AeadId.AES_128_GCM).hpke


E = TypeVar("E", bound=GatewayError)
T = TypeVar("T")


def guarded(error: type[E], operation: Callable[[], T]) -> T:
    """Run a pyhpke/cryptography ``operation``; map its failures to ``error``.

    The foreign exceptions they raise for bad points, bad lengths and failed tags are ValueError
    (with subclasses), TypeError, InvalidTag and pyhpke's own errors. Their messages may describe
    the input, so the mapped error carries only its fixed default message.
    """
    try:
        return operation()
    except (ValueError, TypeError, InvalidTag, PyHPKEError) as cause:
        raise error() from cause


def deserialize_public_key(kem_id: KemId, public_key: bytes, error: type[E]) -> KEMKeyInterface:
    """pkR as a pyhpke key; ``error`` if it is not a valid point for ``kem_id``."""
    return guarded(error, lambda: _cached_public_key(kem_id, public_key))


@functools.lru_cache(maxsize=64)
def _cached_public_key(kem_id: KemId, public_key: bytes) -> KEMKeyInterface:
    # Clients encapsulate to the same few configs over and over; point decoding is not free.
    return kem_suite(kem_id).kem.deserialize_public_key(public_key)


def public_bytes_of(private_key: KEMKeyInterface) -> bytes:
    """The serialised public key (RFC 9180 SerializePublicKey) of a pyhpke private key."""
    return KEMKey.from_pyca_cryptography_key(private_key.raw.public_key()).to_public_bytes()


def ephemeral_key_pair(kem_id: KemId, private_key: bytes, error: type[E]) -> KEMKeyPair:
    """skE/pkE from raw private bytes: the test-only seam for deterministic vectors."""
    kem = kem_suite(kem_id).kem

    def build() -> KEMKeyPair:
        sk = kem.deserialize_private_key(private_key)
        return KEMKeyPair(sk, kem.deserialize_public_key(public_bytes_of(sk)))

    return guarded(error, build)


_IN_PLACE_THRESHOLD = 1 << 16


class ResponseKeys:
    """The response AEAD and its base nonce, with the chunk counter of the streamed framings.

    Chunk i is sealed with ``aead_nonce XOR I2OSP(i, Nn)`` (chunked-ohttp §6.2; the Azure profile
    does the same); a one-shot RFC 9458 response is chunk 0, whose nonce is ``aead_nonce`` itself.
    """

    __slots__ = ("_aead", "_base", "aead_nonce", "counter")

    def __init__(self, aead: Aead, aead_nonce: bytes) -> None:
        self._aead = aead
        self.aead_nonce = aead_nonce
        self._base = int.from_bytes(aead_nonce, "big")
        self.counter = 0

    def _next_nonce(self) -> bytes:
        nonce = (self._base ^ self.counter).to_bytes(len(self.aead_nonce), "big")
        self.counter += 1
        return nonce

    def seal_next(self, data: Bytes, aad: bytes) -> bytes:
        """Seal the next chunk."""
        return self._aead.encrypt(self._next_nonce(), data, aad)

    def seal_next_after(self, prefix: bytes, data: Bytes, aad: bytes) -> memoryview:
        """``prefix ‖ Seal(data)`` in one buffer: a large body is encrypted in place, not copied."""
        if len(data) < _IN_PLACE_THRESHOLD:  # small: one short copy beats the zero-filled buffer
            return memoryview(prefix + self._aead.encrypt(self._next_nonce(), data, aad))
        buffer = bytearray(len(prefix) + len(data) + AEAD_TAG_LENGTH)
        buffer[: len(prefix)] = prefix
        view = memoryview(buffer)
        self._aead.encrypt_into(self._next_nonce(), data, aad, view[len(prefix) :])
        return view

    def open_next(self, data: Bytes, aad: bytes) -> bytes:
        """Open the next chunk; ResponseDecryptionFailed if it does not authenticate."""
        nonce = self._next_nonce()
        return guarded(ResponseDecryptionFailed, lambda: self._aead.decrypt(nonce, data, aad))

    def __repr__(self) -> str:
        return f"ResponseKeys(counter={self.counter})"


class Exporter(Protocol):
    """What we use of an HPKE context: the secret exporter."""

    def export(self, exporter_context: bytes, length: int) -> bytes: ...


class HpkeOpener(Exporter, Protocol):
    """What a recipient uses of an HPKE context: Open and the exporter."""

    def open(self, ct: Bytes, aad: bytes = b"") -> bytes: ...


class HpkeContext(HpkeOpener, Protocol):
    """A pyhpke sender context as we use it (cryptography accepts any buffer)."""

    def seal(self, pt: Bytes, aad: bytes = b"") -> bytes: ...


def response_key_material(
    chosen: Suite, context: Exporter, label: bytes, enc: bytes, response_nonce: bytes
) -> tuple[bytes, bytes]:
    """RFC 9458 §4.4: secret = Export(label, max(Nn, Nk)); prk = Extract(enc ‖ nonce, secret);
    (Expand(prk, "key", Nk), Expand(prk, "nonce", Nn)). Plain HKDF, not the labelled forms."""
    digest = HKDF_HASH[chosen.kdf_id]
    secret = context.export(label, chosen.response_nonce_size)
    prk = hmac.digest(enc + response_nonce, secret, digest)  # HKDF-Extract(salt, IKM)
    return (
        hkdf_expand(digest, prk, b"key", chosen.key_size),
        hkdf_expand(digest, prk, b"nonce", chosen.nonce_size),
    )


# The hash of each KDF, for the plain HKDF of RFC 9458 §4.4. The standard library's one-shot HMAC
# avoids building a cryptography HMAC object per step: encapsulating a small response went from
# about 30 to 22 µs (bench/protocol_bench.py, gateway column).
HKDF_HASH = {KdfId.HKDF_SHA256: "sha256", KdfId.HKDF_SHA384: "sha384", KdfId.HKDF_SHA512: "sha512"}


def hkdf_expand(digest: str, prk: bytes, info: bytes, length: int) -> bytes:
    """HKDF-Expand (RFC 5869 §2.3) for ``length`` ≤ 255 · HashLen."""
    output, block, counter = b"", b"", 1
    while len(output) < length:
        block = hmac.digest(prk, block + info + bytes((counter,)), digest)
        output += block
        counter += 1
    return output[:length]


def response_keys(
    chosen: Suite, context: Exporter, label: bytes, enc: bytes, response_nonce: bytes
) -> ResponseKeys:
    """The response AEAD keyed as :func:`response_key_material` derives."""
    key, aead_nonce = response_key_material(chosen, context, label, enc, response_nonce)
    return ResponseKeys(make_aead(chosen.aead_id, key), aead_nonce)


def random_nonce(length: int) -> bytes:
    """A fresh response nonce from the OS CSPRNG."""
    return secrets.token_bytes(length)
