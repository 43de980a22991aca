"""The key lifecycle, seen from Kubernetes: a real gateway process (simulated provider, the
confidential KMS emulator) in a "pod" whose API server is kmock over HTTPS. A release policy it
does not satisfy shows as KeyReleaseRefused and AttestationFailed events with the KMS's reason;
once the policy is fixed the same process attests, has its key released, and annotates its pod.
No token reaches an event or an annotation."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.emulators.runner import Emulators
from tests.support.attested_process import AttestedGateway, get
from tests.support.kms_world import sevsnp_policy
from tests.support.kube_api import KubeApi, eventually, write_token
from tests.support.upstream_double import UpstreamDouble

NAMESPACE, POD, UID = "whisper", "gateway-6b7c-klmno", "3d4e5f60-7182-4a3b-9c4d-5e6f70819203"
SA_TOKEN = "service-account-token-for-the-lifecycle-test"


@pytest.fixture
def api(emulators: Emulators) -> Iterator[KubeApi]:
    server = KubeApi(emulators.tls, NAMESPACE, POD, UID).start()
    yield server
    server.stop()


def reasons(api: KubeApi) -> dict[str, dict[str, object]]:
    return {event["reason"]: event for event in api.events()}


def test_refusal_then_release_as_events_and_annotations(
    emulators: Emulators, double: UpstreamDouble, tmp_path: Path, api: KubeApi
) -> None:
    env = {
        **emulators.settings(),
        "OHTTP_GATEWAY_KMS_BACKEND": "ccf",
        "OHTTP_GATEWAY_POD_NAME": POD,
        "OHTTP_GATEWAY_POD_NAMESPACE": NAMESPACE,
        "OHTTP_GATEWAY_KUBERNETES_TOKEN_FILE": str(write_token(tmp_path, SA_TOKEN)),
        "OHTTP_GATEWAY_KUBERNETES_CA_FILE": str(emulators.tls.ca_path),
        "KUBERNETES_SERVICE_HOST": "127.0.0.1",
        "KUBERNETES_SERVICE_PORT": str(api.port),
    }
    kms = emulators.ccf_kms
    fixed = kms.policy
    debug_only = {"claim": "x-ms-sevsnpvm-is-debuggable", "equals": "true"}
    kms.policy = sevsnp_policy(emulators.maa_url, debug_only)
    gateway = AttestedGateway(env, double.url, tmp_path / "gateway.log").start()
    try:
        try:
            # Both events of the refusal; the notifier posts them one after the other.
            eventually(lambda: {"KeyReleaseRefused", "AttestationFailed"} <= set(reasons(api)), 30)
        finally:
            kms.policy = fixed
        refused = reasons(api)["KeyReleaseRefused"]
        assert refused["type"] == "Warning"
        assert str(refused["message"]).startswith(
            "the KMS refused key release: KeyReleasePolicyNotSatisfied: "
        )
        failed = reasons(api)["AttestationFailed"]
        assert failed["message"] == "attestation failed at release: key_release_refused"
        gateway.wait_ready(timeout=30)  # the same process, no restart
        eventually(lambda: "KeyReleased" in reasons(api), timeout=30)
        _, document = get(gateway.url + "/.well-known/ohttp-gateway/attestation")
    finally:
        assert gateway.terminate() == 0
    events = reasons(api)
    assert events["AttestationSucceeded"]["type"] == "Normal"
    assert str(events["AttestationSucceeded"]["message"]).startswith(
        f"MAA token from {emulators.maa_url}, expires "
    )
    key_id = kms.latest
    assert events["KeyReleased"]["message"] == f"key ids {key_id} released by kms"
    for event in events.values():
        assert event["involvedObject"] == {
            "apiVersion": "v1",
            "kind": "Pod",
            "name": POD,
            "namespace": NAMESPACE,
            "uid": UID,
        }
    annotations = api.pod_object()["metadata"]["annotations"]
    assert annotations["ohttp-gateway/key-ids"] == str(key_id)
    assert annotations["ohttp-gateway/attestation-provider"] == "simulated"
    assert annotations["ohttp-gateway/maa-issuer"] == emulators.maa_url
    assert annotations["ohttp-gateway/dev-mode"] == "false"
    token = json.loads(document)["token"]
    written = json.dumps([api.events(), annotations])
    assert token not in written
    assert token.split(".")[2] not in written  # not even the signature
    assert SA_TOKEN not in written
