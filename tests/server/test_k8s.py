"""gateway/server/k8s.py against a Kubernetes API emulator (kmock) over HTTPS on loopback, with the
official client: events and annotations for each lifecycle milestone, and an API server that is
unreachable, refusing, slow or untrusted never blocks the caller and is counted."""

from __future__ import annotations

import json
import logging
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.config import Settings
from gateway.emulators.tls import EmulatorTls, ensure_tls
from gateway.errors import ConfigError
from gateway.server.k8s import QUEUE_SIZE, WITHHELD, KubernetesNotifier, kubernetes_notifier
from gateway.server.metrics import GatewayMetrics
from tests.support.kube_api import KubeApi, eventually, write_token

NAMESPACE, POD, UID = "whisper", "gateway-7d9f-abcde", "6f1c2a4e-0d1b-4c55-9a43-3c4a5b6d7e8f"
SA_TOKEN = "eyJhbGciOiJSUzI1NiJ9.service-account-token-never-shown.c2lnbmF0dXJlLW9mLXRoZS10b2tlbg"
MAA_TOKEN = "eyJhbGciOiJSUzI1NiIsImtpZCI6Im1hYSJ9.eyJpc3MiOiJodHRwczovL21hYSJ9.c2lnbmF0dXJl" * 2
ISSUER = "https://sharedeus.eus.attest.azure.net"
EXPIRES_AT = 1_893_456_000  # 2030-01-01T00:00:00Z
# What a notifier call may take, whatever the API server does: typically microseconds (an append
# under a lock). The worst case is the interpreter's GIL switch interval (5 ms), while the worker
# thread runs, plus scheduling on a busy machine; never an API call, whose timeouts here are
# >= 300 ms and whose delays are seconds.
TYPICAL_CALL_SECONDS = 0.001
WORST_CALL_SECONDS = 0.05


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> EmulatorTls:
    return ensure_tls(tmp_path_factory.mktemp("kube-tls"))


@pytest.fixture
def api(tls: EmulatorTls) -> Iterator[KubeApi]:
    server = KubeApi(tls, NAMESPACE, POD, UID).start()
    yield server
    server.stop()


def settings_for(tmp_path: Path, ca: Path, **changes: Any) -> Settings:
    values: dict[str, Any] = {
        "dev": False,
        "evidence_provider": "azure-vtpm",
        "pod_name": POD,
        "pod_namespace": NAMESPACE,
        "kubernetes_token_file": write_token(tmp_path, SA_TOKEN),
        "kubernetes_ca_file": ca,
    }
    return Settings(**(values | changes))


def environ(port: int) -> dict[str, str]:
    return {"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": str(port)}


@pytest.fixture
def metrics() -> GatewayMetrics:
    return GatewayMetrics()


def notifier_for(
    settings: Settings, port: int, metrics: GatewayMetrics, **timeout: tuple[float, float]
) -> KubernetesNotifier:
    notifier = kubernetes_notifier(settings, metrics, environ(port), **timeout)
    assert notifier is not None
    return notifier


def errors(metrics: GatewayMetrics, reason: str) -> float:
    value = metrics.registry.get_sample_value(
        "ohttp_gateway_kubernetes_errors_total", {"reason": reason}
    )
    return value or 0.0


def every_milestone(notifier: KubernetesNotifier) -> list[float]:
    """Call each notifier method once, in lifecycle order; how long each call took."""
    calls: list[Callable[[], None]] = [
        lambda: notifier.attestation_succeeded(ISSUER, EXPIRES_AT),
        lambda: notifier.key_released([1, 2], "kms"),
        lambda: notifier.key_rotated([2, 3], [1]),
        lambda: notifier.attestation_failed("token", "attestation_service_error"),
        lambda: notifier.release_refused("PolicyNotSatisfied", "x-ms-sevsnpvm-is-debuggable"),
    ]
    took = []
    for call in calls:
        started = time.perf_counter()
        call()
        took.append(time.perf_counter() - started)
    return took


def test_each_milestone_is_an_event_on_the_pod(
    api: KubeApi, tls: EmulatorTls, tmp_path: Path, metrics: GatewayMetrics
) -> None:
    notifier = notifier_for(settings_for(tmp_path, tls.ca_path), api.port, metrics)
    try:
        every_milestone(notifier)
        eventually(lambda: len(api.events()) == 5)
    finally:
        notifier.close()
    events = {event["reason"]: event for event in api.events()}
    expected = {
        "AttestationSucceeded": (
            "Normal",
            f"MAA token from {ISSUER}, expires 2030-01-01T00:00:00Z",
        ),
        "KeyReleased": ("Normal", "key ids 1,2 released by kms"),
        "KeyRotated": ("Normal", "serving key ids 2,3; retired 1"),
        "AttestationFailed": ("Warning", "attestation failed at token: attestation_service_error"),
        "KeyReleaseRefused": (
            "Warning",
            "the KMS refused key release: PolicyNotSatisfied: x-ms-sevsnpvm-is-debuggable",
        ),
    }
    assert {r: (e["type"], e["message"]) for r, e in events.items()} == expected
    for event in events.values():
        assert event["involvedObject"] == {
            "apiVersion": "v1",
            "kind": "Pod",
            "name": POD,
            "namespace": NAMESPACE,
            "uid": UID,
        }
        assert event["metadata"]["namespace"] == NAMESPACE
        assert event["metadata"]["name"].startswith(POD + ".")
        assert event["source"] == {"component": "ohttp-gateway"}
        assert event["count"] == 1
    # The in-cluster config's service account token authenticated every call.
    assert api.authorizations() == {"bearer " + SA_TOKEN}
    assert errors(metrics, "forbidden") == 0


def test_pod_annotations_carry_key_ids_and_the_attestation_summary(
    api: KubeApi, tls: EmulatorTls, tmp_path: Path, metrics: GatewayMetrics
) -> None:
    notifier = notifier_for(settings_for(tmp_path, tls.ca_path), api.port, metrics)

    def annotations() -> dict[str, str]:
        found: dict[str, str] = api.pod_object()["metadata"].get("annotations", {})
        return found

    try:
        notifier.attestation_succeeded(ISSUER, EXPIRES_AT)
        notifier.key_released([1, 2], "kms")
        eventually(lambda: annotations().get("ohttp-gateway/key-ids") == "1,2")
        assert annotations() == {
            "ohttp-gateway/key-ids": "1,2",
            "ohttp-gateway/attestation-provider": "azure-vtpm",
            "ohttp-gateway/maa-issuer": ISSUER,
            "ohttp-gateway/token-expires-at": "2030-01-01T00:00:00Z",
            "ohttp-gateway/dev-mode": "false",
            "ohttp-gateway/last-attestation": "succeeded",
        }
        notifier.key_rotated([2, 3], [1])
        notifier.attestation_failed("evidence", "tpm_unavailable")
        eventually(lambda: annotations().get("ohttp-gateway/key-ids") == "2,3")
        eventually(
            lambda: (
                annotations().get("ohttp-gateway/last-attestation")
                == "failed at evidence: tpm_unavailable"
            )
        )
    finally:
        notifier.close()


def test_a_repeated_failure_is_one_event_with_a_count(
    api: KubeApi, tls: EmulatorTls, tmp_path: Path, metrics: GatewayMetrics
) -> None:
    notifier = notifier_for(settings_for(tmp_path, tls.ca_path), api.port, metrics)
    try:
        for _ in range(3):
            notifier.attestation_failed("release", "key_release_refused")
        eventually(lambda: [e["count"] for e in api.events()] == [3])
    finally:
        notifier.close()
    (event,) = api.events()
    assert event["lastTimestamp"] >= event["firstTimestamp"]


def test_no_token_or_key_material_reaches_events_or_annotations(
    api: KubeApi, tls: EmulatorTls, tmp_path: Path, metrics: GatewayMetrics
) -> None:
    notifier = notifier_for(settings_for(tmp_path, tls.ca_path), api.port, metrics)
    private_key_hex = "a1" * 48
    try:
        every_milestone(notifier)
        # Hostile texts where a reason or an issuer is expected: each is withheld.
        notifier.release_refused("PolicyNotSatisfied", f"token {MAA_TOKEN} refused")
        notifier.release_refused(MAA_TOKEN, "")
        notifier.attestation_failed(private_key_hex, "ok")
        notifier.attestation_succeeded("https://maa/" + MAA_TOKEN, EXPIRES_AT)
        eventually(lambda: len(api.events()) == 9)
        eventually(
            lambda: (
                api.pod_object()["metadata"].get("annotations", {}).get("ohttp-gateway/maa-issuer")
                == WITHHELD
            )
        )
    finally:
        notifier.close()
    written = json.dumps([api.events(), api.pod_object()])
    for secret in (SA_TOKEN, MAA_TOKEN, MAA_TOKEN[:40], private_key_hex):
        assert secret not in written
    messages = sorted(e["message"] for e in api.events() if WITHHELD in e["message"])
    assert messages == [
        "MAA token from (withheld), expires 2030-01-01T00:00:00Z",
        "attestation failed at (withheld): ok",
        "the KMS refused key release: (withheld): no reason given",
        "the KMS refused key release: PolicyNotSatisfied: (withheld)",
    ]


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def assert_fast(took: list[float]) -> None:
    took = sorted(took)
    shown = [round(t * 1000, 3) for t in took[-5:]]
    assert took[len(took) // 2] < TYPICAL_CALL_SECONDS, shown
    assert took[-1] < WORST_CALL_SECONDS, shown


def test_an_unreachable_api_server_never_blocks_and_is_counted(
    tls: EmulatorTls, tmp_path: Path, metrics: GatewayMetrics, caplog: pytest.LogCaptureFixture
) -> None:
    notifier = notifier_for(settings_for(tmp_path, tls.ca_path), closed_port(), metrics)
    try:
        with caplog.at_level(logging.WARNING, logger="gateway"):
            assert_fast(every_milestone(notifier) + every_milestone(notifier))
            eventually(lambda: errors(metrics, "unreachable") >= 10)
    finally:
        notifier.close()
    logged = [r for r in caplog.records if getattr(r, "event", "") == "kubernetes_call_failed"]
    assert [getattr(r, "reason", "") for r in logged] == ["unreachable"]  # once per reason


@pytest.mark.parametrize(("status", "reason"), [(403, "forbidden"), (500, "server_error")])
def test_a_refusing_api_server_never_blocks_and_is_counted(
    api: KubeApi,
    tls: EmulatorTls,
    tmp_path: Path,
    metrics: GatewayMetrics,
    status: int,
    reason: str,
) -> None:
    api.answer_all(status)
    notifier = notifier_for(settings_for(tmp_path, tls.ca_path), api.port, metrics)
    try:
        assert_fast(every_milestone(notifier))
        eventually(lambda: errors(metrics, reason) >= 5)
    finally:
        notifier.close()
    assert api.events() == []


def test_a_slow_api_server_does_not_stall_the_caller(
    api: KubeApi, tls: EmulatorTls, tmp_path: Path, metrics: GatewayMetrics
) -> None:
    async def slow() -> int:
        import asyncio

        await asyncio.sleep(5)
        return 200

    api.answer_all(slow)
    settings = settings_for(tmp_path, tls.ca_path)
    notifier = notifier_for(settings, api.port, metrics, timeout=(0.5, 0.3))
    try:
        took = []
        for _ in range(QUEUE_SIZE + 10):  # more than the queue holds while the worker waits
            took += every_milestone(notifier)
        assert_fast(took)
        eventually(lambda: errors(metrics, "timeout") >= 1)
        eventually(lambda: errors(metrics, "dropped") >= 1)
    finally:
        notifier.close()


def test_an_api_server_with_an_untrusted_certificate_is_refused(
    api: KubeApi, tmp_path: Path, metrics: GatewayMetrics
) -> None:
    other_ca = ensure_tls(tmp_path / "other").ca_path
    notifier = notifier_for(settings_for(tmp_path, other_ca), api.port, metrics)
    try:
        notifier.key_released([1], "kms")
        eventually(lambda: errors(metrics, "tls") >= 1, 3)
    finally:
        notifier.close()
    assert api.events() == []
    assert api.authorizations() == set()  # the token never left over an unverified connection


def test_when_kubernetes_events_are_enabled(
    tls: EmulatorTls, tmp_path: Path, metrics: GatewayMetrics
) -> None:
    ready = settings_for(tmp_path, tls.ca_path)
    env = environ(closed_port())
    assert kubernetes_notifier(Settings(pod_name=POD, kubernetes_events="on"), metrics, env) is None
    assert (
        kubernetes_notifier(settings_for(tmp_path, tls.ca_path, pod_name=None), metrics, env)
        is None
    )
    assert (
        kubernetes_notifier(
            Settings(**{**ready.__dict__, "kubernetes_events": "off"}), metrics, env
        )
        is None
    )
    # auto without the service account's files: disabled, counted, serving goes on.
    missing = settings_for(tmp_path, tls.ca_path, kubernetes_token_file=tmp_path / "absent")
    assert kubernetes_notifier(missing, metrics, env) is None
    assert errors(metrics, "config") == 1
    assert kubernetes_notifier(settings_for(tmp_path, tls.ca_path), metrics, {}) is None
    # on: the operator asked for it, so a missing piece stops startup.
    insist = Settings(**{**missing.__dict__, "kubernetes_events": "on"})
    with pytest.raises(ConfigError, match="in-cluster"):
        kubernetes_notifier(insist, metrics, env)
    enabled = kubernetes_notifier(ready, metrics, env)
    assert enabled is not None
    enabled.close()
