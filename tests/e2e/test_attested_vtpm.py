"""The azure-vtpm provider on a real swtpm (provisioned like an Azure CVM's vTPM, with a test
paravisor regenerating the HCL report after each user-data write), MAA's AzureGuest route, and
either KMS: the gateway process becomes ready and serves requests encrypted to the key the KMS
wrapped to the TPM's ephemeral key (unwrapped inside the TPM, under its PCR policy)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.emulators.maa_verify import MaaPolicy
from gateway.emulators.release_policy import ReleasePolicy
from gateway.emulators.runner import Emulators
from gateway.emulators.server import BackgroundServers
from gateway.trust import tpm_verify
from gateway.trust.evidence.simulated import SimulatedAmd
from tests.support import swtpm
from tests.support.attested_process import AttestedGateway, exchange, get
from tests.support.paravisor import Paravisor
from tests.support.upstream_double import UpstreamDouble

pytestmark = pytest.mark.skipif(swtpm.SWTPM is None, reason="swtpm is not installed")
KEY_NAME = "ohttp-hpke"


def cvm_policy(authority: str) -> ReleasePolicy:
    """docs/release-policies/cvm-azure-guest.json's shape, for the emulators' MAA."""
    tee = "x-ms-isolation-tee."
    conditions = [
        {"claim": "x-ms-attestation-type", "equals": "azurevm"},
        {"claim": tee + "x-ms-attestation-type", "equals": "sevsnpvm"},
        {"claim": tee + "x-ms-compliance-status", "equals": "azure-compliant-cvm"},
        {"claim": tee + "x-ms-sevsnpvm-is-debuggable", "equals": "false"},
        {"claim": tee + "x-ms-sevsnpvm-vmpl", "equals": "0"},
    ]
    return ReleasePolicy.parse(
        {"version": "1.0.0", "anyOf": [{"authority": authority, "allOf": conditions}]}
    )


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Emulators, swtpm.Golden]]:
    pytest.importorskip("tpm2_pytss")
    state = Path(tmp_path_factory.mktemp("vtpm-emulators"))
    amd = SimulatedAmd.generate(rsa_bits=2048)
    (state / "simulated-amd.pem").write_bytes(amd.dump())
    golden = swtpm.make_golden(Path(tmp_path_factory.mktemp("vtpm-golden")) / "state", amd=amd)
    emulators = Emulators(
        state, maa_policy=MaaPolicy(aik_roots=(golden.provisioned.ca_certificate,))
    )
    policy = cvm_policy(emulators.maa_url)
    emulators.vault.set_release_policy(KEY_NAME, policy)
    emulators.ccf_kms.policy = policy
    with BackgroundServers(emulators.group):
        yield emulators, golden


@pytest.mark.parametrize("kms", ["akv", "ccf"])
def test_azure_vtpm_gateway_becomes_ready_and_serves(
    world: tuple[Emulators, swtpm.Golden], double: UpstreamDouble, tmp_path: Path, kms: str
) -> None:
    emulators, golden = world
    aik = tpm_verify.parse_public(golden.provisioned.aik_public).public_key
    with swtpm.Swtpm(golden.state) as vtpm, Paravisor(vtpm.tcti, emulators.amd, aik) as hcl:
        env = {
            **emulators.settings(),
            "OHTTP_GATEWAY_EVIDENCE_PROVIDER": "azure-vtpm",
            "OHTTP_GATEWAY_KMS_BACKEND": kms,
            "OHTTP_GATEWAY_TPM_TCTI": vtpm.tcti,
            "OHTTP_GATEWAY_TPM_EVENT_LOG": str(tmp_path / "no-event-log"),
            "TSS2_LOG": "all+NONE",
        }
        gateway = AttestedGateway(env, double.url, tmp_path / "gateway.log").start()
        try:
            gateway.wait_ready(timeout=60)
            _, served = get(gateway.url + "/.well-known/ohttp-gateway")
            assert exchange(gateway.url) == 200
            document = json.loads(get(gateway.url + "/.well-known/ohttp-gateway/attestation")[1])
            assert document["maa"]["route"] == "AzureGuest"
            assert document["evidence"]["kind"] == "azure-hcl"
            assert base64.b64decode(document["binding"]["key_configs"]) == served
            claims = json.loads(base64.b64decode(document["evidence"]["runtime_data"]))
            assert claims["user-data"] == document["binding"]["user_data"]
            assert hcl.refreshes >= 2  # one evidence for the release, one binding the keys
        finally:
            assert gateway.terminate() == 0
