"""The cost of pure attestation verification: what a client or the MAA emulator pays per check.

What it measures (min / median / max of N runs, milliseconds), all in-process, no I/O:

* parse: the real Azure HCL report (2048 bytes) → HclReport with the SNP report and claims;
* chain: the real AMD Milan chain verified to the pinned ARK-Milan (three RSA-4096 PSS checks);
* evidence: a simulated HCL report verified end to end (chain, chip id/TCB, ECDSA P-384 report
  signature, policy, REPORT_DATA binding, user-data);
* token: an MAA-shaped RS256 token verified against an x5c JWKS (kid lookup, signature, times,
  typed claims);
* simulated collect: the simulated provider producing SEV_SNP evidence (includes generating a
  fresh RSA-2048 wrapping key, the dominant and most variable part).

Run: ``/work/venv/bin/python -m bench.trust_bench [--runs N]``.
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from bench._timing import timed_ms
from gateway.trust.amd import AmdTrust, parse_pem_chain, verify_chain
from gateway.trust.binding import user_data_for
from gateway.trust.evidence import EvidenceKind
from gateway.trust.evidence.simulated import SimulatedAmd, SimulatedEvidenceProvider
from gateway.trust.hcl import parse_hcl_report
from gateway.trust.token import verify_token
from gateway.trust.verify import verify_hcl_evidence
from tests.trust.maa_signer import ISSUER, NOW, MaaSigner, example_claims

DATA = Path(__file__).resolve().parent.parent / "tests" / "trust" / "data"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50)
    runs = parser.parse_args().runs
    now = datetime.now(UTC)
    hcl = (DATA / "azure-cvm-hcl-report.bin").read_bytes()
    chain = parse_pem_chain((DATA / "amd-milan-vcek-ask-ark.pem").read_bytes())
    pinned = AmdTrust.pinned()
    amd = SimulatedAmd.generate()
    user_data = user_data_for(b"key configs", b"nonce")
    evidence = SimulatedEvidenceProvider(amd, EvidenceKind.AZURE_HCL).collect(user_data)
    signer = MaaSigner.generate()
    token, jwks = signer.sign(example_claims()), signer.jwks()
    provider = SimulatedEvidenceProvider(amd)
    steps: dict[str, Callable[[], object]] = {
        "parse HCL report": lambda: parse_hcl_report(hcl),
        "AMD Milan chain": lambda: verify_chain(chain, pinned, now=now),
        "HCL evidence end to end": lambda: verify_hcl_evidence(
            evidence.report,
            amd.cert_chain(),
            trust=amd.trust,
            now=now,
            expected_user_data=user_data,
        ),
        "MAA token": lambda: verify_token(token, jwks=jwks, issuer=ISSUER, now=NOW),
        "simulated collect": lambda: provider.collect(user_data),
    }
    print(f"{'step':<26} {'min':>8} {'median':>8} {'max':>8}  (ms, {runs} runs)")
    for name, step in steps.items():
        samples = timed_ms(runs, step)
        low, mid, high = min(samples), statistics.median(samples), max(samples)
        print(f"{name:<26} {low:8.2f} {mid:8.2f} {high:8.2f}")


if __name__ == "__main__":
    main()
