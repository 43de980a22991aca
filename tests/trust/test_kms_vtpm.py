"""The vTPM route: both KMSs wrap to TpmEphemeralEncryptionKey and a real TPM (swtpm, provisioned
like an Azure CVM's vTPM) unwraps, under its PCR policy, through the azure-vtpm provider.

The token comes from the MAA emulator's SevSnpVm route with the TPM key as its runtime key (the
KMSs wrap to the first RSA key of ``x-ms-runtime.keys``, as for an AzureGuest token)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from gateway.emulators.tls import ensure_tls
from gateway.errors import KeyUnwrapFailed
from gateway.trust import tpm_verify
from gateway.trust.evidence.azure_vtpm import AzureVtpmConfig, AzureVtpmProvider
from gateway.trust.evidence.simulated import SimulatedAmd
from gateway.trust.kms import TPM_WRAPPING_KEY_ID, ReleasedKey, WrappingKey
from gateway.trust.kms.akv import AkvBackend
from gateway.trust.kms.ccf import CcfBackend
from tests.support import swtpm
from tests.support.kms_world import (
    KEY_NAME,
    World,
    assert_decrypts,
    release,
    running_world,
    sevsnp_policy,
)

pytestmark = pytest.mark.skipif(swtpm.SWTPM is None, reason="swtpm is not installed")


@pytest.fixture(scope="module")
def world(simulated_amd: SimulatedAmd, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    state = Path(tmp_path_factory.mktemp("kms-vtpm"))
    with running_world(simulated_amd, ensure_tls(state), state) as world:
        world.vault.create_key(KEY_NAME, sevsnp_policy(world.urls["maa"]))
        world.kms.refresh()
        yield world


@pytest.fixture
def tpm_key(vtpm: swtpm.Swtpm) -> WrappingKey:
    config = AzureVtpmConfig(
        tcti=vtpm.tcti,
        event_log_path=Path("/nonexistent/binary_bios_measurements"),
        report_refresh_timeout_s=0.05,
        report_poll_interval_s=0.01,
    )
    provider = AzureVtpmProvider(config)
    evidence = provider.collect(swtpm.GOLDEN_USER_DATA, hashlib.sha256(b"kms nonce").digest())
    public_key = tpm_verify.parse_public(evidence.encryption_key_public).public_key
    assert isinstance(public_key, rsa.RSAPublicKey)
    return WrappingKey.from_tpm(public_key, provider.decrypt)


@pytest.fixture(autouse=True)
def _identity(world: World, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    world.workload_identity(monkeypatch, tmp_path)
    yield
    world.vault.faults.clear()


def _akv(world: World, token: str, key: WrappingKey, enc: str) -> list[ReleasedKey]:
    akv = AkvBackend(
        world.urls["vault"],
        KEY_NAME,
        key_id=9,
        enc=enc,
        ca_bundle=world.ca,
        trust_roots=[world.signer.root],
    )
    return release(akv, token, key)


@pytest.mark.parametrize("enc", ["RSA_AES_KEY_WRAP_256", "CKM_RSA_AES_KEY_WRAP"])
def test_key_vault_release_unwrapped_by_the_tpm(
    world: World, tpm_key: WrappingKey, enc: str
) -> None:
    assert tpm_key.kid == TPM_WRAPPING_KEY_ID
    (released,) = _akv(world, world.token(tpm_key), tpm_key, enc)
    assert_decrypts(released)


def test_sha384_wrap_cannot_be_unwrapped_by_a_tpm(world: World, tpm_key: WrappingKey) -> None:
    with pytest.raises(KeyUnwrapFailed, match="TPM"):
        _akv(world, world.token(tpm_key), tpm_key, "RSA_AES_KEY_WRAP_384")


def test_corrupted_wrapped_key_is_refused_by_the_tpm(world: World, tpm_key: WrappingKey) -> None:
    world.vault.faults.add("corrupt_wrapped_key")
    with pytest.raises(KeyUnwrapFailed):
        _akv(world, world.token(tpm_key), tpm_key, "RSA_AES_KEY_WRAP_256")


def test_confidential_kms_release_unwrapped_by_the_tpm(world: World, tpm_key: WrappingKey) -> None:
    token = world.token(tpm_key)
    ccf = CcfBackend(world.urls["kms"], world.ledger.service_cert)
    (released,) = release(ccf, token, tpm_key)
    assert released.key_id == world.kms.latest
    assert_decrypts(released)


def test_corrupted_rsa_ciphertext_is_refused_by_the_tpm(world: World, tpm_key: WrappingKey) -> None:
    world.kms.faults.add("corrupt_wrapped_key")  # the whole wrapped key is RSA-OAEP here
    token = world.token(tpm_key)
    ccf = CcfBackend(world.urls["kms"], world.ledger.service_cert)
    try:
        with pytest.raises(KeyUnwrapFailed):
            release(ccf, token, tpm_key)
    finally:
        world.kms.faults.clear()
