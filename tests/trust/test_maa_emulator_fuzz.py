"""The fuzz invariant for the MAA emulator's decisions: any mutated evidence is refused with one of
our errors (or, by chance, accepted), never anything else; and over HTTP it is a 400, never a
500."""

from __future__ import annotations

import asyncio
import json
import random
from dataclasses import replace
from pathlib import Path

import aiohttp
import pytest

from gateway.emulators.maa import MaaEmulator
from gateway.emulators.maa_signing import TokenSigner
from gateway.emulators.maa_verify import MaaVerifier
from gateway.emulators.tls import ensure_tls
from gateway.trust.binding import report_data_for
from gateway.trust.evidence.simulated import ReportFields, SimulatedAmd
from gateway.trust.maa_wire import SevSnpVmRequest, SnpEvidence
from gateway.trust.rest import ssl_context
from tests.support.emulators import serve
from tests.support.fuzzing import assert_parses_or_raises_ours, cases, mutate

RUNTIME = b'{"keys":[],"user-data":"' + b"AB" * 64 + b'"}'


@pytest.fixture(scope="module")
def good(simulated_amd: SimulatedAmd) -> SevSnpVmRequest:
    report = simulated_amd.report(ReportFields(report_data=report_data_for(RUNTIME)))
    return SevSnpVmRequest(SnpEvidence(report, simulated_amd.cert_chain_pem()), RUNTIME)


def test_fuzz_sev_snp_vm_decisions(simulated_amd: SimulatedAmd, good: SevSnpVmRequest) -> None:
    verifier = MaaVerifier(simulated_amd.trust)
    assert verifier.sev_snp_vm(good)["x-ms-attestation-type"] == "sevsnpvm"
    targets = {
        "report": lambda data: replace(
            good, evidence=SnpEvidence(data, good.evidence.vcek_cert_chain)
        ),
        "chain": lambda data: replace(good, evidence=SnpEvidence(good.evidence.report, data)),
        "runtime": lambda data: replace(good, runtime_data=data),
        "init": lambda data: replace(good, init_time_data=data),
    }
    seeds = {
        "report": good.evidence.report,
        "chain": good.evidence.vcek_cert_chain,
        "runtime": RUNTIME,
        "init": b"{}",
    }
    for index, (name, build) in enumerate(targets.items()):
        for data in cases([seeds[name]], count=250, seed=100 + index):
            assert_parses_or_raises_ours(lambda d, b=build: verifier.sev_snp_vm(b(d)), data)


def test_mutated_bodies_get_a_400_never_a_500(
    simulated_amd: SimulatedAmd, good: SevSnpVmRequest, tmp_path: Path
) -> None:
    tls = ensure_tls(tmp_path)
    body = json.dumps(good.encode()).encode()
    rng = random.Random(7)
    bodies = [body] + [mutate(body, rng) for _ in range(80)]

    def make(url: str) -> object:
        return MaaEmulator(TokenSigner(url), MaaVerifier(simulated_amd.trust)).app

    async def post_all(url: str) -> list[int]:
        connector = aiohttp.TCPConnector(ssl=ssl_context(tls.ca_path))
        statuses = []
        async with aiohttp.ClientSession(connector=connector) as session:
            for data in bodies:
                async with session.post(
                    f"{url}/attest/SevSnpVm?api-version=2022-08-01", data=data
                ) as response:
                    statuses.append(response.status)
                    if response.status == 400:
                        assert (await response.json())["error"]["code"]
        return statuses

    with serve(make, tls) as served:  # type: ignore[arg-type]
        statuses = asyncio.run(post_all(served.url))
    assert statuses[0] == 200
    assert set(statuses[1:]) <= {200, 400}
    assert statuses.count(400) > 50
