"""The MAA emulator's ``AzureGuest`` decision: the SNP evidence, then the vTPM evidence bound to it.

Accepts a decoded :class:`AzureGuestRequest` and the emulator's :class:`MaaVerifier` (its AMD
roots, policy and clock). Guarantees, in order, each refusal its own typed error:

1. the SNP report verifies as for ``SevSnpVm`` (chain, TCB and chip id, signature, policy), and
   its REPORT_DATA binds the HCL runtime claims (``RunTimeData``);
2. the AIK is a restricted TPM signing key, its certificate certifies exactly it (and, when the
   policy names vTPM CAs, was issued by one of them);
3. the HCL AK binding: the runtime claims' ``HCLAkPub`` is the AIK, so the TPM that quoted is
   the one the paravisor vouched for in the SNP report;
4. the quote covers exactly the policy's PCRs (sha256 bank), its digest matches the PCR values
   sent, the AIK signed it, and its qualifying data is the nonce in ``ClientPayload``;
5. the AIK certified the ephemeral key, which is a TPM-resident decryption key usable only under
   PolicyPCR over those same PCR values.

Then the token carries that ephemeral key in ``x-ms-runtime.keys`` and is sealed to it (RSAES,
as MAA does "for backcompat"). Not done, unlike MAA: replaying the TCG event log against the
PCRs (the log is accepted and ignored) and the ``x-ms-azurevm-*`` boot claims derived from it.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Mapping
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from gateway.emulators import maa_claims
from gateway.emulators.maa import VerifiedGuest
from gateway.errors import (
    CertifiedKeyMismatch,
    QuotePcrMismatch,
    TpmStructureInvalid,
    UntrustedAik,
)
from gateway.trust import tpm_verify
from gateway.trust.maa_wire import AzureGuestRequest, nonce_from_client_payload
from gateway.trust.verify import VerifiedEvidence

HCL_AK_KID = "HCLAkPub"


class GuestChecks:
    """Steps 2 to 5 for one request; step 1 is the caller's :meth:`MaaVerifier.verify_snp`."""

    def __init__(
        self,
        *,
        required_pcrs: tuple[int, ...],
        aik_roots: tuple[x509.Certificate, ...] | None,
        now: datetime.datetime,
    ) -> None:
        self._pcrs = tuple(sorted(required_pcrs))
        self._aik_roots = aik_roots
        self._now = now

    def verify(self, request: AzureGuestRequest, snp: VerifiedEvidence) -> VerifiedGuest:
        tpm = request.tpm
        aik = tpm_verify.parse_public(tpm.aik_pub)
        tpm_verify.check_attestation_key(aik)
        aik_cert = _aik_certificate(tpm.aik_cert)
        tpm_verify.aik_matches_certificate(aik, tpm.aik_cert)
        self._check_aik_issuer(aik_cert)
        tpm_verify.aik_matches_jwk(aik, _hcl_ak(snp))
        pcr_values = dict(tpm.pcrs)
        if tuple(sorted(pcr_values)) != self._pcrs:
            raise QuotePcrMismatch("quote covers other PCRs than required")
        nonce = nonce_from_client_payload(request.client_payload)
        tpm_verify.verify_quote(
            tpm.pcr_quote,
            tpm.pcr_signature,
            aik,
            nonce=nonce,
            pcrs=self._pcrs,
            pcr_values=pcr_values,
        )
        ephemeral = tpm_verify.parse_public(tpm.enc_key_pub)
        tpm_verify.verify_certify(
            tpm.enc_key_certify_info,
            tpm.enc_key_certify_info_signature,
            aik,
            ephemeral,
            nonce=nonce,
            expected_policy=tpm_verify.policy_pcr_digest(self._pcrs, pcr_values),
        )
        claims = maa_claims.azure_guest_claims(
            snp.report,
            request.runtime_data,
            ephemeral_key=ephemeral.public_key,
            attested_pcrs=list(self._pcrs),
            client_payload=request.client_payload,
            os_type=request.os.os_type,
            os_distro=request.os.distro,
            os_version=(request.os.version_major, request.os.version_minor),
        )
        return VerifiedGuest(claims, rsaes_sealer(ephemeral.public_key))

    def _check_aik_issuer(self, cert: x509.Certificate) -> None:
        if self._aik_roots is None:
            return
        if not cert.not_valid_before_utc <= self._now <= cert.not_valid_after_utc:
            raise UntrustedAik("AIK certificate is outside its validity period")
        for root in self._aik_roots:
            try:
                cert.verify_directly_issued_by(root)
            except (ValueError, TypeError, InvalidSignature):
                continue
            return
        raise UntrustedAik()


def _aik_certificate(der: bytes) -> x509.Certificate:
    cert = tpm_verify.load_certificate(der)
    try:
        cert.public_key()  # parsed lazily: a malformed key (e.g. an even exponent) raises here
    except ValueError:
        raise TpmStructureInvalid("AIK certificate key is malformed") from None
    return cert


def _hcl_ak(snp: VerifiedEvidence) -> Mapping[str, Any]:
    claims = snp.runtime_claims
    keys = () if claims is None else claims.keys
    for key in keys:
        if key.get("kid") == HCL_AK_KID:
            return key
    raise CertifiedKeyMismatch("HCL runtime claims carry no HCLAkPub")


def rsaes_sealer(key: rsa.RSAPublicKey) -> Callable[[bytes], bytes]:
    """Encrypt the inner key to the TPM ephemeral key with RSAES-PKCS1-v1_5: Microsoft's clients
    open it with TPM2_RSA_Decrypt(TPM_ALG_RSAES), "for backcompat with MAA"."""
    return lambda inner_key: key.encrypt(inner_key, padding.PKCS1v15())
