"""Verify-then-encrypt: decide whether a gateway's attestation document earns our request (pure).

Accepts a parsed :class:`AttestationDocument`, the client's :class:`AttestationPolicy`, the JWKS
of the policy's pinned MAA issuer (fetched by the caller) and ``now``. :func:`verify_document`
checks, in this order, each failure its own error naming the check:

1. simulated evidence / dev mode only under ``allow_simulated``
   (:class:`SimulatedEvidenceNotAllowed`);
2. the MAA token: RS256, a key of the pinned issuer's ``/certs``, ``iss``, ``exp``/``nbf``/``iat``
   (the :class:`TokenError` family: signature, wrong signer, issuer, expiry, truncation);
3. the token's claims against the policy: attestation type, age, claims sections present,
   compliance status, debug off, launch measurement / host data / id-key digest allowlists,
   minimum SVNs;
4. the binding: the token's user-data is the document's, and its first half is SHA-256 of
   exactly the document's ``application/ohttp-keys`` (:class:`KeyBindingMismatch`);
5. the evidence itself, re-verified from AMD's root (chain, report signature, debug off,
   measurement allowlist, REPORT_DATA = H(runtime data), user-data) and compared with the claims
   MAA signed (:class:`EvidenceClaimsMismatch`).

:func:`check_key_configs` then refuses to encrypt to any key configs other than the attested
bytes (:class:`KeyConfigsChanged`). Never does: I/O, or accept on a partial check.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from gateway.client.document import AttestationDocument
from gateway.client.policy import SVN_NAMES, AttestationPolicy
from gateway.errors import (
    AttestationTypeNotAllowed,
    ClaimsMissing,
    ComplianceStatusNotAllowed,
    DebuggableGuest,
    EvidenceClaimsMismatch,
    HostDataNotAllowed,
    IdKeyDigestNotAllowed,
    KeyBindingMismatch,
    KeyConfigsChanged,
    LaunchMeasurementNotAllowed,
    SimulatedEvidenceNotAllowed,
    SvnBelowMinimum,
    TokenTooOld,
)
from gateway.protocol.keys import KeyConfig, decode_key_configs
from gateway.trust.amd import AmdTrust, parse_pem_chain, self_signed
from gateway.trust.policy import SnpPolicy
from gateway.trust.token import ATTESTATION_TYPES, AttestationToken, SevSnpVmClaims, verify_token
from gateway.trust.verify import VerifiedEvidence, verify_hcl_evidence, verify_snp_evidence


@dataclass(frozen=True)
class VerifiedGateway:
    """What a verified document lets the client do: encrypt to ``configs`` until ``expires_at``."""

    key_configs: bytes = field(repr=False)
    configs: tuple[KeyConfig, ...]
    expires_at: float
    issuer: str
    simulated: bool
    token: AttestationToken = field(repr=False)


def verify_document(
    document: AttestationDocument,
    *,
    policy: AttestationPolicy,
    jwks: Mapping[str, Any],
    now: float,
) -> VerifiedGateway:
    if document.simulated and not policy.allow_simulated:
        raise SimulatedEvidenceNotAllowed()
    issuer = policy.maa_issuer or document.maa_issuer
    token = verify_token(
        document.token, jwks=jwks, issuer=issuer, now=now, attestation_types=ATTESTATION_TYPES
    )
    claims = _check_claims(token, policy, now)
    _check_binding(token, document)
    evidence = _verify_evidence(document, policy, now)
    _compare(evidence, claims)
    return VerifiedGateway(
        key_configs=document.key_configs,
        configs=tuple(decode_key_configs(document.key_configs)),
        expires_at=float(min(token.expires_at, document.expires_at)),
        issuer=issuer,
        simulated=document.simulated,
        token=token,
    )


def check_key_configs(verified: VerifiedGateway, key_configs: bytes) -> tuple[KeyConfig, ...]:
    """The configs to encrypt to, only if they are byte for byte the attested ones."""
    if not hmac.compare_digest(verified.key_configs, key_configs):
        raise KeyConfigsChanged()
    return verified.configs


def _check_claims(token: AttestationToken, policy: AttestationPolicy, now: float) -> SevSnpVmClaims:
    if token.attestation_type not in policy.attestation_types:
        raise AttestationTypeNotAllowed()
    if now - token.issued_at > policy.max_token_age:
        raise TokenTooOld()
    tee = token.isolation_tee
    claims = token.sevsnpvm if tee is None else tee.sevsnpvm
    if claims is None:
        raise ClaimsMissing("attestation token lacks the x-ms-sevsnpvm claims")
    if token.user_data is None:
        raise ClaimsMissing("attestation token lacks the runtime claims (user-data)")
    status = token.compliance_status if tee is None else tee.compliance_status
    if status not in policy.compliance_statuses:
        raise ComplianceStatusNotAllowed()
    if claims.is_debuggable:
        raise DebuggableGuest()
    _allowed(claims.launchmeasurement, policy.launch_measurements, LaunchMeasurementNotAllowed)
    _allowed(claims.hostdata, policy.host_data, HostDataNotAllowed)
    _allowed(claims.idkeydigest, policy.id_key_digests, IdKeyDigestNotAllowed)
    svns = dict(zip(SVN_NAMES, _svns(claims), strict=True))
    if any(svns[name] < minimum for name, minimum in policy.minimum_svn.items()):
        raise SvnBelowMinimum()
    return claims


def _svns(claims: SevSnpVmClaims) -> tuple[int, ...]:
    return (
        claims.bootloader_svn,
        claims.tee_svn,
        claims.snpfw_svn,
        claims.microcode_svn,
        claims.guestsvn,
    )


def _allowed(value: str, allowlist: frozenset[str] | None, error: type[Exception]) -> None:
    if allowlist is not None and value.lower() not in allowlist:
        raise error()


def _check_binding(token: AttestationToken, document: AttestationDocument) -> None:
    user_data = token.user_data or b""
    if not hmac.compare_digest(user_data, document.user_data):
        raise KeyBindingMismatch("attestation token user-data is not the document's binding")
    if not hmac.compare_digest(user_data[:32], hashlib.sha256(document.key_configs).digest()):
        raise KeyBindingMismatch()


def _trust(document: AttestationDocument, policy: AttestationPolicy) -> AmdTrust:
    if policy.amd_roots is not None:
        return AmdTrust.of(policy.amd_roots)
    if policy.allow_simulated and document.simulated:
        # Dev mode: the simulated chain brings its own root. This proves consistency, not hardware.
        return AmdTrust.of(self_signed(document.certificates))
    return AmdTrust.pinned()


def _verify_evidence(
    document: AttestationDocument, policy: AttestationPolicy, now: float
) -> VerifiedEvidence:
    measurements = policy.launch_measurements
    snp_policy = SnpPolicy(
        allow_debug=False,
        measurements=None if measurements is None else frozenset(map(bytes.fromhex, measurements)),
    )
    chain = parse_pem_chain(document.certificates)
    when = datetime.fromtimestamp(now, UTC)
    trust = _trust(document, policy)
    if document.evidence_kind == "azure-hcl":
        return verify_hcl_evidence(
            document.report,
            chain,
            trust=trust,
            now=when,
            policy=snp_policy,
            expected_user_data=document.user_data,
        )
    return verify_snp_evidence(
        document.report,
        chain,
        trust=trust,
        now=when,
        policy=snp_policy,
        runtime_data=document.runtime_data,
        expected_user_data=document.user_data,
    )


def _compare(evidence: VerifiedEvidence, claims: SevSnpVmClaims) -> None:
    report = evidence.report
    pairs = (
        (report.measurement, claims.launchmeasurement),
        (report.host_data, claims.hostdata),
        (report.id_key_digest, claims.idkeydigest),
        (report.report_data, claims.reportdata),
    )
    for raw, text in pairs:
        if raw.hex() != text.lower():
            raise EvidenceClaimsMismatch()
