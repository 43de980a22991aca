"""What ``ohttp-gateway emulate`` sets up is enough for both key-release backends: with nothing
but its settings (the workload-identity environment, the CA bundle, the vault and KMS URLs and
the KMS service certificate), a Key Vault and a confidential-KMS release succeed, TLS and the
release signature verified against the printed bundle alone."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.emulators.runner import Emulators
from gateway.emulators.server import BackgroundServers
from gateway.trust.binding import report_data_for
from gateway.trust.evidence.simulated import ReportFields, SimulatedAmd
from gateway.trust.kms.akv import AkvBackend
from gateway.trust.kms.ccf import CcfBackend, load_service_certificate
from gateway.trust.maa import MaaClient
from gateway.trust.maa_wire import SevSnpVmRequest, SnpEvidence
from tests.support.kms_world import assert_decrypts, release, rsa_wrapping_key


@pytest.fixture(scope="module")
def emulators(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulators]:
    state = Path(tmp_path_factory.mktemp("emulate-kms"))
    (state / "simulated-amd.pem").write_bytes(SimulatedAmd.generate(rsa_bits=2048).dump())
    emulators = Emulators(state)
    with BackgroundServers(emulators.group):
        yield emulators


def test_both_backends_release_with_only_the_printed_settings(
    emulators: Emulators, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = emulators.settings()
    for name in ("AZURE_CLIENT_ID", "AZURE_TENANT_ID", "AZURE_FEDERATED_TOKEN_FILE"):
        monkeypatch.setenv(name, settings[name])
    monkeypatch.setenv("AZURE_AUTHORITY_HOST", settings["AZURE_AUTHORITY_HOST"])
    bundle = Path(settings["OHTTP_GATEWAY_CA_BUNDLE"])
    key = rsa_wrapping_key()
    runtime = json.dumps({"keys": [key.jwk()]}).encode()
    amd = emulators.amd
    report = amd.report(ReportFields(report_data=report_data_for(runtime)))
    request = SevSnpVmRequest(SnpEvidence(report, amd.cert_chain_pem()), runtime, nonce="n")

    async def attest() -> str:
        async with MaaClient(settings["OHTTP_GATEWAY_MAA_URL"], ca_bundle=bundle) as maa:
            return await maa.attest_sev_snp_vm(request)

    token = asyncio.run(attest())
    akv = AkvBackend(
        settings["OHTTP_GATEWAY_AKV_VAULT_URL"],
        settings["OHTTP_GATEWAY_AKV_KEY_NAME"],
        key_id=1,
        ca_bundle=bundle,  # default trust roots: the system's plus this bundle
    )
    (from_vault,) = release(akv, token, key)
    assert_decrypts(from_vault)
    service_cert = load_service_certificate(Path(settings["OHTTP_GATEWAY_CCF_SERVICE_CERT"]))
    (from_kms,) = release(CcfBackend(settings["OHTTP_GATEWAY_CCF_URL"], service_cert), token, key)
    assert_decrypts(from_kms)
    names = [endpoint.name for endpoint in emulators.endpoints]
    assert {"entra", "keyvault", "ccf-kms"} <= set(names)
