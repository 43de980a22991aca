"""Key release backends: what a KMS hands the gateway, and the one call a lifecycle makes.

A backend is given a verified-fresh MAA token and the RSA key the token's runtime data names
(:class:`WrappingKey`), and returns the HPKE private keys the KMS released under that token:

    keys: list[ReleasedKey] = await backend.release(token, wrapping_key)

Backends: :mod:`~gateway.trust.kms.akv` (Key Vault Premium / Managed HSM Secure Key Release),
:mod:`~gateway.trust.kms.ccf` (Azure's confidential KMS), :mod:`~gateway.trust.kms.dev` (keys
made in memory; only in explicit dev mode).

Guarantees of every backend: TLS is verified; the KMS's answer is authenticated before any key in
it is used (JWS chain and vault host for Key Vault, ledger receipts for the confidential KMS);
the key is unwrapped only with the wrapping key's own ``decrypt`` (on the vTPM route, the TPM);
failures raise :class:`~gateway.errors.KeyReleaseError` subclasses, a refusal by the KMS
:class:`~gateway.errors.KeyReleaseRefused` carrying the KMS's code and reason.

Never: logs, prints or puts into an error the token, the wrapped or unwrapped key; private
material appears in no ``repr``.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.serialization import load_der_private_key

from gateway.errors import KeyReleaseRefused, KeyUnwrapFailed, ReleasedKeyInvalid, TpmError
from gateway.protocol.keys import AeadId, GatewayKey, KdfId, KemId, SymmetricSuite
from gateway.trust.jwk import rsa_public_jwk

# RSA-OAEP with the given hash (MGF1 with the same hash), as the KMSs use it.
OaepDecrypt = Callable[[bytes, hashes.HashAlgorithm], bytes]

# DHKEM(P-384) deployments' suite first (Microsoft's client takes the first), then the rest.
P384_SUITES = (
    SymmetricSuite(KdfId.HKDF_SHA384, AeadId.AES_256_GCM),
    SymmetricSuite(KdfId.HKDF_SHA256, AeadId.AES_128_GCM),
    SymmetricSuite(KdfId.HKDF_SHA256, AeadId.CHACHA20_POLY1305),
)
P256_SUITES = (
    SymmetricSuite(KdfId.HKDF_SHA256, AeadId.AES_128_GCM),
    SymmetricSuite(KdfId.HKDF_SHA256, AeadId.CHACHA20_POLY1305),
    SymmetricSuite(KdfId.HKDF_SHA384, AeadId.AES_256_GCM),
)
_CURVES: dict[type[ec.EllipticCurve], tuple[KemId, tuple[SymmetricSuite, ...]]] = {
    ec.SECP256R1: (KemId.P256_SHA256, P256_SUITES),
    ec.SECP384R1: (KemId.P384_SHA384, P384_SUITES),
}


TPM_WRAPPING_KEY_ID = "TpmEphemeralEncryptionKey"
_TPM_OAEP = {"sha256": "oaep-sha256", "sha1": "oaep-sha1"}


@dataclass(frozen=True)
class WrappingKey:
    """The RSA key a KMS wraps released keys to, named by ``kid`` in the token's runtime keys.

    On the sev-guest route it is the gateway's own key (:meth:`from_private_key`); on the vTPM
    route it is ``TpmEphemeralEncryptionKey`` and ``decrypt`` is a TPM2_RSA_Decrypt.
    """

    kid: str
    public_key: rsa.RSAPublicKey = field(repr=False)
    decrypt: OaepDecrypt = field(repr=False)

    @classmethod
    def from_private_key(cls, kid: str, private_key: rsa.RSAPrivateKey) -> WrappingKey:
        def decrypt(ciphertext: bytes, algorithm: hashes.HashAlgorithm) -> bytes:
            oaep = padding.OAEP(mgf=padding.MGF1(algorithm), algorithm=algorithm, label=None)
            return private_key.decrypt(ciphertext, oaep)

        return cls(kid, private_key.public_key(), decrypt)

    @classmethod
    def from_tpm(
        cls, public_key: rsa.RSAPublicKey, decrypt: Callable[[bytes, str], bytes]
    ) -> WrappingKey:
        """The vTPM route: ``TpmEphemeralEncryptionKey``, decrypted inside the TPM.

        ``decrypt(ciphertext, scheme)`` is the azure-vtpm provider's (``oaep-sha256`` or
        ``oaep-sha1``). A TPM has no OAEP-SHA-384, so RSA_AES_KEY_WRAP_384 cannot be unwrapped
        here: use _256 (the default) on this route. A ciphertext the TPM refuses is
        :class:`KeyUnwrapFailed`; losing the TPM, its key or its PCR policy raises as the TPM
        layer does, since only new evidence recovers from those.
        """

        def tpm_decrypt(ciphertext: bytes, algorithm: hashes.HashAlgorithm) -> bytes:
            scheme = _TPM_OAEP.get(algorithm.name)
            if scheme is None:
                raise KeyUnwrapFailed("the TPM cannot decrypt RSA-OAEP with this hash")
            try:
                return decrypt(ciphertext, scheme)
            except TpmError as error:
                if type(error) is not TpmError:
                    raise  # unavailable, key lost, PCR policy: the lifecycle must re-attest
                raise KeyUnwrapFailed("the TPM could not unwrap the released key") from error

        return cls(TPM_WRAPPING_KEY_ID, public_key, tpm_decrypt)

    @property
    def modulus_bytes(self) -> int:
        return (self.public_key.key_size + 7) // 8

    def jwk(self) -> dict[str, Any]:
        """The public JWK to put in the attested runtime data's ``keys``."""
        return rsa_public_jwk(self.public_key, kid=self.kid)

    def unwrap(self, ciphertext: bytes, algorithm: hashes.HashAlgorithm) -> bytes:
        """RSA-OAEP decrypt, with any failure (wrong key, corrupted bytes) as KeyUnwrapFailed."""
        if len(ciphertext) != self.modulus_bytes:
            raise KeyUnwrapFailed("wrapped key length does not match the wrapping key")
        try:
            return self.decrypt(ciphertext, algorithm)
        except (ValueError, TypeError) as error:
            raise KeyUnwrapFailed() from error


@dataclass(frozen=True)
class ReleasedKey:
    """An HPKE private key a KMS released under attestation.

    ``key_id`` is the RFC 9458 key identifier it is served under; ``origin`` names the KMS object
    (the versioned Key Vault key URL, or ``ccf kid N``) for logs and events.
    """

    key_id: int
    private_key: ec.EllipticCurvePrivateKey = field(repr=False)
    released_at: datetime.datetime
    origin: str
    suites: tuple[SymmetricSuite, ...] = ()

    def __post_init__(self) -> None:
        if not 0 <= self.key_id <= 255:
            raise ReleasedKeyInvalid("key id must be 0..255")
        if type(self.private_key.curve) not in _CURVES:
            raise ReleasedKeyInvalid("released key is not a P-256 or P-384 key")

    @property
    def kem_id(self) -> KemId:
        return _CURVES[type(self.private_key.curve)][0]

    def gateway_key(self) -> GatewayKey:
        """The HPKE DHKEM key, with ``suites`` (default: the curve's natural set)."""
        suites = self.suites or _CURVES[type(self.private_key.curve)][1]
        return GatewayKey.from_cryptography(self.key_id, self.private_key, suites)


def ec_key_from_pkcs8(material: bytes) -> ec.EllipticCurvePrivateKey:
    """A released PKCS#8 key, accepted only if it is EC P-256 or P-384."""
    try:
        key = load_der_private_key(material, password=None)
    except (ValueError, TypeError) as error:
        raise ReleasedKeyInvalid("released key is not a PKCS#8 private key") from error
    if not isinstance(key, ec.EllipticCurvePrivateKey) or type(key.curve) not in _CURVES:
        raise ReleasedKeyInvalid("released key is not a P-256 or P-384 key")
    return key


_CODE = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,63}")
_REASON = re.compile(r"[ -~]{1,300}")
# A run of base64/hex this long is a token, a key or a ciphertext, never part of a reason.
_BLOB = re.compile(r"[A-Za-z0-9+/=_-]{48,}")


def refused(message: str, code: object, reason: object) -> KeyReleaseRefused:
    """A KMS refusal carrying the KMS's error code and stated reason, when they are safe text.

    The reason is what an SRE needs to fix a release policy (e.g. which claim failed), so it is
    kept, but only as printable ASCII with nothing that looks like a token or key in it.
    """
    safe_code = code if isinstance(code, str) and _CODE.fullmatch(code) else ""
    safe_reason = ""
    if isinstance(reason, str) and _REASON.fullmatch(reason) and not _BLOB.search(reason):
        safe_reason = reason
    return KeyReleaseRefused(message, code=safe_code, detail=safe_reason)


def now_utc() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class KmsBackend(Protocol):
    """What the key lifecycle calls. Implementations are async and safe to call repeatedly."""

    name: str

    async def release(self, token: str, wrapping_key: WrappingKey) -> Sequence[ReleasedKey]:
        """Release the current key(s) under ``token``, unwrapped with ``wrapping_key``."""
        ...

    async def aclose(self) -> None:
        """Release connections; the backend is unusable afterwards."""
        ...
