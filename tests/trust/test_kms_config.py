"""Backend construction refuses bad settings loudly (ConfigError), before any I/O."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.emulators.keyvault_signing import ReleaseSigner
from gateway.errors import ConfigError
from gateway.trust.kms.akv import AkvBackend, is_loopback_host, load_trust_roots
from gateway.trust.kms.ccf import CcfBackend, load_service_certificate

SIGNER = ReleaseSigner("vault.example")


@pytest.mark.parametrize(
    ("url", "options"),
    [
        ("http://vault.example", {}),
        ("https://vault.example/keys", {}),
        ("https://vault.example", {"enc": "RSA1_5"}),
        ("https://vault.example", {"key_id": 256}),
        ("https://vault.example", {"credential": "client-secret"}),
    ],
)
def test_akv_settings_are_checked(url: str, options: dict[str, object]) -> None:
    settings: dict[str, object] = {"key_id": 1}
    settings.update(options)
    with pytest.raises(ConfigError):
        AkvBackend(url, "k", **settings)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("url", "options"),
    [
        ("http://kms.example", {}),
        ("https://kms.example/app?kid=1", {}),
        ("https://kms.example", {"pending_attempts": 0}),
    ],
)
def test_ccf_settings_are_checked(url: str, options: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        CcfBackend(url, SIGNER.root, **options)  # type: ignore[arg-type]


def test_trust_roots_take_the_bundle_and_refuse_a_broken_one(tmp_path: Path) -> None:
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(SIGNER.root_pem())
    assert SIGNER.root in load_trust_roots(bundle)
    bundle.write_bytes(SIGNER.root_pem().replace(b"MII", b"MIX", 1))
    with pytest.raises(ConfigError):
        load_trust_roots(bundle)
    with pytest.raises(ConfigError):
        load_trust_roots(tmp_path / "missing.pem")
    with pytest.raises(ConfigError):
        load_service_certificate(tmp_path / "missing.pem")


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("::1", True), ("localhost", True), ("vault.azure.net", False)],
)
def test_challenge_resource_check_is_relaxed_only_for_loopback(host: str, loopback: bool) -> None:
    assert is_loopback_host(host) is loopback
