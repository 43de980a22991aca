"""`ohttp-gateway serve` in a pod: the notifier is wired in at startup from the downward-API
settings, and an unreachable API server leaves the gateway serving, with the failure counted.
With ``--workers 2`` only one worker talks to Kubernetes: each event once, not once per worker."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.emulators.tls import ensure_tls
from tests.support.accepted import gateway_workers, wait_for_each_worker
from tests.support.gateway_process import ROOT, GatewayProcess
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


def start(
    double: UpstreamDouble, tmp_path: Path, env: dict[str, str], *extra: str
) -> GatewayProcess:
    return GatewayProcess(double.url, tmp_path / "gateway.log", *extra, env=env).start()


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


def test_with_two_workers_each_event_is_recorded_once(
    double: UpstreamDouble, tmp_path: Path, pod_env: dict[str, str], api: KubeApi
) -> None:
    env = pod_env | {"KUBERNETES_SERVICE_PORT": str(api.port)}
    gateway = start(double, tmp_path, env, "--workers", "2")
    try:
        assert gateway.process is not None
        workers = gateway_workers(gateway.process.pid)
        assert len(workers) == 2
        # Both serve, so both have built their notifier (if any) and queued their dev-mode event.
        wait_for_each_worker(gateway.port, workers)
        eventually(lambda: any(e["reason"] == "KeyReleased" for e in api.events()))
        eventually(
            lambda: "ohttp-gateway/key-ids" in api.pod_object()["metadata"].get("annotations", {})
        )
        time.sleep(1.0)  # a second writer's event would have landed by now (it takes milliseconds)
        keys = gateway.url + "/.well-known/ohttp-gateway"
        with urllib.request.urlopen(keys, timeout=5) as response:  # noqa: S310 - loopback
            assert response.status == 200
    finally:
        assert gateway.terminate() == 0
    (event,) = api.events()
    assert (event["reason"], event["message"], event["count"]) == (
        "KeyReleased",
        "key ids 1,2 released by dev",
        1,
    )
    annotations = api.pod_object()["metadata"]["annotations"]
    assert annotations["ohttp-gateway/dev-mode"] == "true"
    assert annotations["ohttp-gateway/key-ids"] == "1,2"


def test_with_two_workers_a_required_but_missing_configuration_stops_the_gateway(
    double: UpstreamDouble, tmp_path: Path, pod_env: dict[str, str]
) -> None:
    # No KUBERNETES_SERVICE_PORT: the in-cluster configuration is incomplete. Only worker 0 builds
    # the notifier, so the supervisor checks first, or worker 1 would serve on alone.
    args = [sys.executable, "-m", "gateway.cli", "serve", "--dev", "--workers", "2"]
    args += ["--kubernetes-events", "on", "--port", str(free_port()), "--upstream", double.url]
    ended = subprocess.run(
        args, cwd=ROOT, env=dict(os.environ) | pod_env, capture_output=True, timeout=30, check=False
    )
    assert ended.returncode != 0
    assert b"Kubernetes in-cluster configuration is incomplete" in ended.stderr + ended.stdout
    assert b"supervisor_started" not in ended.stderr + ended.stdout
