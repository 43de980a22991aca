"""Interop with the gateway's own attestation document: ``ohttp-gateway serve --dev`` with an MAA
URL publishes a document for its dev keys (simulated evidence, ``dev_mode: true``), made by the
trust lifecycle's code, not by our test helper. The client verifies it only with
``--allow-simulated``, then transcribes; a production policy refuses it."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.demo.backend import SAMPLE_AUDIO, SAMPLE_TEXT, RunningBackend
from tests.client.test_cli import ohttp_client
from tests.support.attested_gateway import DOCUMENT_PATH, AttestationWorld
from tests.support.gateway_process import GatewayProcess


def _wait_for_document(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + DOCUMENT_PATH, timeout=2) as answer:  # noqa: S310
                if answer.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    raise AssertionError("the gateway did not publish its attestation document")


@pytest.fixture(scope="module")
def attested_dev_gateway(
    tmp_path_factory: pytest.TempPathFactory, world: AttestationWorld, backend: RunningBackend
) -> Iterator[GatewayProcess]:
    state = tmp_path_factory.mktemp("dev-document")
    bundle = state / "simulated-amd.pem"
    bundle.write_bytes(world.amd.dump())
    settings = ("--maa-url", world.maa_url, "--ca-bundle", str(world.tls.ca_path))
    settings += ("--evidence-provider", "simulated", "--simulated-amd", str(bundle))
    process = GatewayProcess(backend.url, state / "gateway.log", *settings).start()
    try:
        _wait_for_document(process.url)
        yield process
    finally:
        process.terminate()


def test_the_gateways_dev_document_verifies_with_allow_simulated(
    attested_dev_gateway: GatewayProcess, world: AttestationWorld, tmp_path: Path
) -> None:
    url = attested_dev_gateway.url
    ca = ("--ca-bundle", str(world.tls.ca_path))
    verified = ohttp_client("verify", "--gateway", url, "--allow-simulated", *ca)
    assert verified.returncode == 0, verified.stderr
    summary = json.loads(verified.stdout)
    assert summary["simulated"] is True
    assert summary["issuer"] == world.maa_url
    done = ohttp_client("transcribe", str(SAMPLE_AUDIO), "--gateway", url, "--allow-simulated", *ca)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["text"] == SAMPLE_TEXT
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps(world.policy_document()))
    refused = ohttp_client("verify", "--gateway", url, "--policy", str(policy))
    assert refused.returncode == 3
    assert refused.stderr.strip().endswith("[SimulatedEvidenceNotAllowed]")
