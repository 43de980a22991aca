"""Fuzz the trust decoders: any input parses or raises our own error, never anything else.

Seeds: the real Azure HCL report and AMD chain, simulated v2/v3/v5 reports and THIM bundles,
MAA-shaped tokens. The normal run does a few thousand cases; ``make fuzz-long`` runs
FUZZ_CASES (default 1,000,000) cases in total across the targets.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest

from gateway.trust.amd import parse_cert_bundle
from gateway.trust.evidence.simulated import ReportFields, SimulatedAmd, hcl_runtime_claims
from gateway.trust.hcl import (
    HEADER_SIZE,
    IGVM_REQUEST_OFFSET,
    parse_hcl_report,
    parse_runtime_claims,
)
from gateway.trust.snp import parse_report
from gateway.trust.token import decode_unverified, verify_token
from gateway.trust.verify import verify_hcl_evidence
from tests.support.fuzzing import assert_parses_or_raises_ours, cases
from tests.trust.conftest import DATA, NOW
from tests.trust.maa_signer import ISSUER, MaaSigner, azure_guest_claims, example_claims
from tests.trust.maa_signer import NOW as TOKEN_NOW

Target = tuple[Callable[[bytes], object], list[bytes]]


def _targets() -> dict[str, Target]:
    amd = SimulatedAmd.generate(rsa_bits=2048, now=NOW)
    real_hcl = (DATA / "azure-cvm-hcl-report.bin").read_bytes()
    claims = hcl_runtime_claims(bytes(64), ak_bits=1024)
    sim_hcl = amd.hcl_report(claims)
    reports = [real_hcl[HEADER_SIZE:IGVM_REQUEST_OFFSET]] + [
        amd.report(ReportFields(version=v)) for v in (2, 3, 5)
    ]
    signer = MaaSigner.generate()
    jwks = signer.jwks()
    tokens = [
        signer.sign(example_claims()).encode(),
        signer.sign(azure_guest_claims()).encode(),
        (DATA / "maa-sevsnpvm-example-token-unsigned.txt").read_bytes().strip(),
    ]
    chain = amd.cert_chain()

    def verify_hcl(data: bytes) -> object:
        return verify_hcl_evidence(data, chain, trust=amd.trust, now=NOW)

    def verify(data: bytes) -> object:
        return verify_token(data.decode("latin-1"), jwks=jwks, issuer=ISSUER, now=TOKEN_NOW)

    return {
        "snp": (parse_report, reports),
        "hcl": (parse_hcl_report, [real_hcl, real_hcl[:1819], sim_hcl]),
        "claims": (parse_runtime_claims, [real_hcl[0x4D4:1819], claims]),
        "verify_hcl": (verify_hcl, [sim_hcl]),
        "certs": (
            parse_cert_bundle,
            [(DATA / "amd-milan-vcek-ask-ark.pem").read_bytes(), amd.thim_bundle()],
        ),
        "token": (lambda data: decode_unverified(data.decode("latin-1")), tokens),
        "verify_token": (verify, tokens),
    }


@pytest.fixture(scope="module")
def targets() -> dict[str, Target]:
    return _targets()


COUNTS = {
    "snp": 3000,
    "hcl": 3000,
    "claims": 2000,
    "verify_hcl": 500,
    "certs": 500,
    "token": 2000,
    "verify_token": 1000,
}


def _fuzz(target: Target, count: int, seed: int) -> None:
    decode, seeds = target
    for data in cases(seeds, count, seed):
        assert_parses_or_raises_ours(decode, data)


@pytest.mark.parametrize("name", sorted(COUNTS))
def test_fuzz(targets: dict[str, Target], name: str) -> None:
    _fuzz(targets[name], COUNTS[name], seed=0x5E7)


@pytest.mark.fuzz_long
@pytest.mark.parametrize("name", sorted(COUNTS))
def test_fuzz_long(targets: dict[str, Target], name: str) -> None:
    total = int(os.environ.get("FUZZ_CASES", "1000000"))
    _fuzz(targets[name], total // len(COUNTS), seed=int(os.environ.get("FUZZ_SEED", "1184")))
