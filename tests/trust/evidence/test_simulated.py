from __future__ import annotations

import json

import pytest

from gateway.errors import ConfigError, UntrustedRoot
from gateway.trust.amd import AmdTrust, parse_cert_bundle
from gateway.trust.binding import user_data_for
from gateway.trust.evidence import EvidenceKind, EvidenceProvider
from gateway.trust.evidence.simulated import SimulatedAmd, SimulatedEvidenceProvider
from gateway.trust.jwk import rsa_public_jwk
from gateway.trust.verify import verify_hcl_evidence, verify_snp_evidence
from tests.trust.conftest import NOW

USER_DATA = user_data_for(b"key configs", b"nonce")


def test_provider_meets_the_protocol(simulated_amd: SimulatedAmd) -> None:
    assert isinstance(SimulatedEvidenceProvider(simulated_amd), EvidenceProvider)


def test_sev_snp_evidence_verifies_with_the_simulated_root(simulated_amd: SimulatedAmd) -> None:
    evidence = SimulatedEvidenceProvider(simulated_amd).collect(USER_DATA)
    assert evidence.kind is EvidenceKind.SEV_SNP
    assert evidence.snp_report == evidence.report
    verified = verify_snp_evidence(
        evidence.report,
        parse_cert_bundle(evidence.cert_chain),
        trust=simulated_amd.trust,
        now=NOW,
        runtime_data=evidence.runtime_data,
        expected_user_data=USER_DATA,
    )
    claims = verified.runtime_claims
    assert claims is not None
    assert claims.user_data == USER_DATA
    assert evidence.wrapping_key is not None
    assert claims.keys[0] == rsa_public_jwk(evidence.wrapping_key.public_key())
    assert json.dumps(verified.to_json())  # JSON-ready
    assert "wrapping_key" not in repr(evidence)


def test_hcl_evidence_verifies_with_the_simulated_root(simulated_amd: SimulatedAmd) -> None:
    evidence = SimulatedEvidenceProvider(simulated_amd, EvidenceKind.AZURE_HCL).collect(USER_DATA)
    verified = verify_hcl_evidence(
        evidence.report,
        parse_cert_bundle(evidence.cert_chain),
        trust=simulated_amd.trust,
        now=NOW,
        expected_user_data=USER_DATA,
    )
    assert verified.hcl is not None
    assert verified.report.raw == evidence.snp_report


@pytest.mark.parametrize("kind", list(EvidenceKind))
def test_simulated_evidence_is_refused_with_amds_root(
    simulated_amd: SimulatedAmd, kind: EvidenceKind
) -> None:
    evidence = SimulatedEvidenceProvider(simulated_amd, kind).collect(USER_DATA)
    verify = verify_hcl_evidence if kind is EvidenceKind.AZURE_HCL else verify_snp_evidence
    with pytest.raises(UntrustedRoot):
        verify(
            evidence.report,
            parse_cert_bundle(evidence.cert_chain),
            trust=AmdTrust.pinned(),
            now=NOW,
        )


@pytest.mark.parametrize("user_data", [b"", bytes(63), bytes(65)])
def test_user_data_must_be_64_bytes(simulated_amd: SimulatedAmd, user_data: bytes) -> None:
    with pytest.raises(ConfigError):
        SimulatedEvidenceProvider(simulated_amd).collect(user_data)


def test_dump_and_load_round_trip(simulated_amd: SimulatedAmd) -> None:
    loaded = SimulatedAmd.load(simulated_amd.dump())
    assert loaded.ark == simulated_amd.ark
    assert loaded.chip.chip_id == simulated_amd.chip.chip_id
    evidence = SimulatedEvidenceProvider(loaded).collect(USER_DATA)
    verify_snp_evidence(
        evidence.report,
        loaded.cert_chain(),
        trust=simulated_amd.trust,
        now=NOW,
        runtime_data=evidence.runtime_data,
    )
    with pytest.raises(ConfigError):
        SimulatedAmd.load(b"garbage")
