"""values.schema.json refuses typos and wrong types; every value is documented; guards fire."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from tests.deploy.conftest import CHART, helm, scenario_values
from tools.chart import __main__ as chart_docs
from tools.chart import values_doc


def _schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads((CHART / "values.schema.json").read_text())
    return schema


def _lint(*args: str) -> tuple[int, str]:
    result = helm("lint", "--strict", str(CHART), *args)
    return result.returncode, result.stdout + result.stderr


def test_schema_is_draft_07() -> None:
    assert _schema()["$schema"] == "http://json-schema.org/draft-07/schema#"


def _objects(node: Any, path: str) -> list[tuple[str, dict[str, Any]]]:
    found = []
    if isinstance(node, dict):
        kind = node.get("type")
        kinds = kind if isinstance(kind, list) else [kind]
        if "object" in kinds or "properties" in node:
            found.append((path, node))
        for key, value in node.items():
            found += _objects(value, f"{path}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += _objects(value, f"{path}/{index}")
    return found


def test_every_object_is_closed() -> None:
    objects = _objects(_schema(), "#")
    assert len(objects) > 100
    for path, node in objects:
        closed = node.get("additionalProperties")
        if "properties" in node:
            assert closed is False, f"{path} has properties but is open"
        else:  # a typed map, or an object that takes nothing at all
            assert closed is False or isinstance(closed, dict), f"{path} is an untyped object"


def test_schema_and_readme_are_generated_from_the_sources() -> None:
    for path, text in chart_docs.expected().items():
        assert path.read_text() == text, f"{path.name} is stale: run `make chart-docs`"


def test_every_value_is_in_the_readme() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    readme = (CHART / "README.md").read_text()

    def leaves(node: Any, prefix: str) -> list[str]:
        if isinstance(node, dict) and node:
            return [p for k, v in node.items() for p in leaves(v, f"{prefix}{k}.")]
        return [prefix.rstrip(".")]

    documented = {row.path for row in values_doc.rows((CHART / "values.yaml").read_text())}
    for leaf in leaves(values, ""):
        parts = leaf.split(".")
        covering = [".".join(parts[:n]) for n in range(len(parts), 0, -1)]
        assert any(f"`{path}`" in readme and path in documented for path in covering), leaf


def test_undocumented_value_is_caught() -> None:
    text = (CHART / "values.yaml").read_text() + "\nsneaky: 1\n"
    with pytest.raises(values_doc.UndocumentedValue):
        values_doc.rows(text)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("gateway.prot=8080", "Additional property prot is not allowed"),
        ("whisper.image.tagg=x", "Additional property tagg is not allowed"),
        ("networkPolicy.egress.maaa.enabled=true", "Additional property maaa is not allowed"),
        ("affinity.nodeAfinity.x=1", "Additional property nodeAfinity is not allowed"),
    ],
)
def test_typo_is_refused(override: str, message: str) -> None:
    code, output = _lint("--set", override)
    assert code != 0
    assert message in output


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("replicaCount=two", "Invalid type. Expected: integer, given: string"),
        ("gateway.nativeSidecar=yes", "Invalid type. Expected: boolean, given: string"),
        ("whisper.gpu=-1", "Must be greater than or equal to 0"),
        ("gateway.attestation.evidenceProvider=tpm", "must be one of the following"),
        ("gateway.attestation.maaUrl=http://maa.example", "Does not match pattern"),
        ("gateway.image.digest=sha256:abc", "Does not match pattern"),
        ("gateway.limits.bodyIdleTimeout=0", "Must be greater than or equal to 0.05"),
        ("gateway.limits.bodyRateGrace=0", "Must be greater than or equal to 1"),
        ("gateway.limits.bodyMinRate=-1", "Must be greater than or equal to 0"),
        ("gateway.kms.akv.keyId=256", "Must be less than or equal to 255"),
    ],
)
def test_wrong_type_or_value_is_refused(override: str, message: str) -> None:
    code, output = _lint("--set-string" if "two" in override or "yes" in override else "--set",
                         override)  # fmt: skip
    assert code != 0
    assert message in output


def test_defaults_and_scenarios_pass_the_schema() -> None:
    code, output = _lint()
    assert code == 0, output
    for name in ("gpu-cvm-vtpm", "confidential-containers"):
        code, output = _lint("-f", str(scenario_values(name)))
        assert code == 0, output


def _template(*args: str) -> tuple[int, str]:
    result = helm("template", "t", str(CHART), "--kube-version", "1.29.0", *args)
    return result.returncode, result.stderr


def test_dev_mode_with_replicas_needs_a_shared_seed() -> None:
    dev = ["--set", "gateway.dev.enabled=true", "--set", "gateway.kms.backend=dev"]
    code, error = _template(*dev, "--set", "replicaCount=2")
    assert code != 0
    assert "needs gateway.dev.seedSecret.name" in error
    code, error = _template(*dev, "--set", "replicaCount=1", "--set", "autoscaling.enabled=true")
    assert code != 0, "an HPA may scale dev mode above one replica"
    assert _template(*dev, "--set", "replicaCount=1")[0] == 0
    seeded = [*dev, "--set", "replicaCount=3", "--set", "gateway.dev.seedSecret.name=seed"]
    assert _template(*seeded)[0] == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "gateway.kms.backend=dev"], "allowed only with gateway.dev.enabled"),
        (["--set", "gateway.attestation.evidenceProvider=simulated"], "allowed only with"),
        (["--set", "autoscaling.enabled=true", "--set", "autoscaling.minReplicas=7"],
         "maxReplicas must be at least"),
        (["--set", "autoscaling.enabled=true",
          "--set", "autoscaling.targetCPUUtilizationPercentage=0"],
         "needs targetCPUUtilizationPercentage or targetInFlightRequests"),
    ],
)  # fmt: skip
def test_other_guards(args: list[str], message: str) -> None:
    code, error = _template(*args)
    assert code != 0
    assert message in error
