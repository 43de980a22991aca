"""The ccf backend end to end against the confidential-KMS emulator over HTTPS (TLS verified
against the pinned service certificate only), with real MAA tokens: listpubkeys and release
with receipts verified, 202 retries, rotation, and every refusal, each typed."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.emulators.tls import ensure_tls
from gateway.errors import (
    KeyReleaseError,
    KeyReleaseRefused,
    KeyUnwrapFailed,
    ReceiptSignatureInvalid,
    UnencryptedRelease,
)
from gateway.trust.evidence.simulated import SimulatedAmd
from gateway.trust.kms import WrappingKey
from gateway.trust.kms.ccf import CcfBackend
from gateway.trust.rest import RetryPolicy
from tests.support.kms_world import (
    MEASUREMENT,
    World,
    assert_decrypts,
    rsa_wrapping_key,
    run_backend,
    running_world,
    sevsnp_policy,
)


@pytest.fixture(scope="module")
def world(simulated_amd: SimulatedAmd, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    state = Path(tmp_path_factory.mktemp("kms-ccf"))
    with running_world(simulated_amd, ensure_tls(state), state) as world:
        world.kms.refresh()
        yield world


@pytest.fixture(autouse=True)
def _reset(world: World) -> Iterator[None]:
    yield
    world.kms.faults.clear()
    world.kms.pending_polls = 0
    world.kms.policy = sevsnp_policy(world.urls["maa"])
    world.kms.refresh()  # a committed key, nothing left pending


@pytest.fixture
def wrapping_key() -> WrappingKey:
    return rsa_wrapping_key(kid="TpmEphemeralEncryptionKey")


def backend(world: World, **options: object) -> CcfBackend:
    # No CA bundle: the service certificate alone must make TLS verify, as with the real KMS.
    quick = {
        "retry": RetryPolicy(attempts=2, base_delay=0.01, max_delay=0.05),
        "pending_delay": 0.01,
    }
    quick.update(options)
    return CcfBackend(world.urls["kms"], world.ledger.service_cert, **quick)  # type: ignore[arg-type]


def test_listpubkeys_verifies_the_receipt_of_the_latest_key(world: World) -> None:
    (published,) = run_backend(backend(world), lambda c: c.list_public_keys())
    latest = world.kms.keys[world.kms.latest or 0]
    assert published.key_id == latest.kid
    assert published.public_key_hex == latest.public_key_hex
    assert len(bytes.fromhex(published.public_key_hex)) == 106


def test_release_yields_a_working_hpke_key_bound_by_its_receipt(
    world: World, wrapping_key: WrappingKey, capsys: pytest.CaptureFixture[str]
) -> None:
    started = time.perf_counter()
    token = world.token(wrapping_key)
    attested = time.perf_counter()
    (released,) = run_backend(backend(world), lambda c: c.release(token, wrapping_key))
    done = time.perf_counter()
    latest = world.kms.keys[world.kms.latest or 0]
    assert released.key_id == latest.kid
    assert released.origin == f"ccf kid {latest.kid}"
    assert_decrypts(released, latest.public_key_hex)
    with capsys.disabled():
        print(
            f"\n[timing] ccf: MAA token {1000 * (attested - started):.0f} ms, "
            f"listpubkeys + release + receipts + unwrap {1000 * (done - attested):.0f} ms"
        )


def test_rotation_new_kid_is_released_and_old_kid_stays_releasable(
    world: World, wrapping_key: WrappingKey
) -> None:
    old = world.kms.latest or 0
    new = world.kms.refresh()
    token = world.token(wrapping_key)
    (current,) = run_backend(backend(world), lambda c: c.release(token, wrapping_key))
    assert current.key_id == new
    previous = run_backend(backend(world), lambda c: c.release_key(token, wrapping_key, old))
    assert previous.key_id == old
    assert_decrypts(previous, world.kms.keys[old].public_key_hex)


def test_pending_receipt_202_is_retried_then_served(
    world: World, wrapping_key: WrappingKey
) -> None:
    world.kms.refresh()
    world.kms.pending_polls = 2
    world.kms.refresh()
    token = world.token(wrapping_key)
    (released,) = run_backend(backend(world), lambda c: c.release(token, wrapping_key))
    assert released.key_id == world.kms.latest


def test_receipt_pending_forever_is_bounded(world: World, wrapping_key: WrappingKey) -> None:
    world.kms.pending_polls = 100
    world.kms.refresh()
    with pytest.raises(KeyReleaseError, match="pending"):
        run_backend(backend(world, pending_attempts=3), lambda c: c.list_public_keys())


def test_tampered_receipt_is_refused(world: World, wrapping_key: WrappingKey) -> None:
    world.kms.faults.add("tamper_receipt")
    with pytest.raises(ReceiptSignatureInvalid):
        run_backend(backend(world), lambda c: c.list_public_keys())
    token = world.token(wrapping_key)
    with pytest.raises(ReceiptSignatureInvalid):
        run_backend(
            backend(world), lambda c: c.release_key(token, wrapping_key, world.kms.latest or 0)
        )


def test_corrupted_wrapped_key_is_refused(world: World, wrapping_key: WrappingKey) -> None:
    world.kms.faults.add("corrupt_wrapped_key")
    token = world.token(wrapping_key)
    with pytest.raises(KeyUnwrapFailed):
        run_backend(backend(world), lambda c: c.release(token, wrapping_key))


def test_key_released_in_clear_is_refused(world: World, wrapping_key: WrappingKey) -> None:
    world.kms.faults.add("ignore_encrypted")
    token = world.token(wrapping_key)
    with pytest.raises(UnencryptedRelease):
        run_backend(backend(world), lambda c: c.release(token, wrapping_key))


def test_emulator_refuses_an_unencrypted_release_request(
    world: World, wrapping_key: WrappingKey
) -> None:
    token = world.token(wrapping_key)

    async def ask(ccf: CcfBackend) -> object:
        response = await ccf._rest.request(  # the client never sends this; prove the KMS refuses
            "POST",
            f"{ccf.url}/app/key?kid={world.kms.latest}&encrypted=false",
            headers={"Authorization": f"Bearer {token}"},
        )
        return response.status, response.json()

    status, body = run_backend(backend(world), ask)
    assert status == 400
    assert body["error"]["code"] == "EncryptionRequired"  # type: ignore[index]


def _refusal(world: World, token: str, wrapping_key: WrappingKey) -> KeyReleaseRefused:
    with pytest.raises(KeyReleaseRefused) as caught:
        run_backend(backend(world), lambda c: c.release(token, wrapping_key))
    return caught.value


def test_policy_requiring_another_measurement_is_refused_with_the_kms_reason(
    world: World, wrapping_key: WrappingKey
) -> None:
    world.kms.policy = sevsnp_policy(
        world.urls["maa"], {"claim": "x-ms-sevsnpvm-launchmeasurement", "equals": "ab" * 48}
    )
    refusal = _refusal(world, world.token(wrapping_key), wrapping_key)
    assert refusal.code == "KeyReleasePolicyNotSatisfied"
    assert "claim x-ms-sevsnpvm-launchmeasurement fails equals" in refusal.detail
    world.kms.policy = sevsnp_policy(
        world.urls["maa"], {"claim": "x-ms-sevsnpvm-launchmeasurement", "equals": MEASUREMENT}
    )
    token = world.token(wrapping_key)
    assert run_backend(backend(world), lambda c: c.release(token, wrapping_key))


def test_policy_forbidding_debug_refuses_a_debuggable_guest(
    world: World, wrapping_key: WrappingKey
) -> None:
    refusal = _refusal(world, world.token(wrapping_key, debug=True), wrapping_key)
    assert "claim x-ms-sevsnpvm-is-debuggable fails equals" in refusal.detail


def test_token_from_another_issuer_is_refused(world: World, wrapping_key: WrappingKey) -> None:
    refusal = _refusal(world, world.token(wrapping_key, maa="other_maa"), wrapping_key)
    assert refusal.code == "InvalidAuthenticationInfo"


def test_unknown_kid_is_refused(world: World, wrapping_key: WrappingKey) -> None:
    token = world.token(wrapping_key)
    with pytest.raises(KeyReleaseRefused) as caught:
        run_backend(backend(world), lambda c: c.release_key(token, wrapping_key, 250))
    assert caught.value.code == "KeyNotFound"


def test_tls_with_another_service_certificate_is_refused(world: World, tmp_path: Path) -> None:
    from gateway.emulators.ccf_ledger import Ledger

    stranger = Ledger(tmp_path / "stranger").service_cert
    ccf = CcfBackend(
        world.urls["kms"], stranger, retry=RetryPolicy(attempts=1, base_delay=0, max_delay=0)
    )
    with pytest.raises(KeyReleaseError, match="TLS"):
        run_backend(ccf, lambda c: c.list_public_keys())
