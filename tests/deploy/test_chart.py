"""The chart lints, renders every scenario, and the rendered pod is what the issue asks for."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.config import load_settings
from tests.deploy.conftest import (
    CHART,
    NAMESPACE,
    SCENARIOS,
    Rendered,
    helm,
    render,
    scenario_values,
)


def test_chart_metadata() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2"
    assert chart["kubeVersion"] == ">=1.29.0-0"
    for field in ("name", "home", "version", "description", "sources", "appVersion"):
        assert chart.get(field), field


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_helm_lint_strict(scenario: str) -> None:
    result = helm("lint", "--strict", str(CHART), "-f", str(scenario_values(scenario)))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


def test_scenarios_cover_the_issue() -> None:
    wanted = {"default", "monitoring", "gpu-cvm-vtpm", "confidential-containers", "classic-sidecar"}
    assert wanted | {"dev"} <= set(SCENARIOS)


def test_old_kubernetes_refused() -> None:
    result = helm("template", "t", str(CHART), "--kube-version", "1.28.9")
    assert result.returncode != 0
    assert "kubeVersion" in result.stderr


def test_native_sidecar_gates_whisper(rendered: dict[str, Rendered]) -> None:
    item = rendered["default"]
    spec = item.pod_spec()
    assert [c["name"] for c in spec["initContainers"]] == ["gateway"]
    assert [c["name"] for c in spec["containers"]] == ["whisper"]
    gateway = item.container("gateway")
    assert gateway["restartPolicy"] == "Always"
    startup = gateway["startupProbe"]
    assert startup["httpGet"]["path"] == "/readyz"
    # The attestation gate waits minutes (MAA + key release + retries), not seconds.
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 300
    assert gateway["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert gateway["livenessProbe"]["httpGet"]["path"] == "/livez"


def test_classic_sidecar_switch(rendered: dict[str, Rendered]) -> None:
    item = rendered["classic-sidecar"]
    spec = item.pod_spec()
    assert "initContainers" not in spec
    assert {c["name"] for c in spec["containers"]} == {"gateway", "whisper"}
    assert "restartPolicy" not in item.container("gateway")


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def test_gateway_environment_follows_the_configuration_contract(
    rendered: dict[str, Rendered],
) -> None:
    contract = (CHART.parents[1] / "docs" / "configuration.md").read_text()
    for item in rendered.values():
        env = _env(item.container("gateway"))
        for name in env:
            if name.startswith("OHTTP_GATEWAY_"):
                assert f"`{name}`" in contract, f"{item.name}: {name} is not in the contract"
    gpu = _env(rendered["gpu-cvm-vtpm"].container("gateway"))
    assert gpu["OHTTP_GATEWAY_UPSTREAM"] == "http://127.0.0.1:8000"
    assert gpu["OHTTP_GATEWAY_EVIDENCE_PROVIDER"] == "azure-vtpm"
    assert gpu["OHTTP_GATEWAY_KMS_BACKEND"] == "akv"
    assert gpu["OHTTP_GATEWAY_AKV_VAULT_URL"].startswith("https://")
    assert gpu["OHTTP_GATEWAY_ALLOWED_PATHS"] == "/v1/audio/transcriptions,/v1/audio/translations"
    assert gpu["OHTTP_GATEWAY_DEV"] == "false"
    assert gpu["OHTTP_GATEWAY_TPM_TCTI"] == "device:/dev/tpmrm0"
    coco = _env(rendered["confidential-containers"].container("gateway"))
    assert coco["OHTTP_GATEWAY_EVIDENCE_PROVIDER"] == "sev-guest"
    assert coco["OHTTP_GATEWAY_SEV_GUEST_DEVICE"] == "/dev/sev-guest"
    assert "OHTTP_GATEWAY_TPM_TCTI" not in coco
    assert coco["OHTTP_GATEWAY_CCF_SERVICE_CERT"] == "/etc/ohttp-gateway/kms/service-cert.pem"
    dev = _env(rendered["dev"].container("gateway"))
    assert dev["OHTTP_GATEWAY_DEV"] == "true"
    assert dev["OHTTP_GATEWAY_DEV_SEED"]["secretKeyRef"]["name"] == "ohttp-gateway-dev-seed"


def test_body_deadline_values_reach_the_gateway_settings(tmp_path: Path) -> None:
    """The chart's body deadline values become environment the gateway parses to the same
    numbers; the defaults are the gateway's own. (A values file: `--set` makes 0.5 a string.)"""
    custom = tmp_path / "body.yaml"
    limits = {"bodyIdleTimeout": 0.5, "bodyMinRate": 2_000_000, "bodyRateGrace": 1}
    custom.write_text(yaml.safe_dump({"gateway": {"limits": limits}}))
    dev = scenario_values("dev")
    for values, expected in (([dev], (30.0, 100, 30.0)), ([dev, custom], (0.5, 2_000_000, 1.0))):
        env = _env(Rendered("body", "", render(values)).container("gateway"))
        settings = load_settings(None, {k: v for k, v in env.items() if isinstance(v, str)})
        got = (settings.body_idle_timeout, settings.body_min_rate, settings.body_rate_grace)
        assert got == expected


def test_akv_key_id_reaches_the_gateway_settings(tmp_path: Path) -> None:
    """null (the default) leaves the per-version key id; 0 is a key id like any other."""
    default = scenario_values("default")
    for key_id in (None, 0, 200):
        custom = tmp_path / f"akv-{key_id}.yaml"
        akv = {"vaultUrl": "https://vault.example", "keyName": "ohttp", "keyId": key_id}
        gateway = {"attestation": {"maaUrl": "https://maa.example"}, "kms": {"akv": akv}}
        custom.write_text(yaml.safe_dump({"gateway": gateway}))
        env = _env(Rendered("akv", "", render([default, custom])).container("gateway"))
        assert env["OHTTP_GATEWAY_KMS_BACKEND"] == "akv"
        if key_id is None:
            assert "OHTTP_GATEWAY_AKV_KEY_ID" not in env
        else:
            assert env["OHTTP_GATEWAY_AKV_KEY_ID"] == str(key_id)
        strings = {k: v for k, v in env.items() if isinstance(v, str)}
        assert load_settings(None, strings).akv_key_id == key_id


def test_service_exposes_only_the_gateway_port(rendered: dict[str, Rendered]) -> None:
    for item in rendered.values():
        service = item.one("Service", "ohttp-gateway")
        assert [p["targetPort"] for p in service["spec"]["ports"]] == ["gateway"]
        whisper = item.container("whisper")
        assert "ports" not in whisper, "Whisper's port must not even be named"


def test_metrics_port_is_separate(rendered: dict[str, Rendered]) -> None:
    item = rendered["monitoring"]
    ports = {p["name"]: p["containerPort"] for p in item.container("gateway")["ports"]}
    assert ports == {"gateway": 8080, "metrics": 9090}
    metrics_service = item.one("Service", "-metrics")
    assert [p["targetPort"] for p in metrics_service["spec"]["ports"]] == ["metrics"]


def test_hardening_everywhere(rendered: dict[str, Rendered]) -> None:
    for item in rendered.values():
        spec = item.pod_spec()
        assert spec["automountServiceAccountToken"] is False
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        for name in ("gateway", "whisper"):
            sc = item.container(name)["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True, (item.name, name)
            assert sc["capabilities"]["drop"] == ["ALL"], (item.name, name)
            assert sc["runAsNonRoot"] is True
            privileged = item.name in ("vtpm-hostpath", "confidential-containers")
            if name == "gateway" and privileged:
                assert sc["privileged"] is True
            else:
                assert sc["privileged"] is False, (item.name, name)
                assert sc["allowPrivilegeEscalation"] is False, (item.name, name)


def test_default_node_selector_is_confidential_vm(rendered: dict[str, Rendered]) -> None:
    selector = rendered["default"].pod_spec()["nodeSelector"]
    assert selector == {"kubernetes.azure.com/security-type": "ConfidentialVM"}


def test_gpu_pool_scenario(rendered: dict[str, Rendered]) -> None:
    item = rendered["gpu-cvm-vtpm"]
    spec = item.pod_spec()
    assert item.container("whisper")["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert spec["tolerations"][0]["key"] == "sku"
    assert "nodeAffinity" in spec["affinity"]
    # vTPM through the device plugin: a resource, no privilege, the tss group.
    gateway = item.container("gateway")
    assert gateway["resources"]["limits"]["squat.ai/tpmrm"] == 1
    assert 59 in spec["securityContext"]["supplementalGroups"]
    assert not any("hostPath" in v for v in spec["volumes"])
    assert item.one("HorizontalPodAutoscaler")["spec"]["maxReplicas"] == 4


def test_vtpm_hostpath_is_a_char_device_with_skips(rendered: dict[str, Rendered]) -> None:
    item = rendered["vtpm-hostpath"]
    volumes = {v["name"]: v for v in item.pod_spec()["volumes"]}
    assert volumes["attestation-device"]["hostPath"] == {
        "path": "/dev/tpmrm0",
        "type": "CharDevice",
    }
    mounts = {m["name"]: m["mountPath"] for m in item.container("gateway")["volumeMounts"]}
    assert mounts["attestation-device"] == "/dev/tpmrm0"
    assert "attestation-device" not in {
        m["name"] for m in item.container("whisper")["volumeMounts"]
    }
    annotations = item.one("Deployment")["metadata"]["annotations"]
    skipped = {v.split("=", 1)[0] for k, v in annotations.items() if k.startswith("checkov.io/")}
    assert skipped == {"CKV_K8S_16", "CKV_K8S_20"}
    assert "checkov.io/skip1" not in (rendered["default"].one("Deployment")["metadata"] or {}).get(
        "annotations", {}
    )


def test_confidential_containers_scenario(rendered: dict[str, Rendered]) -> None:
    item = rendered["confidential-containers"]
    spec = item.pod_spec()
    assert spec["runtimeClassName"] == "kata-cc-isolation"
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["attestation-device"]["hostPath"]["path"] == "/dev/sev-guest"
    assert "azure.workload.identity/use" not in spec.get("labels", {})


def test_workload_identity(rendered: dict[str, Rendered]) -> None:
    item = rendered["gpu-cvm-vtpm"]
    labels = item.one("Deployment")["spec"]["template"]["metadata"]["labels"]
    assert labels["azure.workload.identity/use"] == "true"
    account = item.one("ServiceAccount")
    annotations = account["metadata"]["annotations"]
    assert annotations["azure.workload.identity/client-id"] == (
        "00000000-0000-0000-0000-000000000000"
    )
    assert annotations["azure.workload.identity/tenant-id"] == (
        "11111111-1111-1111-1111-111111111111"
    )
    assert account["automountServiceAccountToken"] is False


def test_events_token_only_in_the_gateway_and_minimal_rbac(rendered: dict[str, Rendered]) -> None:
    item = rendered["gpu-cvm-vtpm"]
    gateway_mounts = {m["name"] for m in item.container("gateway")["volumeMounts"]}
    whisper_mounts = {m["name"] for m in item.container("whisper")["volumeMounts"]}
    assert "kube-api-access" in gateway_mounts
    assert "kube-api-access" not in whisper_mounts
    rules = item.one("Role")["rules"]
    granted = {
        (g, r, v)
        for rule in rules
        for g in rule["apiGroups"]
        for r in rule["resources"]
        for v in rule["verbs"]
    }
    assert granted == {
        ("", "events", "create"), ("", "events", "patch"),
        ("", "pods", "get"), ("", "pods", "patch"),
    }  # fmt: skip
    assert not rendered["default"].kind("Role")


def test_network_policy(rendered: dict[str, Rendered]) -> None:
    item = rendered["gpu-cvm-vtpm"]
    policy = item.one("NetworkPolicy", "ohttp-gateway")["spec"]
    ingress_ports = [p["port"] for rule in policy["ingress"] for p in rule["ports"]]
    assert ingress_ports == ["gateway", "metrics"]
    metrics_from = policy["ingress"][1]["from"][0]["namespaceSelector"]["matchLabels"]
    assert metrics_from == {"kubernetes.io/metadata.name": "monitoring"}
    egress_ports = sorted({p["port"] for rule in policy["egress"] for p in rule["ports"]})
    assert egress_ports == [53, 80, 443]
    imds = [r for r in policy["egress"] if r["ports"][0]["port"] == 80]
    assert imds[0]["to"] == [{"ipBlock": {"cidr": "169.254.169.254/32"}}]
    https = [r for r in policy["egress"] if r["ports"][0]["port"] == 443]
    # MAA, KMS, Entra ID and (events on) the API server: each its own rule.
    assert len(https) == 4
    assert https[0]["to"][0]["ipBlock"]["except"][-1] == "169.254.0.0/16"
    dev = rendered["dev"].one("NetworkPolicy", "ohttp-gateway")["spec"]
    assert [r["ports"][0]["port"] for r in dev["egress"]] == [53]


def test_pdb_and_probes_of_whisper(rendered: dict[str, Rendered]) -> None:
    item = rendered["default"]
    assert item.one("PodDisruptionBudget")["spec"]["minAvailable"] == 1
    whisper = item.container("whisper")
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert probe in whisper


def test_monitors_are_gated_on_capabilities_and_values() -> None:
    from tests.deploy.conftest import render

    sets = ["metrics.serviceMonitor.enabled=true", "metrics.prometheusRule.enabled=true"]
    without_api = {d["kind"] for d in render(sets=sets, monitoring=False)}
    assert not without_api & {"ServiceMonitor", "PodMonitor", "PrometheusRule"}
    with_api = {d["kind"] for d in render(sets=sets)}
    assert {"ServiceMonitor", "PrometheusRule"} <= with_api
    assert "PodMonitor" not in with_api
    assert "ServiceMonitor" not in {d["kind"] for d in render()}


def test_monitors_are_mutually_exclusive() -> None:
    result = helm(
        "template", "t", str(CHART), "--kube-version", "1.29.0",
        "--set", "metrics.serviceMonitor.enabled=true", "--set", "metrics.podMonitor.enabled=true",
    )  # fmt: skip
    assert result.returncode != 0
    assert "not both" in result.stderr


def test_dashboard_configmap(rendered: dict[str, Rendered]) -> None:
    configmap = rendered["monitoring"].one("ConfigMap", "-dashboard")
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert configmap["data"]["ohttp-gateway.json"].lstrip().startswith("{")


def test_helm_test_hook_fetches_keys_and_attestation(rendered: dict[str, Rendered]) -> None:
    pod = rendered["default"].one("Pod", "-test")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    script = pod["spec"]["containers"][0]["command"][-1]
    service = f"http://t-ohttp-gateway.{NAMESPACE}.svc:80"
    assert service in script
    assert '"/.well-known/ohttp-gateway"' in script
    assert '"/.well-known/ohttp-gateway/attestation"' in script
    # The test pod must not be selected by the Deployment, Service or PDB.
    selector = rendered["default"].one("Deployment")["spec"]["selector"]["matchLabels"]
    labels = pod["metadata"]["labels"]
    assert not all(labels.get(k) == v for k, v in selector.items())


def _notes(tmp_path: Path, values: str) -> str:
    """NOTES.txt as Helm renders it: `helm template` prints no notes, so a copy of the chart
    renders the real file through `tpl` into a ConfigMap (no cluster needed)."""
    chart = tmp_path / "chart"
    shutil.copytree(CHART, chart)
    (chart / "NOTES.copy").write_text((CHART / "templates" / "NOTES.txt").read_text())
    (chart / "templates" / "zz-notes.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: notes\n"
        'data:\n  notes: {{ tpl (.Files.Get "NOTES.copy") . | quote }}\n'
    )
    result = helm(
        "template", "t", str(chart), "--kube-version", "1.29.0", "-f", str(scenario_values(values)),
        "-s", "templates/zz-notes.yaml",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    notes: str = yaml.safe_load(result.stdout)["data"]["notes"]
    return notes


def test_notes(tmp_path: Path) -> None:
    dev = _notes(tmp_path / "dev", "dev")
    assert "NOTHING SENT THROUGH THIS RELEASE IS CONFIDENTIAL" in dev
    default = _notes(tmp_path / "default", "default")
    assert "CONFIDENTIAL" not in default
    assert "/.well-known/ohttp-gateway/attestation" in default
    assert "cannot reach /dev/tpmrm0" in default  # azure-vtpm without a device: warned
    assert "cannot reach" not in _notes(tmp_path / "gpu", "gpu-cvm-vtpm")


def test_chart_release_policies_are_the_documented_ones(rendered: dict[str, Rendered]) -> None:
    # Helm packages only files inside the chart: the chart carries copies, kept identical here.
    documented = CHART.parents[1] / "docs" / "release-policies"
    copies = sorted(p.name for p in (CHART / "policies").glob("*.json"))
    assert copies == sorted(p.name for p in documented.glob("*.json"))
    for name in copies:
        assert (CHART / "policies" / name).read_bytes() == (documented / name).read_bytes(), name
    configmap = rendered["monitoring"].one("ConfigMap", "-release-policies")
    assert sorted(configmap["data"]) == copies
