"""The gateway's Prometheus metrics (docs/metrics.md), behind one small object.

Names, types and labels are the contract in docs/metrics.md. Every label value is a closed set
chosen by our code (a route name, an error class's ``reason``, a status class), never text from a
request. Every process keeps its metrics in a private registry; one gateway process serves its own
with :func:`serve_metrics`, and a supervisor serves the merge of its workers'
(gateway/server/metrics_relay.py), each gauge merged as :data:`GAUGE_MERGE` says.
"""

from __future__ import annotations

from time import perf_counter
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from gateway.server.keysource import AttestationState

PHASE_BUCKETS = (0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 600)
TRUST_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
# How a supervisor merges each gauge over its workers (gateway/server/metrics_relay.py).
GAUGE_MERGE = {
    "ohttp_gateway_requests_in_flight": "sum",
    "ohttp_gateway_active_keys": "max",
    "ohttp_gateway_key_age_seconds": "max",
    "ohttp_gateway_dev_mode": "max",
    "ohttp_gateway_ready": "min",
    "ohttp_gateway_attestation_state": "max",
    "ohttp_gateway_attestation_token_expiry_timestamp_seconds": "min",
}


def status_class(status: int) -> str:
    return f"{min(max(status // 100, 1), 5)}xx"


class PhaseTimer:
    """A context manager observing its duration into one histogram child (a generator-based
    context manager costs about three times as much, three times per request)."""

    __slots__ = ("_histogram", "_started")

    def __init__(self, histogram: Any) -> None:
        self._histogram = histogram
        self._started = 0.0

    def __enter__(self) -> None:
        self._started = perf_counter()

    def __exit__(self, *exc_info: object) -> None:
        self._histogram.observe(perf_counter() - self._started)


class GatewayMetrics:
    """Every metric of docs/metrics.md, registered in ``registry``."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "ohttp_gateway_requests_total",
            "Requests served, by route, profile and outcome.",
            ["route", "profile", "outcome"],
            registry=r,
        )
        self.decapsulation_failures = Counter(
            "ohttp_gateway_decapsulation_failures_total",
            "Requests that failed before or during decapsulation, by reason.",
            ["reason"],
            registry=r,
        )
        self.upstream_responses = Counter(
            "ohttp_gateway_upstream_responses_total",
            "Answers or failures of the Whisper upstream, by status class.",
            ["status_class"],
            registry=r,
        )
        self.phase_duration = Histogram(
            "ohttp_gateway_phase_duration_seconds",
            "Time spent per phase of a request.",
            ["phase"],
            buckets=PHASE_BUCKETS,
            registry=r,
        )
        self.request_duration = Histogram(
            "ohttp_gateway_request_duration_seconds",
            "Whole-request latency, by route.",
            ["route"],
            buckets=PHASE_BUCKETS,
            registry=r,
        )
        self.in_flight = Gauge(
            "ohttp_gateway_requests_in_flight",
            "Requests being processed.",
            registry=r,
        )
        self.received_bytes = Counter(
            "ohttp_gateway_received_bytes_total",
            "Encapsulated bytes received, by route.",
            ["route"],
            registry=r,
        )
        self.sent_bytes = Counter(
            "ohttp_gateway_sent_bytes_total",
            "Encapsulated bytes sent, by route.",
            ["route"],
            registry=r,
        )
        self.replays_refused = Counter(
            "ohttp_gateway_replays_refused_total",
            "Requests refused as replays or outside the Date window.",
            registry=r,
        )
        self.active_keys = Gauge(
            "ohttp_gateway_active_keys",
            "1 for each key id the gateway can decrypt with.",
            ["key_id"],
            registry=r,
        )
        self.key_age = Gauge(
            "ohttp_gateway_key_age_seconds",
            "Seconds since the key was released or loaded.",
            ["key_id"],
            registry=r,
        )
        self.dev_mode = Gauge(
            "ohttp_gateway_dev_mode",
            "1 when running in dev mode: NOT confidential.",
            registry=r,
        )
        self.ready = Gauge(
            "ohttp_gateway_ready",
            "1 when an attested key is loaded and the upstream answers.",
            registry=r,
        )
        self.attestation_state = Gauge(
            "ohttp_gateway_attestation_state",
            "1 for the current attestation state.",
            ["state"],
            registry=r,
        )
        self.token_expiry = Gauge(
            "ohttp_gateway_attestation_token_expiry_timestamp_seconds",
            "Unix time the current MAA token expires.",
            registry=r,
        )
        self.trust_duration = Histogram(
            "ohttp_gateway_trust_request_duration_seconds",
            "Latency of requests to the trust services.",
            ["service"],
            buckets=TRUST_BUCKETS,
            registry=r,
        )
        self.trust_errors = Counter(
            "ohttp_gateway_trust_errors_total",
            "Failures of the trust services, by service and reason.",
            ["service", "reason"],
            registry=r,
        )
        self.key_rotations = Counter(
            "ohttp_gateway_key_rotations_total",
            "Key sets picked up after a rotation.",
            registry=r,
        )
        self.kubernetes_errors = Counter(
            "ohttp_gateway_kubernetes_errors_total",
            "Kubernetes API calls (events, annotations) that failed or were dropped, by reason.",
            ["reason"],
            registry=r,
        )
        self.key_agreement_child_failures = Counter(
            "ohttp_gateway_key_agreement_child_failures_total",
            "Key-agreement child processes that ended or could not start; threads served.",
            ["reason"],
            registry=r,
        )
        self._children: dict[tuple[object, tuple[str, ...]], Any] = {}
        self._key_ids: set[str] = set()

    def child(self, metric: Counter | Histogram, *labels: str) -> Any:
        """``metric.labels(*labels)``, cached: label values are closed sets, so the cache is
        bounded, and a request's hot path skips prometheus-client's lookup and lock."""
        key = (metric, labels)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*labels)
        return found

    def phase(self, name: str) -> PhaseTimer:
        """Time one phase (decapsulate, upstream, encapsulate) of a request."""
        return PhaseTimer(self.child(self.phase_duration, name))

    def observe_keys(
        self,
        ages: dict[int, float],
        dev: bool,
        state: AttestationState,
        token_expiry: float | None = None,
    ) -> None:
        """Refresh the key, dev-mode and attestation gauges from the key source."""
        self.token_expiry.set(token_expiry or 0)  # 0: no token (dev mode, or not attested yet)
        # Keys that left the ring drop to 0: the series stay, so a merge over workers keeps them.
        current = {str(key_id): age for key_id, age in ages.items()}
        for gone in self._key_ids - current.keys():
            self.active_keys.labels(gone).set(0)
            self.key_age.labels(gone).set(0)
        for key_id, age in current.items():
            self.active_keys.labels(key_id).set(1)
            self.key_age.labels(key_id).set(age)
        self._key_ids = set(current)
        self.dev_mode.set(1 if dev else 0)
        for candidate in AttestationState:
            self.attestation_state.labels(candidate.value).set(1 if candidate is state else 0)


def serve_metrics(registry: CollectorRegistry, host: str, port: int) -> object:
    """Serve ``/metrics`` on its own port in a daemon thread; returns the server (to shut down)."""
    server, _thread = start_http_server(port, addr=host, registry=registry)
    return server
