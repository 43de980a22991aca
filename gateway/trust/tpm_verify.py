"""Pure verification of TPM 2.0 attestation structures: quotes, key certifications, public areas.

Accepts the marshalled TPM structures a vTPM produces (TPM 2.0 Library, Part 2) and raw RSA
signatures, exactly as MAA's AzureGuest route receives them:

* ``TPMS_ATTEST`` bytes (the signed body of TPM2_Quote and TPM2_Certify, no size prefix);
* ``TPM2B_PUBLIC`` bytes (the AIK's and the ephemeral key's public areas, with the size prefix);
* the raw RSA signature bytes (``TPMT_SIGNATURE.signature.rsassa.sig``), or a whole
  ``TPMT_SIGNATURE`` through :func:`parse_signature`.

Guarantees: every decoder either returns a fully parsed value or raises
:class:`~gateway.errors.TpmStructureInvalid`; trailing bytes are refused. Every check raises its
own :class:`~gateway.errors.TpmVerificationError` subclass with a fixed message. Comparisons of
digests and nonces are constant time.

Never: imports tpm2-pytss (so the MAA emulator and clients need no native TSS library), touches
a device, or accepts an unsigned or self-described structure without checking the signature.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.utils import CryptographyDeprecationWarning

from gateway.errors import (
    CertifiedKeyMismatch,
    EvidenceError,
    QuotePcrMismatch,
    TpmNonceMismatch,
    TpmSignatureInvalid,
    TpmStructureInvalid,
)
from gateway.trust.jwk import rsa_public_key_from_jwk

TPM_GENERATED_VALUE = 0xFF544347
TPM_ST_ATTEST_CERTIFY = 0x8017
TPM_ST_ATTEST_QUOTE = 0x8018
TPM_ALG_RSA = 0x0001
TPM_ALG_SHA1 = 0x0004
TPM_ALG_SHA256 = 0x000B
TPM_ALG_SHA384 = 0x000C
TPM_ALG_SHA512 = 0x000D
TPM_ALG_NULL = 0x0010
TPM_ALG_RSASSA = 0x0014
TPM_ALG_RSAPSS = 0x0016
TPM_CC_POLICY_PCR = 0x0000017F

# TPMA_OBJECT bits (Part 2, 8.3).
FIXED_TPM = 1 << 1
FIXED_PARENT = 1 << 4
SENSITIVE_DATA_ORIGIN = 1 << 5
USER_WITH_AUTH = 1 << 6
ADMIN_WITH_POLICY = 1 << 7
RESTRICTED = 1 << 16
DECRYPT = 1 << 17
SIGN_ENCRYPT = 1 << 18

_HASHES: dict[int, tuple[str, type[hashes.HashAlgorithm]]] = {
    TPM_ALG_SHA1: ("sha1", hashes.SHA1),
    TPM_ALG_SHA256: ("sha256", hashes.SHA256),
    TPM_ALG_SHA384: ("sha384", hashes.SHA384),
    TPM_ALG_SHA512: ("sha512", hashes.SHA512),
}
PCR_SELECT_BYTES = 3  # 24 PCRs, the PC Client platform's bank size


class _Reader:
    """A bounds-checked cursor over big-endian TPM marshalling."""

    def __init__(self, data: bytes, what: str) -> None:
        self._data = data
        self._offset = 0
        self._what = what

    def take(self, count: int) -> bytes:
        end = self._offset + count
        if end > len(self._data):
            raise TpmStructureInvalid(f"{self._what} is truncated")
        chunk = self._data[self._offset : end]
        self._offset = end
        return chunk

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return int(struct.unpack(">H", self.take(2))[0])

    def u32(self) -> int:
        return int(struct.unpack(">I", self.take(4))[0])

    def u64(self) -> int:
        return int(struct.unpack(">Q", self.take(8))[0])

    def tpm2b(self) -> bytes:
        return self.take(self.u16())

    def end(self) -> None:
        if self._offset != len(self._data):
            raise TpmStructureInvalid(f"{self._what} has trailing bytes")


# --- PCR selections and digests ------------------------------------------------------------


@dataclass(frozen=True)
class PcrSelection:
    """One bank of a ``TPML_PCR_SELECTION``: a hash algorithm and the selected PCR indexes."""

    hash_alg: int
    pcrs: tuple[int, ...]

    def marshal(self) -> bytes:
        bitmap = bytearray(PCR_SELECT_BYTES)
        for index in self.pcrs:
            bitmap[index // 8] |= 1 << (index % 8)
        return struct.pack(">HB", self.hash_alg, len(bitmap)) + bytes(bitmap)


def marshal_pcr_selection(selections: Sequence[PcrSelection]) -> bytes:
    """A ``TPML_PCR_SELECTION``, as TPM2_PolicyPCR and TPM2_Quote hash it."""
    return struct.pack(">I", len(selections)) + b"".join(s.marshal() for s in selections)


def _parse_pcr_selection(reader: _Reader) -> tuple[PcrSelection, ...]:
    count = reader.u32()
    if count > 16:
        raise TpmStructureInvalid("PCR selection lists too many banks")
    banks = []
    for _ in range(count):
        hash_alg = reader.u16()
        bitmap = reader.take(reader.u8())
        pcrs = tuple(i for i in range(len(bitmap) * 8) if bitmap[i // 8] & (1 << (i % 8)))
        banks.append(PcrSelection(hash_alg, pcrs))
    return tuple(banks)


def pcr_digest(pcr_values: Mapping[int, bytes], pcrs: Sequence[int]) -> bytes:
    """SHA-256 of the selected PCR values concatenated in index order (a quote's pcrDigest)."""
    try:
        return hashlib.sha256(b"".join(pcr_values[i] for i in sorted(pcrs))).digest()
    except KeyError:
        raise QuotePcrMismatch("a selected PCR has no value") from None


def policy_pcr_digest(pcrs: Sequence[int], pcr_values: Mapping[int, bytes]) -> bytes:
    """The policyDigest of a fresh SHA-256 session after TPM2_PolicyPCR over the sha256 bank.

    policyDigest = H(0…0 || TPM_CC_PolicyPCR || TPML_PCR_SELECTION || H(PCR values)).
    """
    selection = marshal_pcr_selection([PcrSelection(TPM_ALG_SHA256, tuple(sorted(pcrs)))])
    return hashlib.sha256(
        bytes(32) + struct.pack(">I", TPM_CC_POLICY_PCR) + selection + pcr_digest(pcr_values, pcrs)
    ).digest()


# --- TPMT_PUBLIC (RSA) -----------------------------------------------------------------------


@dataclass(frozen=True)
class TpmPublic:
    """An RSA ``TPMT_PUBLIC``: what the TPM says about a key, and the key's TPM name."""

    name_alg: int
    object_attributes: int
    auth_policy: bytes
    scheme: int
    scheme_hash: int
    key_bits: int
    public_key: rsa.RSAPublicKey
    name: bytes

    def has(self, attributes: int) -> bool:
        return self.object_attributes & attributes == attributes


def parse_public(tpm2b_public: bytes) -> TpmPublic:
    """Parse a marshalled ``TPM2B_PUBLIC`` holding an RSA key; compute its TPM name."""
    outer = _Reader(tpm2b_public, "TPM2B_PUBLIC")
    area = outer.tpm2b()
    outer.end()
    reader = _Reader(area, "TPMT_PUBLIC")
    if reader.u16() != TPM_ALG_RSA:
        raise TpmStructureInvalid("TPM public area is not an RSA key")
    name_alg = reader.u16()
    if name_alg not in _HASHES:
        raise TpmStructureInvalid("TPM public area has an unsupported name algorithm")
    attributes = reader.u32()
    auth_policy = reader.tpm2b()
    if reader.u16() != TPM_ALG_NULL:  # symmetric: only storage parents have one
        reader.take(4)
    scheme = reader.u16()
    scheme_hash = reader.u16() if scheme != TPM_ALG_NULL else TPM_ALG_NULL
    key_bits = reader.u16()
    exponent = reader.u32() or 65537  # 0 means the default exponent
    modulus = reader.tpm2b()
    reader.end()
    if key_bits not in (2048, 3072, 4096) or len(modulus) * 8 != key_bits:
        raise TpmStructureInvalid("TPM public area has an unusable RSA modulus")
    try:
        key = rsa.RSAPublicNumbers(exponent, int.from_bytes(modulus, "big")).public_key()
    except ValueError:
        raise TpmStructureInvalid("TPM public area has an unusable RSA modulus") from None
    name = struct.pack(">H", name_alg) + hashlib.new(_HASHES[name_alg][0], area).digest()
    return TpmPublic(name_alg, attributes, auth_policy, scheme, scheme_hash, key_bits, key, name)


# --- TPMT_SIGNATURE and TPMS_ATTEST -----------------------------------------------------------


@dataclass(frozen=True)
class TpmSignature:
    """An RSA ``TPMT_SIGNATURE``."""

    sig_alg: int
    hash_alg: int
    signature: bytes


def parse_signature(tpmt_signature: bytes) -> TpmSignature:
    """Parse a marshalled RSASSA or RSAPSS ``TPMT_SIGNATURE``."""
    reader = _Reader(tpmt_signature, "TPMT_SIGNATURE")
    sig_alg = reader.u16()
    if sig_alg not in (TPM_ALG_RSASSA, TPM_ALG_RSAPSS):
        raise TpmStructureInvalid("TPM signature is not RSASSA or RSAPSS")
    hash_alg = reader.u16()
    signature = reader.tpm2b()
    reader.end()
    return TpmSignature(sig_alg, hash_alg, signature)


@dataclass(frozen=True)
class Attest:
    """A parsed ``TPMS_ATTEST`` of type quote or certify."""

    type: int
    qualified_signer: bytes
    extra_data: bytes
    clock: int
    reset_count: int
    restart_count: int
    safe: bool
    firmware_version: int
    # quote
    pcr_selection: tuple[PcrSelection, ...] = ()
    pcr_digest: bytes = b""
    # certify
    certified_name: bytes = b""
    certified_qualified_name: bytes = b""


def parse_attest(tpms_attest: bytes) -> Attest:
    """Parse a marshalled ``TPMS_ATTEST`` produced by TPM2_Quote or TPM2_Certify."""
    reader = _Reader(tpms_attest, "TPMS_ATTEST")
    if reader.u32() != TPM_GENERATED_VALUE:
        raise TpmStructureInvalid("TPMS_ATTEST was not generated by a TPM (magic)")
    kind = reader.u16()
    signer, extra = reader.tpm2b(), reader.tpm2b()
    clock, resets, restarts, safe = reader.u64(), reader.u32(), reader.u32(), reader.u8()
    firmware = reader.u64()
    header = (kind, signer, extra, clock, resets, restarts, safe == 1, firmware)
    if kind == TPM_ST_ATTEST_QUOTE:
        selection = _parse_pcr_selection(reader)
        digest = reader.tpm2b()
        reader.end()
        return Attest(*header, pcr_selection=selection, pcr_digest=digest)
    if kind == TPM_ST_ATTEST_CERTIFY:
        name, qualified = reader.tpm2b(), reader.tpm2b()
        reader.end()
        return Attest(*header, certified_name=name, certified_qualified_name=qualified)
    raise TpmStructureInvalid("TPMS_ATTEST is neither a quote nor a certification")


def _verify_signature(signer: TpmPublic, message: bytes, signature: bytes) -> None:
    hash_alg = signer.scheme_hash if signer.scheme != TPM_ALG_NULL else TPM_ALG_SHA256
    algorithm = _HASHES.get(hash_alg, ("", hashes.SHA256))[1]()
    pad: padding.AsymmetricPadding = padding.PKCS1v15()
    if signer.scheme == TPM_ALG_RSAPSS:
        pad = padding.PSS(padding.MGF1(algorithm), padding.PSS.AUTO)
    try:
        signer.public_key.verify(signature, message, pad, algorithm)
    except InvalidSignature:
        raise TpmSignatureInvalid from None


def _check_nonce(attest: Attest, nonce: bytes) -> None:
    if not hmac.compare_digest(attest.extra_data, nonce):
        raise TpmNonceMismatch


# --- the checks the MAA emulator performs -----------------------------------------------------


def verify_quote(
    quote: bytes,
    signature: bytes,
    aik: TpmPublic,
    *,
    nonce: bytes,
    pcrs: Sequence[int],
    pcr_values: Mapping[int, bytes],
) -> Attest:
    """Check a PCR quote: AIK signature, nonce, the sha256 selection of ``pcrs``, the digest.

    ``pcr_values`` are the sha256-bank values the attester claims (index → 32 bytes); the quote's
    pcrDigest must equal SHA-256 over them in index order.
    """
    _verify_signature(aik, quote, signature)
    attest = parse_attest(quote)
    if attest.type != TPM_ST_ATTEST_QUOTE:
        raise TpmStructureInvalid("TPMS_ATTEST is not a quote")
    _check_nonce(attest, nonce)
    expected = (PcrSelection(TPM_ALG_SHA256, tuple(sorted(set(pcrs)))),)
    if attest.pcr_selection != expected:
        raise QuotePcrMismatch("quote covers other PCRs than required")
    if not hmac.compare_digest(attest.pcr_digest, pcr_digest(pcr_values, pcrs)):
        raise QuotePcrMismatch("quote PCR digest does not match the PCR values")
    return attest


def verify_certify(
    certify_info: bytes,
    signature: bytes,
    aik: TpmPublic,
    certified: TpmPublic,
    *,
    nonce: bytes,
    expected_policy: bytes | None = None,
) -> Attest:
    """Check that the AIK certified ``certified``: signature, nonce, the key's name.

    Also checks the certified key is a TPM-resident, policy-only decryption key (fixedTPM,
    fixedParent, sensitiveDataOrigin, decrypt; not userWithAuth, not sign, not restricted) and,
    when given, that its authPolicy equals ``expected_policy`` (see :func:`policy_pcr_digest`).
    """
    _verify_signature(aik, certify_info, signature)
    attest = parse_attest(certify_info)
    if attest.type != TPM_ST_ATTEST_CERTIFY:
        raise TpmStructureInvalid("TPMS_ATTEST is not a certification")
    _check_nonce(attest, nonce)
    if not hmac.compare_digest(attest.certified_name, certified.name):
        raise CertifiedKeyMismatch("certification names another key")
    required = FIXED_TPM | FIXED_PARENT | SENSITIVE_DATA_ORIGIN | DECRYPT
    forbidden = USER_WITH_AUTH | SIGN_ENCRYPT | RESTRICTED
    if not certified.has(required) or certified.object_attributes & forbidden:
        raise CertifiedKeyMismatch("certified key is not a policy-bound TPM decryption key")
    if expected_policy is not None and not hmac.compare_digest(
        certified.auth_policy, expected_policy
    ):
        raise CertifiedKeyMismatch("certified key is bound to another PCR policy")
    return attest


def check_attestation_key(aik: TpmPublic) -> None:
    """The AIK must be a TPM-resident restricted signing key."""
    required = FIXED_TPM | FIXED_PARENT | SENSITIVE_DATA_ORIGIN | RESTRICTED | SIGN_ENCRYPT
    if not aik.has(required) or aik.object_attributes & DECRYPT:
        raise CertifiedKeyMismatch("AIK is not a restricted TPM signing key")


def load_certificate(der: bytes) -> x509.Certificate:
    """A DER X.509 certificate, or :class:`TpmStructureInvalid`."""
    try:
        with warnings.catch_warnings():
            # A zero serial (common in TPM vendor and AMD certificates) only earns a warning.
            warnings.simplefilter("ignore", CryptographyDeprecationWarning)
            return x509.load_der_x509_certificate(der)
    except (ValueError, x509.InvalidVersion):
        raise TpmStructureInvalid("certificate is not DER X.509") from None


def aik_matches_certificate(aik: TpmPublic, certificate_der: bytes) -> None:
    """The AIK certificate must certify exactly the AIK's public key."""
    key = load_certificate(certificate_der).public_key()
    if not isinstance(key, rsa.RSAPublicKey) or key.public_numbers() != (
        aik.public_key.public_numbers()
    ):
        raise CertifiedKeyMismatch("AIK certificate is for another key")


def aik_matches_jwk(aik: TpmPublic, jwk: Mapping[str, Any]) -> None:
    """The HCL runtime claims' ``HCLAkPub`` JWK must be the AIK (the HCL AK binding)."""
    try:
        claimed = rsa_public_key_from_jwk(jwk)
    except EvidenceError:
        raise CertifiedKeyMismatch("HCLAkPub is not the AIK") from None
    if claimed.public_numbers() != aik.public_key.public_numbers():
        raise CertifiedKeyMismatch("HCLAkPub is not the AIK")
