"""manifests/ is what `make manifests` renders from the chart today."""

from __future__ import annotations

from pathlib import Path

from tests.deploy.conftest import HELM, ROOT, require_tools, run


def test_manifests_are_in_sync_with_the_chart(tmp_path: Path) -> None:
    require_tools()
    result = run([str(ROOT / "scripts" / "render-manifests"), str(HELM), str(tmp_path)], cwd=ROOT)
    assert result.returncode == 0, result.stderr
    committed = sorted(p.name for p in (ROOT / "manifests").glob("*.yaml"))
    rendered = sorted(p.name for p in tmp_path.glob("*.yaml"))
    assert committed == rendered == ["monitoring.yaml", "ohttp-gateway.yaml"]
    for name in rendered:
        assert (ROOT / "manifests" / name).read_text() == (tmp_path / name).read_text(), (
            f"manifests/{name} is out of sync with the chart: run `make manifests`"
        )


def test_manifests_hold_the_pod_and_no_test_hook() -> None:
    text = (ROOT / "manifests" / "ohttp-gateway.yaml").read_text()
    assert "kind: Deployment" in text
    assert "helm.sh/hook" not in text
    assert "kubernetes.azure.com/security-type: ConfidentialVM" in text
