"""Monitoring: CRD schemas, promtool check/test rules, and the metric names of docs/metrics.md."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.conftest import CRD_VALIDATE, PROMTOOL, ROOT, Rendered, render, require_tools, run

ALERTS_TEST = Path(__file__).with_name("alerts_test.yaml")
DASHBOARD = ROOT / "charts" / "ohttp-gateway" / "dashboards" / "ohttp-gateway.json"
METRIC = re.compile(r"\b(ohttp_gateway_[a-z_]+)")


def documented_metrics() -> set[str]:
    text = (ROOT / "docs" / "metrics.md").read_text()
    names = set(re.findall(r"^\| `(ohttp_gateway_[a-z_]+)`", text, re.MULTILINE))
    assert len(names) >= 15
    histograms = set(re.findall(r"^\| `(ohttp_gateway_[a-z_]+)` \| histogram", text, re.MULTILINE))
    return names | {f"{h}_{s}" for h in histograms for s in ("bucket", "sum", "count")}


def crd_validate(*files: Path) -> tuple[int, str]:
    require_tools()
    result = run(["node", str(CRD_VALIDATE), *map(str, files)])
    return result.returncode, result.stdout + result.stderr


def test_monitoring_kinds_validate_against_the_crd_schemas(rendered_dir: Path) -> None:
    files = [rendered_dir / f"{name}.yaml" for name in ("monitoring", "podmonitor", "dev")]
    code, output = crd_validate(*files, ROOT / "manifests" / "monitoring.yaml")
    assert code == 0, output
    oks = [line.split()[1] for line in output.splitlines() if line.startswith("OK ")]
    assert sorted(set(oks)) == ["PodMonitor", "PrometheusRule", "ServiceMonitor"]


def test_crd_validator_refuses_a_broken_monitor(
    rendered: dict[str, Rendered], tmp_path: Path
) -> None:
    monitor = rendered["monitoring"].one("ServiceMonitor")
    monitor["spec"]["endpoints"][0]["interval"] = 30  # a number, where the CRD wants a duration
    broken = tmp_path / "broken.yaml"
    broken.write_text(yaml.safe_dump(monitor))
    code, output = crd_validate(broken)
    assert code == 1
    assert "INVALID ServiceMonitor" in output
    empty = tmp_path / "empty.yaml"
    empty.write_text("kind: ConfigMap\napiVersion: v1\nmetadata: {name: x}\n")
    assert crd_validate(empty)[0] == 1, "a file without monitoring kinds must not pass"


def rules_of(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (rule,) = [d for d in docs if d["kind"] == "PrometheusRule"]
    spec: dict[str, Any] = rule["spec"]
    return spec


def write_rules(directory: Path, docs: list[dict[str, Any]]) -> Path:
    """promtool reads a rule file: the PrometheusRule's spec, next to a copy of the unit tests."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "rules.yaml").write_text(yaml.safe_dump(rules_of(docs)))
    shutil.copy(ALERTS_TEST, directory / "alerts_test.yaml")
    return directory


def promtool(*args: str) -> tuple[int, str]:
    require_tools()
    result = run([str(PROMTOOL), *args])
    return result.returncode, result.stdout + result.stderr


def alert_names(docs: list[dict[str, Any]]) -> set[str]:
    return {r["alert"] for g in rules_of(docs)["groups"] for r in g["rules"] if "alert" in r}


@pytest.fixture(scope="module")
def rule_docs() -> list[dict[str, Any]]:
    return render(sets=["metrics.prometheusRule.enabled=true"])


def test_promtool_check_rules(rule_docs: list[dict[str, Any]], tmp_path: Path) -> None:
    directory = write_rules(tmp_path, rule_docs)
    code, output = promtool("check", "rules", str(directory / "rules.yaml"))
    assert code == 0, output
    assert "SUCCESS: 9 rules found" in output


def test_promtool_unit_tests_pass(rule_docs: list[dict[str, Any]], tmp_path: Path) -> None:
    directory = write_rules(tmp_path, rule_docs)
    code, output = promtool("test", "rules", str(directory / "alerts_test.yaml"))
    assert code == 0, output
    assert "SUCCESS" in output


def test_every_alert_has_a_firing_and_a_quiet_case(rule_docs: list[dict[str, Any]]) -> None:
    wanted = {
        "OhttpGatewayAttestationFailing", "OhttpGatewayAttestationTokenExpiring",
        "OhttpGatewayKeyNearExpiry", "OhttpGatewayDecapsulationErrors",
        "OhttpGatewayUpstreamErrors", "OhttpGatewayHighLatency", "OhttpGatewayNotReady",
        "OhttpGatewayDevModeRunning", "OhttpGatewayKeyAgreementChildFailing",
    }  # fmt: skip
    assert alert_names(rule_docs) == wanted
    cases = yaml.safe_load(ALERTS_TEST.read_text())["tests"]
    fires = {t["alertname"] for c in cases for t in c["alert_rule_test"] if t["exp_alerts"]}
    quiet = {t["alertname"] for c in cases for t in c["alert_rule_test"] if not t["exp_alerts"]}
    assert fires == wanted
    assert quiet == wanted


@pytest.mark.parametrize(
    "threshold",
    [{"latencyP99Seconds": 1000}, {"upstreamErrorRatio": 0.5}, {"keyMaxAgeSeconds": 5000000}],
)
def test_unit_tests_catch_a_changed_threshold(threshold: dict[str, float], tmp_path: Path) -> None:
    # A values file, not --set: Helm's --set passes 0.5 as a string, which the schema refuses.
    values = tmp_path / "values.yaml"
    values.write_text(
        yaml.safe_dump({"metrics": {"prometheusRule": {"enabled": True, **threshold}}})
    )
    docs = render(values=[values])
    directory = write_rules(tmp_path, docs)
    code, output = promtool("test", "rules", str(directory / "alerts_test.yaml"))
    assert code != 0, "the unit tests must notice an alert that no longer fires"
    assert "FAILED" in output


def test_alerts_and_dashboard_use_only_documented_metrics(
    rule_docs: list[dict[str, Any]], rendered: dict[str, Rendered]
) -> None:
    documented = documented_metrics()
    used = set(METRIC.findall(json.dumps(rules_of(rule_docs))))
    dashboard = DASHBOARD.read_text()
    used |= set(METRIC.findall(dashboard))
    tests = set(METRIC.findall(ALERTS_TEST.read_text()))
    assert used, "no metric found"
    assert used - documented == set()
    assert tests - documented == set()
    # The dashboard shows every documented metric family at least once.
    base = {m for m in documented if not m.endswith(("_bucket", "_sum", "_count"))}
    shown = {m.removesuffix("_bucket") for m in METRIC.findall(dashboard)}
    assert base - shown == set()


def test_dashboard_is_valid_grafana_json() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "ohttp-gateway"
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert 'namespace="$namespace"' in target["expr"]


def test_promtool_accepts_the_documented_metric_exposition() -> None:
    # The names of docs/metrics.md pass promtool's exposition lint (counters end in _total, ...).
    lines = []
    text = (ROOT / "docs" / "metrics.md").read_text()
    for name, kind in re.findall(r"^\| `(ohttp_gateway_[a-z_]+)` \| (\w+)", text, re.MULTILINE):
        lines.append(f"# HELP {name} doc\n# TYPE {name} {kind}")
        if kind == "histogram":
            lines.append(f'{name}_bucket{{le="+Inf"}} 1\n{name}_sum 1\n{name}_count 1')
        else:
            lines.append(f"{name} 1")
    require_tools()
    result = run([str(PROMTOOL), "check", "metrics"], input="\n".join(lines) + "\n")
    assert result.returncode == 0, result.stdout + result.stderr
