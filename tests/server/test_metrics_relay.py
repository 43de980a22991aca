"""The supervisor's merge of its workers' metrics (gateway/server/metrics_relay.py), with real
registries answering over real socketpairs: sums, gauge merges, a worker that ends or stalls, and
overlapping scrapes. The whole path under ``serve --workers 2`` is in test_workers.py."""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from gateway.server.keysource import AttestationState
from gateway.server.metrics import GAUGE_MERGE, GatewayMetrics
from gateway.server.metrics_relay import MERGES, WorkerMetrics, answer_snapshots


class Workers:
    """``count`` workers' registries, each answering on its own socketpair, and the supervisor's
    registry that merges them."""

    def __init__(self, count: int, timeout: float = 2.0) -> None:
        self.metrics = [GatewayMetrics() for _ in range(count)]
        pairs = [socket.socketpair() for _ in range(count)]
        self.theirs = [theirs for _ours, theirs in pairs]
        for metrics, channel in zip(self.metrics, self.theirs, strict=True):
            answer_snapshots(metrics.registry, channel)
        self.merged = WorkerMetrics([ours for ours, _theirs in pairs], GAUGE_MERGE, timeout)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self.merged)

    def scrape(self) -> str:
        return generate_latest(self.registry).decode()

    def values(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        return {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(self.scrape())
            for sample in family.samples
        }


@pytest.fixture
def two() -> Iterator[Workers]:
    workers = Workers(2)
    yield workers
    workers.merged.close()


def _serve_some(metrics: GatewayMetrics, requests: int, duration: float) -> None:
    for _ in range(requests):
        metrics.child(metrics.requests, "gateway", "ohttp", "ok").inc()
        metrics.child(metrics.request_duration, "gateway").observe(duration)


def test_counters_and_histograms_are_summed(two: Workers) -> None:
    _serve_some(two.metrics[0], 3, 0.002)
    _serve_some(two.metrics[1], 4, 0.2)
    two.metrics[1].replays_refused.inc(2)
    values = two.values()
    ok = (("outcome", "ok"), ("profile", "ohttp"), ("route", "gateway"))
    assert values[("ohttp_gateway_requests_total", ok)] == 7
    assert values[("ohttp_gateway_replays_refused_total", ())] == 2
    route = (("route", "gateway"),)
    assert values[("ohttp_gateway_request_duration_seconds_count", route)] == 7
    assert values[("ohttp_gateway_request_duration_seconds_sum", route)] == pytest.approx(0.806)
    bucket = "ohttp_gateway_request_duration_seconds_bucket"
    assert values[(bucket, (("le", "0.005"), *route))] == 3
    assert values[(bucket, (("le", "0.5"), *route))] == 7
    assert not any(name.endswith("_created") for name, _ in values)


def test_gauges_merge_as_the_table_says(two: Workers) -> None:
    first, second = two.metrics
    first.in_flight.inc(2)
    second.in_flight.inc(3)
    first.observe_keys({1: 10.0}, dev=True, state=AttestationState.DEV, token_expiry=None)
    second.observe_keys({1: 25.0, 2: 5.0}, dev=True, state=AttestationState.DEV)
    first.ready.set(1)
    second.ready.set(0)
    values = two.values()
    assert values[("ohttp_gateway_requests_in_flight", ())] == 5  # sum
    assert values[("ohttp_gateway_key_age_seconds", (("key_id", "1"),))] == 25  # max
    assert values[("ohttp_gateway_active_keys", (("key_id", "2"),))] == 1  # max
    assert values[("ohttp_gateway_ready", ())] == 0  # min: ready only when all are
    assert values[("ohttp_gateway_dev_mode", ())] == 1


def test_every_gauge_has_a_merge() -> None:
    families = GatewayMetrics().registry.collect()
    gauges = {family.name for family in families if family.type == "gauge"}
    assert gauges == set(GAUGE_MERGE)
    assert set(GAUGE_MERGE.values()) <= set(MERGES)


def test_the_merge_passes_promtool(two: Workers) -> None:
    for index, metrics in enumerate(two.metrics):
        _serve_some(metrics, 5, 0.01 * (index + 1))
        metrics.child(metrics.phase_duration, "decapsulate").observe(0.0002)
        metrics.observe_keys({7: 1.0}, dev=False, state=AttestationState.ATTESTED, token_expiry=9.0)
    promtool = shutil.which("promtool")
    assert promtool is not None
    checked = subprocess.run(
        [promtool, "check", "metrics"], input=two.scrape(), capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_each_scrape_asks_again(two: Workers) -> None:
    counter = ("ohttp_gateway_replays_refused_total", ())
    assert two.values()[counter] == 0
    two.metrics[0].replays_refused.inc()
    assert two.values()[counter] == 1


def test_an_ended_worker_keeps_its_counts_but_not_its_gauges(two: Workers) -> None:
    _serve_some(two.metrics[0], 3, 0.01)
    _serve_some(two.metrics[1], 4, 0.01)
    two.metrics[1].in_flight.inc(9)
    two.metrics[0].in_flight.inc(1)
    assert two.values()[("ohttp_gateway_requests_in_flight", ())] == 10
    two.theirs[1].shutdown(socket.SHUT_RDWR)  # the worker's end, as when its process is gone
    ok = (("outcome", "ok"), ("profile", "ohttp"), ("route", "gateway"))
    for _ in range(2):
        values = two.values()
        assert values[("ohttp_gateway_requests_total", ok)] == 7  # never goes down
        assert values[("ohttp_gateway_requests_in_flight", ())] == 1


def test_a_stalled_worker_costs_one_timeout_then_counts_with_its_last_snapshot() -> None:
    workers = Workers(2, timeout=0.3)
    try:
        _serve_some(workers.metrics[1], 4, 0.01)
        workers.values()
        ours, mute = socket.socketpair()  # a third party that never answers
        workers.merged._workers[1].channel.close()
        workers.merged._workers[1].channel = ours
        began = time.monotonic()
        values = workers.values()
        assert time.monotonic() - began < 2
        ok = (("outcome", "ok"), ("profile", "ohttp"), ("route", "gateway"))
        assert values[("ohttp_gateway_requests_total", ok)] == 4
        began = time.monotonic()
        workers.values()
        assert time.monotonic() - began < 0.25  # not asked again: a late answer would confuse
        mute.close()
    finally:
        workers.merged.close()


def test_overlapping_scrapes_each_get_a_whole_answer(two: Workers) -> None:
    _serve_some(two.metrics[0], 50, 0.01)
    _serve_some(two.metrics[1], 50, 0.01)
    ok = (("outcome", "ok"), ("profile", "ohttp"), ("route", "gateway"))
    seen: list[float] = []

    def scrape() -> None:
        for _ in range(20):
            seen.append(two.values()[("ohttp_gateway_requests_total", ok)])

    threads = [threading.Thread(target=scrape) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert seen == [100.0] * 80
