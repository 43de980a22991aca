"""The key lifecycle in process, against ``emulate``'s emulators (real HTTPS on loopback): what
it tells the server and the notifier, rotation with grace, and failing closed once the last
token has expired. The lifecycle's own clock is a test clock; MAA and the KMS run on real time."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import pytest

from gateway.config import Settings, load_settings
from gateway.emulators.release_policy import ReleasePolicy
from gateway.emulators.runner import Emulators
from gateway.emulators.server import BackgroundServers
from gateway.errors import GatewayError, TrustError
from gateway.protocol.keys import KeyRing
from gateway.trust.attestation_document import Attestation
from gateway.trust.attester import Attester
from gateway.trust.backoff import Backoff
from gateway.trust.components import CALL_RETRY, evidence_provider, kms_backend
from gateway.trust.lifecycle import KeyLifecycle, LifecycleTiming
from gateway.trust.maa import MaaClient
from tests.support.attested_process import make_emulators

T = TypeVar("T")


@pytest.fixture(scope="module")
def emulators(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulators]:
    emulators = make_emulators(Path(tmp_path_factory.mktemp("lifecycle")))
    with BackgroundServers(emulators.group):
        yield emulators


class Recorder:
    """Observer and notifier at once: every call, in order."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.ring: KeyRing | None = None
        self.attestation: Attestation | None = None

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]

    # observer
    def serving(self, ring: KeyRing, attestation: Attestation) -> None:
        self.ring, self.attestation = ring, attestation
        self.calls.append(("serving", list(ring.key_ids)))

    def not_serving(self, step: str, error: GatewayError | None) -> None:
        self.ring = self.attestation = None
        self.calls.append(("not_serving", step))

    def record(self, service: str, seconds: float, error: TrustError | None) -> None:
        self.calls.append(("record", (service, error.reason if error else None)))

    def rotated(self, added: Sequence[int], retired: Sequence[int]) -> None:
        self.calls.append(("rotated", (list(added), list(retired))))

    # notifier
    def attestation_succeeded(self, issuer: str, expires_at: int) -> None:
        self.calls.append(("attestation_succeeded", issuer))

    def attestation_failed(self, step: str, reason: str) -> None:
        self.calls.append(("attestation_failed", (step, reason)))

    def key_released(self, key_ids: Sequence[int], origin: str) -> None:
        self.calls.append(("key_released", list(key_ids)))

    def key_rotated(self, active: Sequence[int], retired: Sequence[int]) -> None:
        self.calls.append(("key_rotated", (list(active), list(retired))))

    def release_refused(self, code: str, detail: str) -> None:
        self.calls.append(("release_refused", (code, detail)))


class Clock:
    def __init__(self) -> None:
        import time

        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def _settings(emulators: Emulators) -> Settings:
    return load_settings(environ={**emulators.settings(), "OHTTP_GATEWAY_KMS_BACKEND": "ccf"})


def _lifecycle(
    emulators: Emulators, recorder: Recorder, clock: Clock, notifier: Any = None, **timing: float
) -> KeyLifecycle:
    settings = _settings(emulators)
    assert settings.maa_url is not None
    maa = MaaClient(settings.maa_url, ca_bundle=settings.ca_bundle, retry=CALL_RETRY)
    attester = Attester(evidence_provider(settings), maa, record=recorder.record)
    return KeyLifecycle(
        attester,
        kms_backend(settings),
        recorder,
        notifier=recorder if notifier is None else notifier,
        timing=LifecycleTiming(retry_base=0.01, retry_cap=0.02, **timing),
        clock=clock,
    )


def _run(lifecycle: KeyLifecycle, body: Callable[[], Awaitable[T]]) -> T:
    async def go() -> T:
        try:
            return await body()
        finally:
            await lifecycle.aclose()

    return asyncio.run(go())


async def _until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    for _ in range(int(timeout / 0.02)):
        if predicate():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not reached")


def test_a_cycle_serves_the_released_key_and_tells_the_notifier(emulators: Emulators) -> None:
    recorder = Recorder()
    lifecycle = _lifecycle(emulators, recorder, Clock())
    _run(lifecycle, lifecycle.cycle)
    kms = emulators.ccf_kms
    assert recorder.ring is not None
    assert list(recorder.ring.key_ids) == [kms.latest]
    assert recorder.attestation is not None
    assert recorder.attestation.key_configs == recorder.ring.encoded_configs
    names = recorder.names()
    assert names.count("attestation_succeeded") == 2  # one for the release, one binding the keys
    assert ("key_released", [kms.latest]) in recorder.calls
    assert names.index("key_released") > names.index("serving")
    services = {details[0] for name, details in recorder.calls if name == "record"}
    assert services == {"evidence", "maa", "kms"}


def test_rotation_keeps_the_old_key_through_grace_then_retires_it(emulators: Emulators) -> None:
    recorder, clock = Recorder(), Clock()
    lifecycle = _lifecycle(emulators, recorder, clock, grace_period=60)
    kms = emulators.ccf_kms

    async def body() -> None:
        await lifecycle.cycle()
        old = kms.latest
        new = kms.refresh()
        await lifecycle.cycle()
        assert recorder.ring is not None
        assert list(recorder.ring.key_ids) == [new, old]
        assert ("rotated", ([new], [])) in recorder.calls
        clock.now += 61
        await lifecycle.cycle()
        assert list(recorder.ring.key_ids) == [new]
        assert ("rotated", ([], [old])) in recorder.calls
        assert ("key_rotated", ([new], [old])) in recorder.calls
        assert recorder.attestation is not None
        assert recorder.attestation.key_configs == recorder.ring.encoded_configs

    _run(lifecycle, body)


def test_refusal_tells_the_notifier_the_kms_reason_and_stays_not_serving(
    emulators: Emulators,
) -> None:
    recorder = Recorder()
    lifecycle = _lifecycle(emulators, recorder, Clock())
    kms, fixed = emulators.ccf_kms, emulators.ccf_kms.policy
    kms.policy = ReleasePolicy.parse(
        {
            "version": "1.0.0",
            "anyOf": [
                {
                    "authority": emulators.maa_url,
                    "allOf": [{"claim": "x-ms-sevsnpvm-is-debuggable", "equals": "true"}],
                }
            ],
        }
    )

    async def body() -> None:
        task = asyncio.create_task(lifecycle.run())
        try:
            await _until(lambda: recorder.names().count("not_serving") >= 2)
        finally:
            kms.policy = fixed
        await _until(lambda: recorder.ring is not None)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    _run(lifecycle, body)
    refused = [details for name, details in recorder.calls if name == "release_refused"]
    assert refused[0][0] == "KeyReleasePolicyNotSatisfied"
    assert "is-debuggable" in refused[0][1]
    assert ("attestation_failed", ("release", "key_release_refused")) in recorder.calls
    assert ("record", ("kms", "key_release_refused")) in recorder.calls


def test_failed_refresh_keeps_serving_until_the_token_expires_then_fails_closed(
    emulators: Emulators,
) -> None:
    recorder, clock = Recorder(), Clock()
    lifecycle = _lifecycle(emulators, recorder, clock)

    async def body() -> None:
        await lifecycle.cycle()
        assert recorder.attestation is not None
        expires_at = recorder.attestation.expires_at
        emulators.maa.inject_faults(*[503] * 10_000)
        try:
            clock.now = expires_at - 60  # past the refresh point: re-attestation fails
            task = asyncio.create_task(lifecycle.run())
            await _until(lambda: recorder.names().count("attestation_failed") >= 2)
            assert "not_serving" not in recorder.names()  # released keys keep serving
            clock.now = expires_at + 1
            await _until(lambda: "not_serving" in recorder.names())
            assert recorder.ring is None
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        finally:
            emulators.maa.clear_faults()
        failed = [details for name, details in recorder.calls if name == "attestation_failed"]
        assert failed[0] == ("token", "attestation_service")

    _run(lifecycle, body)


def test_a_failing_notifier_never_stops_the_lifecycle(emulators: Emulators) -> None:
    class Broken:
        def __getattr__(self, name: str) -> Callable[..., None]:
            def fail(*args: object) -> None:
                raise RuntimeError("kubernetes unreachable")

            return fail

    recorder = Recorder()
    lifecycle = _lifecycle(emulators, recorder, Clock(), notifier=Broken())
    _run(lifecycle, lifecycle.cycle)
    assert recorder.ring is not None


def test_unknown_key_wakes_the_lifecycle_at_most_once_per_interval(emulators: Emulators) -> None:
    recorder, clock = Recorder(), Clock()
    lifecycle = _lifecycle(emulators, recorder, clock, unknown_key_interval=3600)

    async def body() -> None:
        task = asyncio.create_task(lifecycle.run())
        await _until(lambda: recorder.ring is not None)
        cycles = lifecycle.cycles
        lifecycle.unknown_key()
        await _until(lambda: lifecycle.cycles == cycles + 1)
        lifecycle.unknown_key()  # rate limited: no second cycle
        await asyncio.sleep(0.3)
        assert lifecycle.cycles == cycles + 1
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    _run(lifecycle, body)


@pytest.mark.parametrize("seed", range(5))
def test_backoff_is_jittered_exponential_and_capped(seed: int) -> None:
    import random

    backoff = Backoff(0.25, 4.0, random.Random(seed))
    delays = [backoff.next_delay() for _ in range(10)]
    for n, delay in enumerate(delays, start=1):
        ceiling = min(4.0, 0.25 * 2 ** (n - 1))
        assert ceiling / 2 <= delay <= ceiling
    backoff.reset()
    assert backoff.next_delay() <= 0.25


@pytest.mark.parametrize(
    "timing",
    [
        {"refresh_interval": 0},
        {"retry_cap": -1},
        {"grace_period": -1},
        {"token_refresh_fraction": 1.0},
    ],
)
def test_bad_timing_is_refused(timing: dict[str, float]) -> None:
    from gateway.errors import ConfigError

    with pytest.raises(ConfigError):
        LifecycleTiming(**timing)


def test_the_token_is_re_attested_at_half_life_and_the_document_follows(
    emulators: Emulators,
) -> None:
    recorder, clock = Recorder(), Clock()
    lifecycle = _lifecycle(emulators, recorder, clock)

    async def body() -> None:
        await lifecycle.cycle()
        first = recorder.attestation
        assert first is not None
        await lifecycle.cycle()  # fresh token: reused, nothing new published but the same
        assert recorder.attestation is first
        clock.now = first.issued_at + 0.6 * (first.expires_at - first.issued_at)
        await lifecycle.cycle()
        second = recorder.attestation
        assert second is not None
        assert second is not first
        assert second.nonce != first.nonce
        assert second.key_configs == first.key_configs  # same keys, bound again
        assert recorder.names().count("attestation_succeeded") == 3

    _run(lifecycle, body)
