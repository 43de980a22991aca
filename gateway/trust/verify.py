"""Evidence verification end to end: parse, AMD chain, signature, policy, binding (pure).

Accepts: report bytes (bare SNP or HCL), an :class:`AmdCertChain`, an :class:`AmdTrust`, the
caller's ``now``, an :class:`SnpPolicy`, and what the verifier expects to be bound: the
runtime data (SEV_SNP), and optionally the exact 64-byte user-data or REPORT_DATA.

Guarantees, in order, each failure its own error: the report parses; the chain verifies to a
trusted ARK; CHIP_ID and REPORTED_TCB match the VCEK; the signature verifies; the policy holds;
REPORT_DATA = H(runtime data) ‖ zeros; the runtime data's ``user-data`` (or REPORT_DATA) equals
what the caller expected. Returns :class:`VerifiedEvidence` only if all of that holds.

Never does: I/O, or skip a step because an input is absent: with no ``runtime_data`` for a bare
SNP report there is nothing to bind, and that is the caller's explicit choice.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gateway.errors import ReportDataMismatch
from gateway.trust.amd import AmdCertChain, AmdTrust, VerifiedChain, chain_summary, verify_report
from gateway.trust.binding import check_report_data, check_runtime_data
from gateway.trust.hcl import HclReport, RuntimeClaims, parse_hcl_report, parse_runtime_claims
from gateway.trust.policy import SnpPolicy, check_policy
from gateway.trust.snp import SnpReport, parse_report


@dataclass(frozen=True)
class VerifiedEvidence:
    report: SnpReport
    chain: VerifiedChain
    runtime_claims: RuntimeClaims | None
    hcl: HclReport | None = None

    def to_json(self) -> dict[str, Any]:
        claims = self.runtime_claims
        return {
            "valid": True,
            "kind": "azure-hcl" if self.hcl is not None else "sev-snp",
            "report": self.report.to_json(),
            "chain": chain_summary(self.chain),
            "runtime_claims": None if claims is None else dict(claims.document),
            "user_data": None
            if claims is None or claims.user_data is None
            else claims.user_data.hex(),
        }


def verify_snp_evidence(
    report: bytes,
    chain: AmdCertChain,
    *,
    trust: AmdTrust,
    now: datetime,
    policy: SnpPolicy | None = None,
    runtime_data: bytes | None = None,
    expected_user_data: bytes | None = None,
    expected_report_data: bytes | None = None,
) -> VerifiedEvidence:
    """A bare SNP report, optionally with the runtime data its REPORT_DATA commits to."""
    parsed = parse_report(report)
    verified = _verify_platform(parsed, chain, trust, now, policy)
    claims = None
    if runtime_data is not None:
        check_runtime_data(parsed.report_data, runtime_data)
        claims = parse_runtime_claims(runtime_data)
    _check_expectations(parsed, claims, expected_user_data, expected_report_data)
    return VerifiedEvidence(parsed, verified, claims)


def verify_hcl_evidence(
    hcl_report: bytes,
    chain: AmdCertChain,
    *,
    trust: AmdTrust,
    now: datetime,
    policy: SnpPolicy | None = None,
    expected_user_data: bytes | None = None,
) -> VerifiedEvidence:
    """An Azure HCL report: its SNP report, and REPORT_DATA binding the runtime claims."""
    hcl = parse_hcl_report(hcl_report)
    verified = _verify_platform(hcl.snp, chain, trust, now, policy)
    check_runtime_data(hcl.snp.report_data, hcl.runtime_claims.raw, hcl.hash_type)
    _check_expectations(hcl.snp, hcl.runtime_claims, expected_user_data, None)
    return VerifiedEvidence(hcl.snp, verified, hcl.runtime_claims, hcl)


def _verify_platform(
    report: SnpReport,
    chain: AmdCertChain,
    trust: AmdTrust,
    now: datetime,
    policy: SnpPolicy | None,
) -> VerifiedChain:
    verified = verify_report(report, chain, trust, now=now)
    check_policy(report, policy or SnpPolicy())
    return verified


def _check_expectations(
    report: SnpReport,
    claims: RuntimeClaims | None,
    expected_user_data: bytes | None,
    expected_report_data: bytes | None,
) -> None:
    if expected_report_data is not None:
        check_report_data(report.report_data, expected_report_data)
    if expected_user_data is not None:
        if claims is None or claims.user_data is None:
            raise ReportDataMismatch()
        check_report_data(claims.user_data, expected_user_data)
