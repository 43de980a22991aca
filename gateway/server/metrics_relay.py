"""Worker metrics, gathered by the supervisor at scrape time (``--workers N``).

Each worker keeps its metrics in its own in-process registry, as a single gateway process does,
and answers snapshots of it over a socketpair the supervisor made for it
(:func:`answer_snapshots`, in a daemon thread). The supervisor's ``/metrics`` asks every worker
for one when it is scraped and serves their merge (:class:`WorkerMetrics`):

* counters and histograms are summed over the workers;
* each gauge merges as ``gateway.server.metrics.GAUGE_MERGE`` says: a sum (requests in flight), the
  largest (dev mode, active keys) or the smallest (ready, token expiry).

A scrape asks every worker at once and waits for them until one ``timeout`` has passed. A worker
that has ended, or has not answered by then, counts with its last snapshot's counters and
histograms, so that no merged counter ever goes down; its gauges are left out, since they
describe a process that is gone or stuck. A late worker is asked again at the next scrape (each
question is numbered, and a late answer to an earlier one is dropped); what an ended worker
counted after its last snapshot is lost with it.

Why not prometheus-client's multiprocess mode, used before: it writes every update through a
lock, a ``getpid`` system call and a memory-mapped file. One request's ten updates took 14 µs
against 5.5 µs in process (a microbenchmark of the same calls), and a two-worker gateway spent
0.45 ms of CPU per 1 KiB request against 0.42 ms with the in-process registries (interleaved
A/B, 4 rounds, bench/gateway_bench.py's load).

Wire: the supervisor sends a question's number (4 bytes); the worker answers with that number,
the length of its snapshot and the snapshot, JSON:
``[[name, type, help, [[sample, labels, value], ...]], ...]``, without ``_created`` samples (a
merged series has no one creation time).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import socket
import struct
import threading
import time
from collections.abc import Iterable, Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from gateway.server.logs import log_event

_QUESTION = struct.Struct(">I")  # a question's number
_ANSWER = struct.Struct(">II")  # the number it answers, the JSON's length
MERGES = ("sum", "max", "min")

Snapshot = list[tuple[str, str, str, list[tuple[str, dict[str, str], float]]]]


def snapshot(registry: CollectorRegistry) -> Snapshot:
    """Every family of ``registry`` with its samples, ``_created`` ones left out."""
    families: Snapshot = []
    for family in registry.collect():
        samples = [
            (sample.name, dict(sample.labels), float(sample.value))
            for sample in family.samples
            if not sample.name.endswith("_created")
        ]
        families.append((family.name, family.type, family.documentation, samples))
    return families


def answer_snapshots(registry: CollectorRegistry, channel: socket.socket) -> threading.Thread:
    """In a worker: answer questions on ``channel`` with snapshots of ``registry``, in a daemon
    thread that ends when the supervisor's end closes.

    Of the questions waiting, only the newest is answered: the older ones' scrapes have given up
    on this worker already, and answering each would keep a slow worker behind for good."""

    def serve() -> None:
        waiting = b""
        # OSError: the supervisor is gone, and with it anyone to answer.
        with channel, contextlib.suppress(OSError):
            while part := channel.recv(4096):
                waiting += part
                whole = len(waiting) - len(waiting) % _QUESTION.size
                if not whole:
                    continue
                (newest,) = _QUESTION.unpack_from(waiting, whole - _QUESTION.size)
                waiting = waiting[whole:]
                try:
                    body = json.dumps(snapshot(registry)).encode()
                except Exception:  # noqa: BLE001 - a bug of ours: keep answering the next ones
                    log_event("metrics_snapshot_failed", logging.ERROR, exc_info=True)
                    continue
                channel.sendall(_ANSWER.pack(newest, len(body)) + body)

    thread = threading.Thread(target=serve, name="metrics-relay", daemon=True)
    thread.start()
    return thread


class _Worker:
    """The supervisor's end of one worker's channel, what arrived of the next answer, and that
    worker's last snapshot."""

    def __init__(self, channel: socket.socket) -> None:
        self.channel = channel
        self.received = bytearray()
        self.last: Snapshot = []
        self.gone = False

    def ask(self, question: int) -> None:
        if not self.gone:
            try:
                # The timeout left by the last answer's wait applies: a worker so far behind
                # that its channel is full is late this time, not gone.
                self.channel.sendall(_QUESTION.pack(question))
            except TimeoutError:
                return
            except OSError:
                self._end()

    def answer(self, question: int, deadline: float) -> Snapshot | None:
        """The answer to ``question`` by ``deadline``; None if the worker has ended or is late.

        An answer to an earlier question, late for its own scrape, is read and dropped here: the
        numbers keep the channel in step however late a worker answers."""
        while not self.gone:
            if len(self.received) >= _ANSWER.size:
                number, length = _ANSWER.unpack_from(self.received)
                if len(self.received) >= _ANSWER.size + length:
                    body = bytes(self.received[_ANSWER.size : _ANSWER.size + length])
                    del self.received[: _ANSWER.size + length]
                    if number == question:
                        try:
                            self.last = json.loads(body)
                        except ValueError:
                            self._end()  # not our worker's JSON: nothing it says can be trusted
                            return None
                        return self.last
                    continue
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            try:
                self.channel.settimeout(left)
                part = self.channel.recv(1 << 16)
            except TimeoutError:
                return None
            except OSError:
                part = b""
            if not part:
                self._end()
            self.received += part
        return None

    def _end(self) -> None:
        self.gone = True
        self.channel.close()


class WorkerMetrics(Collector):
    """The merged metrics of the workers behind ``channels``, gathered on every collect."""

    def __init__(
        self, channels: Iterable[socket.socket], gauge_merge: dict[str, str], timeout: float = 2.0
    ) -> None:
        self._workers = [_Worker(channel) for channel in channels]
        self._gauge_merge = gauge_merge
        self._timeout = timeout
        self._lock = threading.Lock()  # scrapes may overlap: one at a time asks the workers
        self._questions = itertools.count(1)

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            question = next(self._questions) & 0xFFFFFFFF
            for worker in self._workers:  # every worker works on its answer at once
                worker.ask(question)
            deadline = time.monotonic() + self._timeout
            snapshots: list[tuple[Snapshot, bool]] = []
            for worker in self._workers:
                fresh = worker.answer(question, deadline)
                snapshots.append((fresh, True) if fresh is not None else (worker.last, False))
        yield from merge(snapshots, self._gauge_merge)

    def close(self) -> None:
        with self._lock:  # after a scrape still asking, never under it
            for worker in self._workers:
                worker.channel.close()


def merge(snapshots: Iterable[tuple[Snapshot, bool]], gauge_merge: dict[str, str]) -> list[Metric]:
    """One family per name from ``(snapshot, live)`` pairs: counters and histograms summed over
    all, gauges merged as ``gauge_merge`` says (default: sum) over the live ones only."""
    families: dict[str, Metric] = {}
    values: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]] = {}
    for one, live in snapshots:
        for name, kind, documentation, samples in one:
            if kind == "gauge" and not live:
                continue
            if name not in families:
                families[name] = Metric(name, documentation, kind)
                values[name] = {}
            how = gauge_merge.get(name, "sum") if kind == "gauge" else "sum"
            merged = values[name]
            for sample, labels, value in samples:
                key = (sample, tuple(sorted(labels.items())))
                if key not in merged:
                    merged[key] = value
                elif how == "max":
                    merged[key] = max(merged[key], value)
                elif how == "min":
                    merged[key] = min(merged[key], value)
                else:
                    merged[key] += value
    for name, family in families.items():
        for (sample, label_pairs), value in values[name].items():
            family.add_sample(sample, dict(label_pairs), value)
    return list(families.values())
