"""The sev-guest provider (a fake configfs-tsm standing in for the kernel, from the attest tests)
with Key Vault: the real SDK client releases the key through the Key Vault and Entra emulators,
wrapped to the provider's own RSA key. The gateway runs in this process (uvicorn in a thread, on
loopback), since the fake kernel sits behind the provider's configfs seams; everything else is a
real server. A debuggable guest is refused by the vault's policy and stays not ready."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import uvicorn

from gateway.config import load_settings
from gateway.emulators.maa_verify import MaaPolicy
from gateway.emulators.runner import Emulators
from gateway.emulators.server import BackgroundServers
from gateway.server.app import build_app
from gateway.server.attested import AttestedKeys
from gateway.server.keysource import KeySource
from gateway.server.metrics import GatewayMetrics
from gateway.trust.attester import Attester
from gateway.trust.components import CALL_RETRY, kms_backend, timing
from gateway.trust.evidence.sev_guest import ConfigfsTransport, SevGuestEvidenceProvider
from gateway.trust.evidence.simulated import AZURE_GUEST_POLICY, ReportFields, SimulatedAmd
from gateway.trust.lifecycle import KeyLifecycle
from gateway.trust.maa import MaaClient
from gateway.trust.policy import SnpPolicy
from gateway.trust.snp import POLICY_DEBUG
from tests.support.attested_process import exchange, get
from tests.support.gateway_process import wait_until_live
from tests.support.upstream_double import UpstreamDouble, free_port
from tests.trust.evidence.sev_guest_fakes import FakeConfigfsTsm


class DebugConfigfsTsm(FakeConfigfsTsm):
    """A guest launched with the debug policy bit: its firmware says so in every report."""

    def _outblob(self, path: Path) -> bytes:
        report_data = (path / "inblob").read_bytes().ljust(64, b"\0")
        fields = ReportFields(report_data=report_data, policy=AZURE_GUEST_POLICY | POLICY_DEBUG)
        return self.amd.report(replace(fields, vmpl=int((path / "privlevel").read_text())))


@pytest.fixture(scope="module")
def emulators(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulators]:
    state = Path(tmp_path_factory.mktemp("sev-guest-emulators"))
    (state / "simulated-amd.pem").write_bytes(SimulatedAmd.generate(rsa_bits=2048).dump())
    # MAA's default policy passes debuggable guests and reports it: the vault's policy decides.
    emulators = Emulators(state, maa_policy=MaaPolicy(snp=SnpPolicy(allow_debug=True)))
    with BackgroundServers(emulators.group):
        yield emulators


class InProcessGateway:
    """The attested gateway app (lifecycle included) under uvicorn in a thread."""

    def __init__(self, emulators: Emulators, fake: FakeConfigfsTsm, upstream: str) -> None:
        env = {**emulators.settings(), "OHTTP_GATEWAY_EVIDENCE_PROVIDER": "sev-guest"}
        env |= {"OHTTP_GATEWAY_KMS_BACKEND": "akv", "OHTTP_GATEWAY_UPSTREAM": upstream}
        env |= {"OHTTP_GATEWAY_TRUST_RETRY_MAX_DELAY": "0.5"}
        settings = load_settings(environ=env)
        assert settings.maa_url is not None
        transport = ConfigfsTransport(
            fake.root, make_entry=fake.make_entry, remove_entry=fake.remove_entry
        )
        self.keys, self.metrics = KeySource(dev=False), GatewayMetrics()
        observer = AttestedKeys(self.keys, self.metrics)
        maa = MaaClient(settings.maa_url, ca_bundle=settings.ca_bundle, retry=CALL_RETRY)
        attester = Attester(SevGuestEvidenceProvider(transport), maa, record=observer.record)
        lifecycle = KeyLifecycle(attester, kms_backend(settings), observer, timing=timing(settings))
        self.keys.on_unknown_key = lifecycle.unknown_key
        self.port = free_port()
        app = build_app(settings, self.keys, self.metrics, lifecycle)
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_config=None)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> InProcessGateway:
        self._thread.start()
        wait_until_live(self.url)
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=30)
        assert self.keys.key_ring is None  # shutdown dropped the released keys

    def wait_ready(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while get(self.url + "/readyz")[0] != 200:
            assert time.monotonic() < deadline, "not ready"
            time.sleep(0.05)


@pytest.fixture
def workload_identity(emulators: Emulators, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in emulators.settings().items():
        if name.startswith("AZURE_"):
            monkeypatch.setenv(name, value)


@pytest.mark.usefixtures("workload_identity")
def test_sev_guest_with_key_vault_becomes_ready_and_serves(
    emulators: Emulators, double: UpstreamDouble, tmp_path: Path
) -> None:
    fake = FakeConfigfsTsm(tmp_path / "tsm" / "report", emulators.amd)
    with InProcessGateway(emulators, fake, double.url) as gateway:
        gateway.wait_ready()
        assert exchange(gateway.url) == 200
        document = json.loads(get(gateway.url + "/.well-known/ohttp-gateway/attestation")[1])
        assert document["evidence_provider"] == "sev-guest"
        assert document["evidence"]["kind"] == "snp"
        assert "BEGIN CERTIFICATE" in document["evidence"]["certificates"]  # the host's table
        assert len(fake.created) >= 2
        assert fake.removed == fake.created
    assert emulators.vault.releases >= 1


@pytest.mark.usefixtures("workload_identity")
def test_a_debuggable_guest_is_refused_by_the_vault_and_stays_not_ready(
    emulators: Emulators, double: UpstreamDouble, tmp_path: Path
) -> None:
    fake = DebugConfigfsTsm(tmp_path / "tsm" / "report", emulators.amd)
    with InProcessGateway(emulators, fake, double.url) as gateway:
        time.sleep(2.0)
        assert get(gateway.url + "/readyz")[0] == 503
        assert get(gateway.url + "/.well-known/ohttp-gateway/attestation")[0] == 503
        labels = {"service": "kms", "reason": "key_release_refused"}
        refused = gateway.metrics.registry.get_sample_value(
            "ohttp_gateway_trust_errors_total", labels
        )
        assert refused is not None
        assert refused >= 1
