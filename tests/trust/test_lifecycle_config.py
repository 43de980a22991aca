"""The lifecycle's parts from settings: a missing or unusable setting is a ConfigError before
serving starts (``serve`` exits 2 naming it), never a lifecycle that retries forever."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gateway.config import Settings
from gateway.errors import ConfigError
from gateway.trust.components import build_attester, evidence_provider, kms_backend
from gateway.trust.evidence.simulated import SimulatedAmd
from tests.support.gateway_process import ROOT

MAA = "https://127.0.0.1:1"


def _ignore(service: str, seconds: float, error: object) -> None:
    return None


@pytest.mark.parametrize(
    ("settings", "names"),
    [
        (Settings(kms_backend="ccf", ccf_url="https://127.0.0.1:2"), "--ccf-service-cert"),
        (Settings(kms_backend="akv"), "--akv-vault-url"),
        (Settings(kms_backend="dev"), "--kms-backend"),
    ],
    ids=["ccf-cert", "akv-vault", "dev-backend"],
)
def test_missing_kms_settings_are_config_errors(settings: Settings, names: str) -> None:
    with pytest.raises(ConfigError, match=names):
        kms_backend(settings)


def test_simulated_provider_needs_its_bundle() -> None:
    with pytest.raises(ConfigError, match="--simulated-amd"):
        evidence_provider(Settings(evidence_provider="simulated", maa_url=MAA))


def test_no_maa_url_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="--maa-url"):
        build_attester(Settings(), _ignore)


def test_a_corrupt_simulated_amd_bundle_is_a_config_error(tmp_path: Path) -> None:
    bundle = tmp_path / "amd.pem"
    bundle.write_bytes(b"not a bundle")
    with pytest.raises(ConfigError):
        evidence_provider(Settings(evidence_provider="simulated", simulated_amd=bundle))


def test_simulated_provider_from_its_bundle(tmp_path: Path) -> None:
    bundle = tmp_path / "amd.pem"
    bundle.write_bytes(SimulatedAmd.generate(rsa_bits=2048).dump())
    provider = evidence_provider(Settings(evidence_provider="simulated", simulated_amd=bundle))
    assert provider.name == "simulated"


def test_serve_exits_2_naming_the_missing_setting() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "serve", "--kms-backend", "ccf",
         "--ccf-url", "https://127.0.0.1:1", "--maa-url", MAA,
         "--evidence-provider", "simulated", "--port", "0", "--metrics-port", "0"],
        cwd=ROOT, capture_output=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert b"--simulated-amd" in result.stderr


def test_dev_mode_has_no_key_lifecycle() -> None:
    from gateway.trust.components import build_lifecycle

    class Observer:
        def record(self, service: str, seconds: float, error: object) -> None:
            return None

    with pytest.raises(ConfigError, match="--dev"):
        build_lifecycle(Settings(dev=True, maa_url=MAA), Observer())  # type: ignore[arg-type]
