"""`ohttp-gateway serve` in a pod: the notifier is wired in at startup from the downward-API
settings, and an unreachable API server leaves the gateway serving, with the failure counted."""

from __future__ import annotations

import re
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.emulators.tls import ensure_tls
from tests.support.gateway_process import GatewayProcess
from tests.support.kube_api import KubeApi, eventually, write_token
from tests.support.upstream_double import UpstreamDouble, free_port

NAMESPACE, POD, UID = "whisper", "gateway-5c8d-fghij", "0a7e2f3c-1b2d-4e5f-8a9b-0c1d2e3f4a5b"
SA_TOKEN = "service-account-token-for-the-serve-test"


@pytest.fixture
def pod_env(tmp_path: Path) -> dict[str, str]:
    return {
        "OHTTP_GATEWAY_POD_NAME": POD,
        "OHTTP_GATEWAY_POD_NAMESPACE": NAMESPACE,
        "OHTTP_GATEWAY_KUBERNETES_TOKEN_FILE": str(write_token(tmp_path, SA_TOKEN)),
        "OHTTP_GATEWAY_KUBERNETES_CA_FILE": str(ensure_tls(tmp_path / "tls").ca_path),
        "KUBERNETES_SERVICE_HOST": "127.0.0.1",
    }


@pytest.fixture
def api(tmp_path: Path) -> Iterator[KubeApi]:
    server = KubeApi(ensure_tls(tmp_path / "tls"), NAMESPACE, POD, UID).start()
    yield server
    server.stop()


def start(double: UpstreamDouble, tmp_path: Path, env: dict[str, str]) -> GatewayProcess:
    return GatewayProcess(double.url, tmp_path / "gateway.log", env=env).start()


def test_a_dev_gateway_in_a_pod_reports_its_keys_and_dev_mode(
    double: UpstreamDouble, tmp_path: Path, pod_env: dict[str, str], api: KubeApi
) -> None:
    gateway = start(double, tmp_path, pod_env | {"KUBERNETES_SERVICE_PORT": str(api.port)})
    try:
        eventually(lambda: any(e["reason"] == "KeyReleased" for e in api.events()))
        eventually(
            lambda: "ohttp-gateway/key-ids" in api.pod_object()["metadata"].get("annotations", {})
        )
    finally:
        assert gateway.terminate() == 0
    (event,) = api.events()
    assert (event["type"], event["message"]) == ("Normal", "key ids 1,2 released by dev")
    assert event["involvedObject"]["uid"] == UID
    annotations = api.pod_object()["metadata"]["annotations"]
    assert annotations["ohttp-gateway/dev-mode"] == "true"
    assert annotations["ohttp-gateway/key-ids"] == "1,2"
    assert api.authorizations() == {"bearer " + SA_TOKEN}


def test_an_unreachable_api_server_leaves_the_gateway_serving(
    double: UpstreamDouble, tmp_path: Path, pod_env: dict[str, str]
) -> None:
    gateway = start(double, tmp_path, pod_env | {"KUBERNETES_SERVICE_PORT": str(free_port())})
    counted = re.compile(
        r'^ohttp_gateway_kubernetes_errors_total\{reason="unreachable"\} [1-9]', re.M
    )

    def scraped() -> str:
        with urllib.request.urlopen(gateway.metrics_url, timeout=5) as response:  # noqa: S310
            return str(response.read().decode())

    try:
        eventually(lambda: counted.search(scraped()) is not None)
        keys = gateway.url + "/.well-known/ohttp-gateway"
        with urllib.request.urlopen(keys, timeout=5) as response:  # noqa: S310 - loopback
            assert response.status == 200
    finally:
        assert gateway.terminate() == 0
    assert '"event": "kubernetes_call_failed"' in gateway.logs()
