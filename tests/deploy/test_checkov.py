"""checkov finds no failed check in any rendered scenario; every skip is annotated with its reason.

One checkov run covers all scenarios (its start-up dominates the time); results are told apart by
file. The expected skips are listed here, so a new skip needs a reviewed change to this test.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.conftest import CHECKOV, SCENARIOS, require_tools, run

# (scenario, check id) -> the resource it is skipped on. Reasons live in the chart's annotations.
EXPECTED_SKIPS = {
    **{(s, "CKV_K8S_8"): "Pod" for s in SCENARIOS},  # helm test pod: runs to completion
    **{(s, "CKV_K8S_9"): "Pod" for s in SCENARIOS},
    ("vtpm-hostpath", "CKV_K8S_16"): "Deployment",  # hostPath device: privileged
    ("vtpm-hostpath", "CKV_K8S_20"): "Deployment",
    ("confidential-containers", "CKV_K8S_16"): "Deployment",
    ("confidential-containers", "CKV_K8S_20"): "Deployment",
    ("dev", "CKV_K8S_35"): "Deployment",  # the dev seed is an env var by contract
}


@pytest.fixture(scope="module")
def checkov_results(rendered_dir: Path) -> dict[str, dict[str, Any]]:
    require_tools()
    files = [rendered_dir / f"{name}.yaml" for name in SCENARIOS]
    command = [str(CHECKOV), "--skip-download", "--framework", "kubernetes"]
    command += ["-o", "json"]
    for path in files:
        command += ["-f", str(path)]
    result = run(command)
    # checkov exits 1 when a check fails; the JSON still comes. Anything else is a broken run.
    assert result.returncode in (0, 1), result.stderr[-3000:]
    report = json.loads(result.stdout)
    reports = report if isinstance(report, list) else [report]
    (kubernetes,) = [r for r in reports if r["check_type"] == "kubernetes"]
    by_scenario: dict[str, dict[str, Any]] = {
        name: {"passed": [], "failed": [], "skipped": []} for name in SCENARIOS
    }
    for outcome in ("passed", "failed", "skipped"):
        for check in kubernetes["results"][f"{outcome}_checks"]:
            name = Path(check["file_path"]).name.removesuffix(".yaml")
            by_scenario[name][outcome].append(check)
    return by_scenario


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_no_failed_checks(checkov_results: dict[str, dict[str, Any]], scenario: str) -> None:
    result = checkov_results[scenario]
    failed = [f"{c['check_id']} {c['resource']}" for c in result["failed"]]
    assert failed == []
    assert len(result["passed"]) > 150, "checkov checked almost nothing"


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_skips_are_the_expected_ones_with_reasons(
    checkov_results: dict[str, dict[str, Any]], scenario: str
) -> None:
    skipped = checkov_results[scenario]["skipped"]
    found = {(scenario, c["check_id"]): c["resource"].split(".")[0] for c in skipped}
    expected = {key: kind for key, kind in EXPECTED_SKIPS.items() if key[0] == scenario}
    assert found == expected
    for check in skipped:
        assert len(check["check_result"].get("suppress_comment", "")) > 30, check["check_id"]
