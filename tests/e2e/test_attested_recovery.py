"""The gateway stays not ready, without crashing, while it may not have a key, and recovers
without a restart: a release policy it does not satisfy, MAA down, the KMS down at start."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from gateway.emulators.attestation_tokens import TokenVerifier
from gateway.emulators.ccf_kms import CcfKmsEmulator
from gateway.emulators.ccf_ledger import Ledger
from gateway.emulators.kms_emulators import default_policy
from gateway.emulators.runner import Emulators
from gateway.emulators.server import BackgroundServers, ServerGroup, bind_loopback, socket_url
from tests.support.attested_process import AttestedGateway, exchange, get
from tests.support.kms_world import sevsnp_policy
from tests.support.upstream_double import UpstreamDouble

CCF = {"OHTTP_GATEWAY_KMS_BACKEND": "ccf"}
NOT_READY_FOR = 2.0  # seconds: several backoff rounds (the cap is 0.5 s in these tests)


@pytest.fixture
def start(
    emulators: Emulators, double: UpstreamDouble, tmp_path: Path
) -> Iterator[list[AttestedGateway]]:
    started: list[AttestedGateway] = []
    yield started
    for gateway in started:
        assert gateway.terminate() == 0


def _gateway(env: dict[str, str], double: UpstreamDouble, tmp_path: Path) -> AttestedGateway:
    return AttestedGateway(env, double.url, tmp_path / "gateway.log").start()


def _assert_not_ready(gateway: AttestedGateway) -> None:
    time.sleep(NOT_READY_FOR)
    assert gateway.alive()
    assert not gateway.ready()
    assert get(gateway.url + "/.well-known/ohttp-gateway")[0] == 503
    assert get(gateway.url + "/.well-known/ohttp-gateway/attestation")[0] == 503

    async def post() -> int:
        async with aiohttp.ClientSession() as session:
            headers = {"content-type": "message/ohttp-req"}
            async with session.post(gateway.url + "/gateway", data=b"\x01", headers=headers) as r:
                return r.status

    assert asyncio.run(post()) == 503
    assert gateway.metric("ohttp_gateway_ready") == 0
    assert gateway.metric("ohttp_gateway_attestation_state", state="failed") == 1


def _assert_serves(gateway: AttestedGateway) -> None:
    assert exchange(gateway.url) == 200


def _waiting(gateway: AttestedGateway) -> list[dict[str, object]]:
    lines = [json.loads(line) for line in gateway.logs().splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("event") == "lifecycle_waiting"]


@pytest.mark.parametrize(
    "condition",
    [
        {"claim": "x-ms-sevsnpvm-launchmeasurement", "equals": "00" * 48},
        {"claim": "x-ms-sevsnpvm-is-debuggable", "equals": "true"},  # only debug guests
    ],
    ids=["other-measurement", "debug-only"],
)
def test_release_policy_not_satisfied_keeps_it_not_ready_until_fixed(
    emulators: Emulators,
    double: UpstreamDouble,
    tmp_path: Path,
    start: list[AttestedGateway],
    condition: dict[str, str],
) -> None:
    kms = emulators.ccf_kms
    fixed = kms.policy
    kms.policy = sevsnp_policy(emulators.maa_url, condition)
    try:
        gateway = _gateway({**emulators.settings(), **CCF}, double, tmp_path)
        start.append(gateway)
        _assert_not_ready(gateway)
        refused = "key_release_refused"
        assert gateway.metric("ohttp_gateway_trust_errors_total", service="kms", reason=refused)
        waiting = _waiting(gateway)[-1]
        assert waiting["step"] == "release"
        assert waiting["reason"] == refused
        assert waiting["kms_code"] == "KeyReleasePolicyNotSatisfied"
        assert "policy" in str(waiting["kms_reason"])
    finally:
        kms.policy = fixed
    gateway.wait_ready(timeout=10)  # the same process: no restart
    _assert_serves(gateway)


def test_maa_down_at_start_then_back(
    emulators: Emulators, double: UpstreamDouble, tmp_path: Path, start: list[AttestedGateway]
) -> None:
    emulators.maa.inject_faults(*[503] * 10_000)
    try:
        gateway = _gateway({**emulators.settings(), **CCF}, double, tmp_path)
        start.append(gateway)
        _assert_not_ready(gateway)
        assert gateway.metric(
            "ohttp_gateway_trust_errors_total", service="maa", reason="attestation_service"
        )
        assert _waiting(gateway)[-1]["step"] == "token"
    finally:
        emulators.maa.clear_faults()
    gateway.wait_ready(timeout=10)
    _assert_serves(gateway)


def test_kms_down_at_start_then_back(
    emulators: Emulators, double: UpstreamDouble, tmp_path: Path, start: list[AttestedGateway]
) -> None:
    sock = bind_loopback()  # bound, not listening: connections are refused
    ledger = Ledger(tmp_path / "ccf")
    env = {
        **emulators.settings(),
        **CCF,
        "OHTTP_GATEWAY_CCF_URL": socket_url(sock, tls=True),
        "OHTTP_GATEWAY_CCF_SERVICE_CERT": str(ledger.tls.ca_path),
    }
    gateway = _gateway(env, double, tmp_path)
    start.append(gateway)
    _assert_not_ready(gateway)
    assert gateway.metric("ohttp_gateway_trust_errors_total", service="kms", reason="key_release")
    assert _waiting(gateway)[-1]["step"] == "release"
    kms = CcfKmsEmulator(
        ledger, TokenVerifier(emulators.tls.ca_path), default_policy(emulators.maa_url)
    )
    kms.refresh()
    group = ServerGroup()
    group.add(kms.app, sock, ledger.tls)
    with BackgroundServers(group):
        gateway.wait_ready(timeout=10)
        _assert_serves(gateway)
