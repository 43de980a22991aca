"""How the akv backend names a released key version (pure): the ``ohttp-key-id`` tag wins, else
the first byte of SHA-256 of the version id, the same on every replica; a bad tag or a
version-less key id is a typed error; ``--akv-key-id`` reaches the backend."""

from __future__ import annotations

import hashlib

import pytest

from gateway.config import load_settings
from gateway.errors import ConfigError, KeyReleaseError
from gateway.trust.components import kms_backend
from gateway.trust.kms.akv import AkvBackend, ohttp_key_id

VAULT = "https://vault.example"
VERSION = "0a1b2c3d4e5f60718293a4b5c6d7e8f9"
KEY_URL = f"{VAULT}/keys/ohttp-hpke/{VERSION}"


def test_tag_wins_over_the_version() -> None:
    assert ohttp_key_id(KEY_URL, {"ohttp-key-id": "17"}) == 17
    assert ohttp_key_id(KEY_URL, {"ohttp-key-id": "255", "owner": "x"}) == 255
    assert ohttp_key_id(KEY_URL, {"ohttp-key-id": "0"}) == 0


def test_derivation_is_the_first_byte_of_sha256_of_the_version_and_stable() -> None:
    # Pinned value: a change of the derivation would split replicas of different releases.
    assert hashlib.sha256(VERSION.encode()).digest()[0] == 0x43
    assert ohttp_key_id(KEY_URL, {}) == 0x43
    assert ohttp_key_id(KEY_URL, {"other": "tag"}) == 0x43
    other = ohttp_key_id(f"{VAULT}/keys/ohttp-hpke/ffffffffffffffffffffffffffffffff", {})
    assert other == hashlib.sha256(b"f" * 32).digest()[0] != 0x43


@pytest.mark.parametrize("tag", ["256", "-1", "01", "1.0", " 1", "x", "", "0x10", "1000"])
def test_invalid_tag_is_a_key_release_error(tag: str) -> None:
    with pytest.raises(KeyReleaseError, match="ohttp-key-id tag is not an integer"):
        ohttp_key_id(KEY_URL, {"ohttp-key-id": tag})


@pytest.mark.parametrize(
    "key_url", [f"{VAULT}/keys/ohttp-hpke", f"{VAULT}/keys/ohttp-hpke/", f"{KEY_URL}/extra"]
)
def test_key_id_without_a_version_is_a_key_release_error(key_url: str) -> None:
    with pytest.raises(KeyReleaseError, match="names no key version"):
        ohttp_key_id(key_url, {})


def _akv_env(**extra: str) -> dict[str, str]:
    return {
        "OHTTP_GATEWAY_KMS_BACKEND": "akv",
        "OHTTP_GATEWAY_MAA_URL": "https://maa.example",
        "OHTTP_GATEWAY_AKV_VAULT_URL": VAULT,
        "OHTTP_GATEWAY_AKV_KEY_NAME": "ohttp-hpke",
        **extra,
    }


def test_key_id_setting_reaches_the_backend() -> None:
    backend = kms_backend(load_settings(environ=_akv_env()))
    assert isinstance(backend, AkvBackend)
    assert backend.key_id is None  # per key version
    fixed = kms_backend(load_settings(environ=_akv_env(OHTTP_GATEWAY_AKV_KEY_ID="3")))
    assert isinstance(fixed, AkvBackend)
    assert fixed.key_id == 3


@pytest.mark.parametrize("value", ["256", "-1", "one"])
def test_key_id_setting_out_of_range_is_a_config_error(value: str) -> None:
    with pytest.raises(ConfigError, match="AKV_KEY_ID"):
        load_settings(environ=_akv_env(OHTTP_GATEWAY_AKV_KEY_ID=value))
    with pytest.raises(ConfigError, match="key id must be 0"):
        AkvBackend(VAULT, "ohttp-hpke", key_id=256)
