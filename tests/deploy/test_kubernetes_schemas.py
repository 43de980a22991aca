"""Every rendered scenario and manifests/ validate strictly against Kubernetes 1.29 through 1.33.

kubernetes-validate bundles the Kubernetes OpenAPI schemas; strict mode refuses unknown fields, so
a native sidecar's restartPolicy passes only where the field exists. The prometheus-operator kinds
have no schema there: test_monitoring.py validates them against the CRD schemas instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.deploy.conftest import KUBE_VERSIONS, ROOT, SCENARIOS, Rendered

CRD_KINDS = {"ServiceMonitor", "PodMonitor", "PrometheusRule"}


def validate_all(docs: list[dict[str, Any]], version: str) -> list[str]:
    errors = []
    for doc in docs:
        if doc["kind"] in CRD_KINDS:
            continue
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            errors.append(f"{doc['kind']}/{doc['metadata']['name']}: {exc.message}")
        except kubernetes_validate.SchemaNotFoundError:
            errors.append(f"{doc['kind']}/{doc['metadata']['name']}: no schema")
    return errors


@pytest.mark.parametrize("version", KUBE_VERSIONS)
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_scenario_validates(rendered: dict[str, Rendered], scenario: str, version: str) -> None:
    docs = rendered[scenario].docs
    assert docs
    assert validate_all(docs, version) == []


@pytest.mark.parametrize("version", KUBE_VERSIONS)
@pytest.mark.parametrize("manifest", ["ohttp-gateway.yaml", "monitoring.yaml"])
def test_manifests_validate(manifest: str, version: str) -> None:
    docs = [d for d in yaml.safe_load_all((ROOT / "manifests" / manifest).read_text()) if d]
    assert docs
    assert validate_all(docs, version) == []


def test_validator_refuses_what_kubernetes_refuses(rendered: dict[str, Rendered]) -> None:
    # The same Deployment with a typo'd field, and with the native sidecar on Kubernetes 1.27.
    deployment = rendered["default"].one("Deployment")
    broken = yaml.safe_load(yaml.safe_dump(deployment))
    broken["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    assert validate_all([broken], "1.29.0")
    assert validate_all([deployment], "1.27.0"), "1.27 has no native sidecars"


def test_manifests_are_not_empty_of_the_pod() -> None:
    text = Path(ROOT / "manifests" / "ohttp-gateway.yaml").read_text()
    assert "restartPolicy: Always" in text
