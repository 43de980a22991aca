"""The supervisor's merge of its workers' metrics (gateway/server/metrics_relay.py), with real
registries answering over real socketpairs: sums, gauge merges, a worker that ends or stalls, and
overlapping scrapes. The whole path under ``serve --workers 2`` is in test_workers.py."""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from gateway.server.keysource import AttestationState
from gateway.server.metrics import GAUGE_MERGE, GatewayMetrics
from gateway.server.metrics_relay import MERGES, WorkerMetrics, answer_snapshots, snapshot


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


def _late_worker(channel: socket.socket, metrics: GatewayMetrics, delays: list[float]) -> None:
    """A worker that takes ``delays[i]`` seconds to answer its i-th question (the wire of
    gateway/server/metrics_relay.py, spoken by hand)."""

    def serve() -> None:
        with channel:
            for delay in delays:
                question = channel.recv(4)
                if len(question) < 4:
                    return
                time.sleep(delay)
                body = json.dumps(snapshot(metrics.registry)).encode()
                channel.sendall(question + struct.pack(">I", len(body)) + body)

    threading.Thread(target=serve, daemon=True).start()


def test_late_workers_cost_one_timeout_and_their_late_answers_are_dropped() -> None:
    metrics = [GatewayMetrics(), GatewayMetrics()]
    pairs = [socket.socketpair() for _ in metrics]
    for (_ours, theirs), one in zip(pairs, metrics, strict=True):
        _late_worker(theirs, one, [0.0, 1.0, 0.0])
    merged = WorkerMetrics([ours for ours, _theirs in pairs], GAUGE_MERGE, timeout=0.4)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(merged)
    counter = "ohttp_gateway_replays_refused_total"

    def scrape() -> dict[str, float]:
        text = generate_latest(registry).decode()
        return {
            sample.name: sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if not sample.labels
        }

    try:
        for one in metrics:
            one.replays_refused.inc(1)
            one.in_flight.inc(1)
        first = scrape()
        assert first[counter] == 2
        assert first["ohttp_gateway_requests_in_flight"] == 2
        for one in metrics:
            one.replays_refused.inc(10)
        began = time.monotonic()
        late = scrape()  # both workers take 1 s: asked at once, waited for once
        assert time.monotonic() - began < 0.9
        assert late[counter] == 2  # their last counts: never lower
        assert "ohttp_gateway_requests_in_flight" not in late  # a stuck worker's gauges: left out
        time.sleep(1.0)  # the late answers (to the second question) arrive meanwhile
        for one in metrics:
            one.replays_refused.inc(100)
        fresh = scrape()
        assert fresh[counter] == 222  # the third question's answers, not the late ones
        assert fresh["ohttp_gateway_requests_in_flight"] == 2
    finally:
        merged.close()


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


def test_an_answer_cut_off_at_the_deadline_is_finished_and_dropped_next_time() -> None:
    metrics = GatewayMetrics()
    ours, theirs = socket.socketpair()

    def serve() -> None:  # the second answer arrives in two halves, the second one late
        with theirs:
            for index in range(3):
                question = theirs.recv(4)
                body = json.dumps(snapshot(metrics.registry)).encode()
                answer = question + struct.pack(">I", len(body)) + body
                if index == 1:
                    theirs.sendall(answer[: len(answer) // 2])
                    time.sleep(0.6)
                    answer = answer[len(answer) // 2 :]
                theirs.sendall(answer)

    threading.Thread(target=serve, daemon=True).start()
    merged = WorkerMetrics([ours], GAUGE_MERGE, timeout=0.3)
    counter = ("ohttp_gateway_replays_refused_total", ())
    try:
        metrics.replays_refused.inc(1)
        assert dict(_samples(merged))[counter] == 1
        metrics.replays_refused.inc(1)
        assert dict(_samples(merged))[counter] == 1  # cut off: the last answer's count
        time.sleep(0.5)
        metrics.replays_refused.inc(1)
        assert dict(_samples(merged))[counter] == 3  # the late half read and dropped, in step
    finally:
        merged.close()


def _samples(merged: WorkerMetrics) -> list[tuple[tuple[str, tuple[tuple[str, str], ...]], float]]:
    return [
        ((sample.name, tuple(sorted(sample.labels.items()))), sample.value)
        for family in merged.collect()
        for sample in family.samples
    ]


def test_a_worker_answers_only_the_newest_of_the_questions_waiting() -> None:
    ours, theirs = socket.socketpair()
    answer_snapshots(GatewayMetrics().registry, theirs)
    with ours:
        ours.sendall(struct.pack(">III", 1, 2, 3))  # three scrapes' questions, none answered yet
        ours.settimeout(5)
        number, length = struct.unpack(">II", ours.recv(8))
        assert number == 3
        received = 0
        while received < length:
            received += len(ours.recv(length - received))
        ours.settimeout(0.3)
        with pytest.raises(TimeoutError):
            ours.recv(1)  # no answers to 1 and 2


def test_a_snapshot_that_fails_is_logged_and_the_next_question_answered(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class BrokenOnce(Collector):
        def __init__(self) -> None:
            self.calls = 0

        def collect(self) -> Iterator[Metric]:
            self.calls += 1
            if self.calls == 1:
                raise RuntimeError("a bug of ours")
            yield GaugeMetricFamily("ohttp_gateway_ready", "ready", value=1)

    registry = CollectorRegistry(auto_describe=False)
    registry.register(BrokenOnce())
    ours, theirs = socket.socketpair()
    answer_snapshots(registry, theirs)
    merged = WorkerMetrics([ours], GAUGE_MERGE, timeout=0.5)
    try:
        assert _samples(merged) == []  # no answer this time
        assert dict(_samples(merged))[("ohttp_gateway_ready", ())] == 1
    finally:
        merged.close()
    assert any(record.msg == "metrics_snapshot_failed" for record in caplog.records)


def test_a_worker_whose_channel_is_full_is_late_not_gone() -> None:
    ours, theirs = socket.socketpair()
    merged = WorkerMetrics([ours], GAUGE_MERGE, timeout=0.2)
    try:
        ours.settimeout(0.05)
        with contextlib.suppress(TimeoutError):
            while True:  # questions nobody reads: the channel fills up
                ours.send(bytes(65536))
        assert _samples(merged) == []  # the question did not fit: late this time
        worker = merged._workers[0]
        assert not worker.gone
        theirs.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            while theirs.recv(1 << 20):  # the worker catches up with what filled the channel
                pass
        theirs.setblocking(True)
        answer_snapshots(GatewayMetrics().registry, theirs)
        assert ("ohttp_gateway_ready", ()) in dict(_samples(merged))
    finally:
        merged.close()
