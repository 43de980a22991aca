"""The akv backend end to end: azure-keyvault-keys' KeyClient.release_key with azure-identity's
WorkloadIdentityCredential, through the Entra emulator, against the Key Vault emulator, with a
real MAA token from the MAA emulator; all HTTPS on loopback. Then every refusal, each typed."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.emulators.keyvault_signing import ReleaseSigner
from gateway.emulators.release_policy import ReleasePolicy
from gateway.emulators.tls import EmulatorTls, ensure_tls
from gateway.errors import (
    KeyReleaseError,
    KeyReleaseRefused,
    KeyUnwrapFailed,
    ReleaseCertificateInvalid,
    ReleaseSignatureInvalid,
    VaultHostMismatch,
)
from gateway.trust.evidence.simulated import SimulatedAmd
from gateway.trust.kms import WrappingKey
from gateway.trust.kms.akv import AkvBackend
from gateway.trust.kms.skr import ENC_HASHES
from tests.support.kms_world import (
    KEY_NAME,
    MEASUREMENT,
    World,
    assert_decrypts,
    release,
    rsa_wrapping_key,
    running_world,
    sevsnp_policy,
)

TAG_9 = {"ohttp-key-id": "9"}


@pytest.fixture(scope="module")
def world(simulated_amd: SimulatedAmd, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    state = Path(tmp_path_factory.mktemp("kms-akv"))
    tls: EmulatorTls = ensure_tls(state)
    with running_world(simulated_amd, tls, state) as world:
        world.vault.create_key(KEY_NAME, sevsnp_policy(world.urls["maa"]))
        world.vault.create_key("ohttp-hpke-p256", sevsnp_policy(world.urls["maa"]), "P-256")
        yield world


@pytest.fixture
def wrapping_key() -> WrappingKey:
    return rsa_wrapping_key()


@pytest.fixture(autouse=True)
def _identity(world: World, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    world.workload_identity(monkeypatch, tmp_path)
    yield
    world.vault.faults.clear()
    for versions in world.vault.keys.values():
        for key in versions:
            key.policy = sevsnp_policy(world.urls["maa"])


def backend(
    world: World,
    *,
    enc: str = "RSA_AES_KEY_WRAP_256",
    key_name: str = KEY_NAME,
    key_id: int | None = 7,
    **kw: object,
) -> AkvBackend:
    options: dict[str, object] = {"trust_roots": [world.signer.root], "ca_bundle": world.ca}
    options.update(kw)
    return AkvBackend(world.urls["vault"], key_name, key_id=key_id, enc=enc, **options)  # type: ignore[arg-type]


@pytest.mark.parametrize("enc", sorted(ENC_HASHES))
def test_release_with_every_wrap_algorithm_yields_a_working_hpke_key(
    world: World, wrapping_key: WrappingKey, enc: str
) -> None:
    token = world.token(wrapping_key)
    issued_before = world.entra.tokens_issued
    (released,) = release(backend(world, enc=enc), token, wrapping_key)
    assert world.entra.tokens_issued == issued_before + 1  # through workload identity
    version = world.vault.keys[KEY_NAME][-1].version
    assert released.origin == f"{world.urls['vault']}/keys/{KEY_NAME}/{version}"
    assert released.key_id == 7
    assert released.private_key.private_numbers() == (
        world.vault.keys[KEY_NAME][-1].private_key.private_numbers()
    )
    assert "private" not in repr(released).lower().replace("private_key", "")
    assert_decrypts(released)


def test_p256_key_becomes_a_p256_hpke_key(world: World, wrapping_key: WrappingKey) -> None:
    (released,) = release(
        backend(world, key_name="ohttp-hpke-p256"), world.token(wrapping_key), wrapping_key
    )
    assert released.gateway_key().config.kem_id.name == "P256_SHA256"
    assert_decrypts(released)


def test_explicit_version_is_released(world: World, wrapping_key: WrappingKey) -> None:
    version = world.vault.keys[KEY_NAME][0].version
    (released,) = release(
        backend(world, key_version=version), world.token(wrapping_key), wrapping_key
    )
    assert released.origin.endswith(f"/{version}")


@pytest.mark.parametrize(
    ("tags", "expected"),
    [({"ohttp-key-id": "42"}, 42), ({"ohttp-key-id": "0", "team": "speech"}, 0), ({}, None)],
)
def test_key_id_comes_from_the_signed_tag_or_the_version(
    world: World, wrapping_key: WrappingKey, tags: dict[str, str], expected: int | None
) -> None:
    policy = sevsnp_policy(world.urls["maa"])
    version = world.vault.create_key("ohttp-tagged", policy, tags=tags)
    key = backend(world, key_name="ohttp-tagged", key_id=None)
    (released,) = release(key, world.token(wrapping_key), wrapping_key)
    assert released.origin.endswith(f"/{version}")
    if expected is None:
        expected = hashlib.sha256(version.encode()).digest()[0]
    assert released.key_id == released.gateway_key().config.key_id == expected
    assert_decrypts(released)


def test_fixed_key_id_wins_over_the_tag(world: World, wrapping_key: WrappingKey) -> None:
    world.vault.create_key("ohttp-fixed", sevsnp_policy(world.urls["maa"]), tags=TAG_9)
    key = backend(world, key_name="ohttp-fixed", key_id=200)
    (released,) = release(key, world.token(wrapping_key), wrapping_key)
    assert released.key_id == 200


def test_invalid_key_id_tag_is_a_typed_release_error(
    world: World, wrapping_key: WrappingKey
) -> None:
    tags = {"ohttp-key-id": "256"}
    world.vault.create_key("ohttp-bad-tag", sevsnp_policy(world.urls["maa"]), tags=tags)
    key = backend(world, key_name="ohttp-bad-tag", key_id=None)
    with pytest.raises(KeyReleaseError, match="ohttp-key-id tag is not an integer"):
        release(key, world.token(wrapping_key), wrapping_key)


def test_release_timing(
    world: World, wrapping_key: WrappingKey, capsys: pytest.CaptureFixture[str]
) -> None:
    started = time.perf_counter()
    token = world.token(wrapping_key)
    attested = time.perf_counter()
    (released,) = release(backend(world), token, wrapping_key)
    done = time.perf_counter()
    assert_decrypts(released)
    with capsys.disabled():
        print(
            f"\n[timing] akv: MAA token {1000 * (attested - started):.0f} ms, "
            f"Entra + Key Vault release + verify + unwrap {1000 * (done - attested):.0f} ms"
        )
    assert done - started < 10


def test_bad_jws_signature_is_refused(world: World, wrapping_key: WrappingKey) -> None:
    world.vault.faults.add("bad_signature")
    with pytest.raises(ReleaseSignatureInvalid):
        release(backend(world), world.token(wrapping_key), wrapping_key)


def test_certificate_naming_another_vault_is_refused(
    world: World, wrapping_key: WrappingKey
) -> None:
    original = world.vault.signer
    world.vault.signer = ReleaseSigner("attacker.vault.azure.net")
    try:
        with pytest.raises(VaultHostMismatch):
            release(
                backend(world, trust_roots=[world.vault.signer.root]),
                world.token(wrapping_key),
                wrapping_key,
            )
    finally:
        world.vault.signer = original


def test_certificate_from_an_untrusted_root_is_refused(
    world: World, wrapping_key: WrappingKey
) -> None:
    stranger = ReleaseSigner("127.0.0.1")
    with pytest.raises(ReleaseCertificateInvalid):
        release(
            backend(world, trust_roots=[stranger.root]), world.token(wrapping_key), wrapping_key
        )


def test_corrupted_wrapped_key_is_refused(world: World, wrapping_key: WrappingKey) -> None:
    world.vault.faults.add("corrupt_wrapped_key")
    with pytest.raises(KeyUnwrapFailed):
        release(backend(world), world.token(wrapping_key), wrapping_key)


def test_key_wrapped_to_another_key_does_not_unwrap(
    world: World, wrapping_key: WrappingKey
) -> None:
    thief = rsa_wrapping_key(kid=wrapping_key.kid)
    with pytest.raises(KeyUnwrapFailed):
        release(backend(world), world.token(wrapping_key), thief)


def _refusal(world: World, token: str, wrapping_key: WrappingKey) -> KeyReleaseRefused:
    with pytest.raises(KeyReleaseRefused) as caught:
        release(backend(world), token, wrapping_key)
    return caught.value


def test_policy_requiring_another_measurement_is_refused_with_the_vaults_reason(
    world: World, wrapping_key: WrappingKey
) -> None:
    other = {"claim": "x-ms-sevsnpvm-launchmeasurement", "equals": "ab" * 48}
    world.vault.set_release_policy(KEY_NAME, sevsnp_policy(world.urls["maa"], other))
    refusal = _refusal(world, world.token(wrapping_key), wrapping_key)
    assert refusal.code == "Forbidden"
    assert "claim x-ms-sevsnpvm-launchmeasurement fails equals" in refusal.detail
    # and the same policy with the right measurement releases
    right = {"claim": "x-ms-sevsnpvm-launchmeasurement", "equals": MEASUREMENT}
    world.vault.set_release_policy(KEY_NAME, sevsnp_policy(world.urls["maa"], right))
    assert release(backend(world), world.token(wrapping_key), wrapping_key)


def test_policy_forbidding_debug_refuses_a_debuggable_guest(
    world: World, wrapping_key: WrappingKey
) -> None:
    refusal = _refusal(world, world.token(wrapping_key, debug=True), wrapping_key)
    assert "claim x-ms-sevsnpvm-is-debuggable fails equals" in refusal.detail


def test_token_from_another_issuer_is_refused(world: World, wrapping_key: WrappingKey) -> None:
    refusal = _refusal(world, world.token(wrapping_key, maa="other_maa"), wrapping_key)
    assert "no policy authority matches the token issuer" in refusal.detail


def test_unknown_key_is_refused_with_key_not_found(world: World, wrapping_key: WrappingKey) -> None:
    with pytest.raises(KeyReleaseRefused) as caught:
        release(backend(world, key_name="missing"), world.token(wrapping_key), wrapping_key)
    assert caught.value.code == "KeyNotFound"


def test_identity_not_federated_fails_authentication(
    world: World, wrapping_key: WrappingKey, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    token_file = tmp_path / "other-token"
    token_file.write_text(world.federated.issue("system:serviceaccount:other:intruder"))
    monkeypatch.setenv("AZURE_FEDERATED_TOKEN_FILE", str(token_file))
    with pytest.raises(KeyReleaseError, match="authentication"):
        release(backend(world), world.token(wrapping_key), wrapping_key)


def test_policy_documents_parse(world: World) -> None:
    docs = Path(__file__).resolve().parents[2] / "docs" / "release-policies"
    for path in sorted(docs.glob("*.json")):
        assert ReleasePolicy.parse(path.read_bytes()).authorities, path.name


def test_default_azure_credential_when_so_configured(
    world: World, wrapping_key: WrappingKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    # DefaultAzureCredential's chain finds workload identity first in a pod; a managed identity
    # probe, were it reached, would go to a dead loopback port rather than to IMDS.
    monkeypatch.setenv("AZURE_POD_IDENTITY_AUTHORITY_HOST", "http://127.0.0.1:9")
    (released,) = release(
        backend(world, credential="default"), world.token(wrapping_key), wrapping_key
    )
    assert_decrypts(released)
