"""What the MAA emulator decides about evidence: MAA's checks, using the gateway's own verifiers.

Accepts decoded requests (:mod:`gateway.trust.maa_wire`), the AMD roots to trust (the simulated
ARK in dev; AMD's pinned ARKs can be given instead), an :class:`MaaPolicy` and a clock.
Guarantees, for ``SevSnpVm``, in MAA's order, each refusal its own typed error:

1. the VCEK chain verifies to a configured ARK (ARK → ASK → VCEK, RSA-PSS SHA-384);
2. CHIP_ID and REPORTED_TCB match the VCEK's hwID and TCB extensions;
3. the report signature (ECDSA P-384) verifies with the VCEK;
4. the attestation policy holds (debug refused unless allowed, VMPL, ...);
5. REPORT_DATA = SHA-256(runtimeData) ‖ zeros, and HOST_DATA = SHA-256(initTimeData) if sent;

then returns the token's claims. ``AzureGuest`` runs 1 to 5 on its SNP evidence and HCL runtime
claims, then the vTPM checks of :mod:`gateway.emulators.maa_guest`. Never: issues claims for
evidence that failed any step.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509

from gateway.emulators import maa_claims
from gateway.emulators.maa import VerifiedGuest
from gateway.emulators.maa_guest import GuestChecks
from gateway.errors import InitTimeDataMismatch
from gateway.trust.amd import AmdTrust, parse_pem_chain
from gateway.trust.maa_wire import AzureGuestRequest, SevSnpVmRequest, SnpEvidence
from gateway.trust.policy import SnpPolicy
from gateway.trust.verify import VerifiedEvidence, verify_snp_evidence

DEFAULT_PCRS = (0, 1, 2, 3, 4, 5, 6, 7)  # what Microsoft's guest attestation client quotes


@dataclass(frozen=True)
class MaaPolicy:
    """The emulated instance's attestation policy.

    MAA's default policy passes a debuggable guest and only reports it in
    ``x-ms-sevsnpvm-is-debuggable``; an instance with a custom policy refuses it. The emulator
    refuses by default (``snp.allow_debug`` false), as the gateway's deployments should.
    """

    snp: SnpPolicy = field(default_factory=SnpPolicy)
    required_pcrs: tuple[int, ...] = DEFAULT_PCRS
    # The vTPM CAs an AIK certificate must be issued by (Azure's, in the real service); None
    # skips the issuer check, for vTPMs provisioned without a CA.
    aik_roots: tuple[x509.Certificate, ...] | None = None


class MaaVerifier:
    """The emulator's :class:`~gateway.emulators.maa.EvidenceVerifier`."""

    def __init__(
        self,
        trust: AmdTrust,
        policy: MaaPolicy | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.trust = trust
        self.policy = policy or MaaPolicy()
        self._clock = clock

    def _now(self) -> datetime.datetime:
        return datetime.datetime.fromtimestamp(self._clock(), datetime.UTC)

    def verify_snp(self, evidence: SnpEvidence, runtime_data: bytes) -> VerifiedEvidence:
        """Steps 1 to 5 (without init-time data): the platform, the policy, the binding."""
        return verify_snp_evidence(
            evidence.report,
            parse_pem_chain(evidence.vcek_cert_chain),
            trust=self.trust,
            now=self._now(),
            policy=self.policy.snp,
            runtime_data=runtime_data,
        )

    def sev_snp_vm(self, request: SevSnpVmRequest) -> dict[str, Any]:
        verified = self.verify_snp(request.evidence, request.runtime_data)
        if request.init_time_data is not None:
            expected = hashlib.sha256(request.init_time_data).digest()
            if not hmac.compare_digest(verified.report.host_data, expected):
                raise InitTimeDataMismatch()
        return maa_claims.sev_snp_vm_claims(
            verified.report, request.runtime_data, request.init_time_data
        )

    def azure_guest(self, request: AzureGuestRequest) -> VerifiedGuest:
        verified = self.verify_snp(request.snp, request.runtime_data)
        checks = GuestChecks(
            required_pcrs=self.policy.required_pcrs,
            aik_roots=self.policy.aik_roots,
            now=self._now(),
        )
        return checks.verify(request, verified)
