"""Where the key lifecycle meets the server: the released ring, the document, the metrics.

:class:`AttestedKeys` is the :class:`~gateway.trust.lifecycle.LifecycleObserver` of one worker:
it installs each ring the lifecycle publishes into the :class:`KeySource` together with the
attestation document of that ring (one synchronous step, so a ``GET`` of the keys and of the
document never disagree), drops both when the lifecycle says no key may be used, and keeps the
trust metrics of docs/metrics.md (attestation state, token expiry, trust-service latency and
errors by reason, rotations). :func:`attested_lifecycle` builds the configured lifecycle and
connects the app's unknown-key signal to it; :func:`dev_attestation` publishes dev mode's
document (simulated evidence for the dev keys, ``dev_mode: true``) when an MAA URL is set.
Never: sees or logs private keys or tokens beyond handing the ring and the (public) document
over.
"""

from __future__ import annotations

from collections.abc import Sequence

from gateway.config import Settings
from gateway.errors import GatewayError, TrustError
from gateway.protocol.keys import KeyRing
from gateway.server.keysource import AttestationState, KeySource
from gateway.server.metrics import GatewayMetrics
from gateway.trust.attestation_document import Attestation, encode_document
from gateway.trust.components import build_attester, build_lifecycle
from gateway.trust.dev_attestation import DevAttestation
from gateway.trust.lifecycle import KeyLifecycle
from gateway.trust.notifier import Notifier


class AttestedKeys:
    """The server side of the lifecycle; see the module docstring."""

    def __init__(self, keys: KeySource, metrics: GatewayMetrics) -> None:
        self.keys, self.metrics = keys, metrics

    def serving(self, ring: KeyRing, attestation: Attestation) -> None:
        document = encode_document(attestation, dev_mode=self.keys.dev)
        self.keys.install(ring, AttestationState.ATTESTED)
        self.keys.publish_attestation(document, attestation.expires_at)
        self._observe()

    def not_serving(self, step: str, error: GatewayError | None) -> None:
        self.keys.fail()
        self._observe()

    def record(self, service: str, seconds: float, error: TrustError | None) -> None:
        self.metrics.trust_duration.labels(service).observe(seconds)
        if error is not None:
            self.metrics.trust_errors.labels(service, error.reason).inc()

    def rotated(self, added: Sequence[int], retired: Sequence[int]) -> None:
        self.metrics.key_rotations.inc()

    def _observe(self) -> None:
        keys = self.keys
        self.metrics.observe_keys(keys.key_ages(), keys.dev, keys.state, keys.token_expiry)


def dev_attestation(
    settings: Settings, keys: KeySource, metrics: GatewayMetrics
) -> DevAttestation | None:
    """Dev mode with an MAA URL: the dev keys' document (simulated evidence, ``dev_mode``)."""
    ring = keys.key_ring
    if not settings.dev or settings.maa_url is None or ring is None:
        return None
    observer = AttestedKeys(keys, metrics)

    def publish(attestation: Attestation) -> None:
        document = encode_document(attestation, dev_mode=True)
        keys.publish_attestation(document, attestation.expires_at)

    attester = build_attester(settings, observer.record)
    configs = ring.encoded_configs
    return DevAttestation(
        attester, lambda: configs, publish, retry_cap=settings.trust_retry_max_delay
    )


def attested_lifecycle(
    settings: Settings,
    keys: KeySource,
    metrics: GatewayMetrics,
    notifier: Notifier | None = None,
) -> KeyLifecycle:
    """The configured lifecycle filling ``keys``; raises ConfigError on a bad setting."""
    lifecycle = build_lifecycle(settings, AttestedKeys(keys, metrics), notifier)
    keys.on_unknown_key = lifecycle.unknown_key
    return lifecycle
