"""The key lifecycle: attest → release → bind → serve, then refresh, rotate, and fail closed.

Accepts an :class:`~gateway.trust.attester.Attester`, a KMS backend
(:class:`~gateway.trust.kms.KmsBackend`), a :class:`LifecycleObserver` (the server: key source,
attestation document, metrics) and a :class:`~gateway.trust.notifier.Notifier` (e.g. Kubernetes).
:meth:`KeyLifecycle.run` runs until cancelled.

The chicken and egg. The client-facing evidence must bind the served ``application/ohttp-keys``,
but with KMS-released keys those bytes are known only after the release, and the release itself
needs a token. So one cycle is:

1. **evidence, token** (attestation A): evidence binding the configs served so far (nothing at
   start: empty bytes) and a nonce, and its MAA token. The evidence also names the wrapping key
   (our fresh RSA key, or the vTPM's ephemeral key): the KMS wraps to it.
2. **release**: the KMS releases the current key(s) under A's token, wrapped to A's key.
3. **keys**: the next key ring: the released keys first (clients take the first config), then
   superseded keys still inside their grace period.
4. **bind** (attestation B): if the ring's encoded configs differ from what A bound, attest again
   binding exactly those bytes. B is the client-facing attestation, and the one the next release
   uses while its token is fresh.
5. **serve**: the observer installs the ring and the document built from B in one step, so
   ``GET /.well-known/ohttp-gateway`` and the attestation document always agree, and the ring
   holds exactly the keys listed.

Binding the KMS's published configs before the release (ccf ``listpubkeys``) would save step 4
only on that backend, and would still need it whenever a grace key leaves the ring; one cycle for
every backend is simpler to reason about, and costs one extra attestation (milliseconds, except
on a vTPM) only when the served set changes.

After the first success the lifecycle repeats the cycle every ``refresh_interval`` (new key ids
appear, superseded ones age out), when a request names an unknown key id (rate limited to one per
``unknown_key_interval``), when a grace period ends, and re-attests once the token has used
``token_refresh_fraction`` of its lifetime, so the document is refreshed well before it expires.

Failures: every :class:`~gateway.errors.TrustError` is logged with the step that is waiting and
why (the error's reason, and a KMS's own code and stated reason for a refusal), counted, told to
the notifier, and retried after a jittered, capped exponential backoff; nothing escapes
:meth:`run`, so an Azure outage never crash-loops the process. Before the first success the
gateway is not ready. After it, a failed refresh keeps the released keys serving, until the last
attestation's token expires: then the keys are dropped (fail closed) until a cycle succeeds again.

Never: uses a key that was not released under a verified token (dev keys bypass this class
entirely); logs tokens, evidence or key material; keeps private keys after :meth:`run` ends
(they are dropped, with the ring, on cancellation).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from gateway.errors import ConfigError, GatewayError, KeyReleaseRefused, TrustError
from gateway.protocol.keys import GatewayKey, KeyRing
from gateway.trust.attestation_document import Attestation
from gateway.trust.attester import Attester
from gateway.trust.backoff import Backoff
from gateway.trust.kms import KmsBackend, ReleasedKey
from gateway.trust.notifier import Notifier, safely

logger = logging.getLogger("gateway.trust.lifecycle")


class LifecycleObserver(Protocol):
    """What the server does with the lifecycle's results (see gateway/server/attested.py)."""

    def serving(self, ring: KeyRing, attestation: Attestation) -> None:
        """Serve ``ring`` and the document of ``attestation`` from now on, together."""

    def not_serving(self, step: str, error: GatewayError | None) -> None:
        """No released key may be used (not yet, or no longer): answer 503, /readyz fails."""

    def record(self, service: str, seconds: float, error: TrustError | None) -> None:
        """One call to a trust service (``evidence``, ``imds``, ``maa``, ``kms``) finished."""

    def rotated(self, added: Sequence[int], retired: Sequence[int]) -> None:
        """The served key set changed after the first one."""


@dataclass(frozen=True)
class LifecycleTiming:
    """Intervals of the lifecycle, in seconds."""

    refresh_interval: float = 300.0
    grace_period: float = 3600.0
    unknown_key_interval: float = 5.0
    retry_base: float = 0.25
    retry_cap: float = 60.0
    token_refresh_fraction: float = 0.5

    def __post_init__(self) -> None:
        if min(self.refresh_interval, self.retry_base, self.retry_cap) <= 0:
            raise ConfigError("lifecycle intervals must be positive")
        if self.grace_period < 0 or self.unknown_key_interval < 0:
            raise ConfigError("lifecycle grace and rate limit must not be negative")
        if not 0 < self.token_refresh_fraction < 1:
            raise ConfigError("token refresh fraction must be between 0 and 1")


@dataclass
class _Served:
    key: GatewayKey
    superseded_at: float | None = None


class KeyLifecycle:
    """Drives one gateway process's keys; see the module docstring."""

    def __init__(
        self,
        attester: Attester,
        kms: KmsBackend,
        observer: LifecycleObserver,
        *,
        notifier: Notifier | None = None,
        timing: LifecycleTiming | None = None,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self.attester, self.kms, self.observer = attester, kms, observer
        self.notifier = safely(notifier)
        self.timing = timing or LifecycleTiming()
        self._clock = clock
        self._backoff = Backoff(self.timing.retry_base, self.timing.retry_cap, rng)
        self._attestation: Attestation | None = None
        self._served: dict[int, _Served] = {}
        self._candidate: dict[int, _Served] = {}
        self._served_configs = b""
        self._serving = False
        self._wake = asyncio.Event()
        self._last_unknown_key = float("-inf")
        self.step = "evidence"
        self.cycles = 0

    # --- the loop ----------------------------------------------------------------------------

    async def run(self) -> None:
        """Cycle until cancelled; never raises anything else."""
        try:
            while True:
                try:
                    await self.cycle()
                except GatewayError as error:
                    delay = self._backoff.next_delay()
                    self._failed(error, delay)
                except Exception:  # a defect of ours must not stop the lifecycle
                    logger.error("lifecycle_bug", exc_info=True, extra={"event": "lifecycle_bug"})
                    delay = self._backoff.next_delay()
                    self._failed(TrustError("the key lifecycle failed unexpectedly"), delay)
                else:
                    self._backoff.reset()
                    delay = self._next_wake()
                await self._sleep(delay)
        finally:
            self._drop()

    async def aclose(self) -> None:
        await self.attester.aclose()
        await self.kms.aclose()

    def unknown_key(self) -> None:
        """A request named a key id we do not serve: refresh soon (rate limited)."""
        now = time.monotonic()
        if now - self._last_unknown_key >= self.timing.unknown_key_interval:
            self._last_unknown_key = now
            self._wake.set()

    async def _sleep(self, delay: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=max(delay, 0.0))
        self._wake.clear()

    # --- one cycle ---------------------------------------------------------------------------

    async def cycle(self) -> None:
        """Steps 1-5 of the module docstring; raises the first step's TrustError."""
        now = self._clock()
        attestation = self._attestation
        if attestation is None or self._stale(attestation, now):
            attestation = await self._attest(self._served_configs)
        self._set_step("release")
        released = await self._release(attestation)
        self._set_step("keys")
        ring, added, retired = self._next_ring(released, self._clock())
        if ring.encoded_configs != attestation.key_configs:
            attestation = await self._attest(ring.encoded_configs)
        self._publish(ring, attestation, added, retired)

    def _stale(self, attestation: Attestation, now: float) -> bool:
        lifetime = max(attestation.expires_at - attestation.issued_at, 0)
        return now >= attestation.issued_at + lifetime * self.timing.token_refresh_fraction

    async def _attest(self, key_configs: bytes) -> Attestation:
        self._set_step("evidence")
        evidence, nonce = await self.attester.collect(key_configs)
        self._set_step("token")
        attestation = await self.attester.token_for(evidence, key_configs, nonce)
        self._attestation = attestation
        self.notifier.attestation_succeeded(attestation.token.issuer, attestation.expires_at)
        return attestation

    async def _release(self, attestation: Attestation) -> Sequence[ReleasedKey]:
        started = time.perf_counter()
        try:
            released = await self.kms.release(attestation.token.raw, attestation.wrapping_key)
        except TrustError as error:
            self.observer.record("kms", time.perf_counter() - started, error)
            raise
        self.observer.record("kms", time.perf_counter() - started, None)
        return released

    def _next_ring(
        self, released: Sequence[ReleasedKey], now: float
    ) -> tuple[KeyRing, list[int], list[int]]:
        """Released keys first, then superseded keys within grace; which ids came and went."""
        fresh: dict[int, _Served] = {}
        for item in released:
            old = self._served.get(item.key_id)
            key = item.gateway_key()
            if old is not None and old.key.config.encode() == key.config.encode():
                key = old.key  # same key: keep the object (and its load time)
            elif old is not None:
                logger.warning(
                    "key_id_reused",
                    extra={"event": "key_id_reused", "key_id": item.key_id},
                )
            fresh[item.key_id] = _Served(key)
        for key_id, entry in self._served.items():
            if key_id in fresh:
                continue
            since = entry.superseded_at if entry.superseded_at is not None else now
            if now - since < self.timing.grace_period:
                fresh[key_id] = _Served(entry.key, since)
        added = [k for k in fresh if k not in self._served]
        retired = [k for k in self._served if k not in fresh]
        self._candidate = fresh
        return KeyRing(entry.key for entry in fresh.values()), added, retired

    def _publish(
        self, ring: KeyRing, attestation: Attestation, added: list[int], retired: list[int]
    ) -> None:
        first = not self._serving
        self._served = self._candidate
        self._served_configs = ring.encoded_configs
        self._serving = True
        self.cycles += 1
        self.observer.serving(ring, attestation)
        self._set_step("ready")
        if added:
            self.notifier.key_released(added, "kms")
        if (added or retired) and not first:
            self.observer.rotated(added, retired)
            self.notifier.key_rotated(ring.key_ids, retired)
        if first or added or retired:
            logger.info(
                "keys_serving",
                extra={
                    "event": "keys_serving",
                    "key_ids": list(ring.key_ids),
                    "added": added,
                    "retired": retired,
                    "token_expires_at": attestation.expires_at,
                },
            )

    # --- failures and timing -------------------------------------------------------------------

    def _failed(self, error: GatewayError, retry_in: float) -> None:
        fields: dict[str, object] = {
            "event": "lifecycle_waiting",
            "step": self.step,
            "reason": error.reason,
            "error": error.message,
            "retry_in_s": round(retry_in, 3),
            "failures": self._backoff.failures,
            "serving": self._serving,
        }
        if isinstance(error, KeyReleaseRefused):
            fields |= {"kms_code": error.code, "kms_reason": error.detail}
            self.notifier.release_refused(error.code, error.detail)
        logger.warning("lifecycle_waiting", extra=fields)
        self.notifier.attestation_failed(self.step, error.reason)
        attestation = self._attestation
        expired = attestation is not None and self._clock() >= attestation.expires_at
        if not self._serving or expired:
            if expired:
                self._attestation = None
            self._drop_keys()
            self.observer.not_serving(self.step, error)

    def _next_wake(self) -> float:
        now = self._clock()
        deadlines = [now + self.timing.refresh_interval]
        attestation = self._attestation
        if attestation is not None:
            lifetime = max(attestation.expires_at - attestation.issued_at, 0)
            deadlines.append(attestation.issued_at + lifetime * self.timing.token_refresh_fraction)
        for entry in self._served.values():
            if entry.superseded_at is not None:
                deadlines.append(entry.superseded_at + self.timing.grace_period)
        return max(min(deadlines) - now, 0.0)

    def _set_step(self, step: str) -> None:
        if step != self.step:
            logger.info("lifecycle_step", extra={"event": "lifecycle_step", "step": step})
        self.step = step

    def _drop_keys(self) -> None:
        self._served = {}
        self._served_configs = b""
        self._serving = False

    def _drop(self) -> None:
        """Shutdown: forget every private key and the attestation (and its wrapping key)."""
        self._drop_keys()
        self._attestation = None
        self._candidate = {}
