"""Running the gateway: one process, or a supervisor with worker processes on one port.

:func:`serve` is what ``ohttp-gateway serve`` calls. With ``--workers 1`` the gateway runs in this
process. With more, the supervisor binds one listening socket per worker on the port
(SO_REUSEPORT, :func:`~gateway.server.sockets.bind_tcp_group`: the kernel spreads connections
evenly, where one shared socket let the first worker awake take a whole burst), starts the
workers (spawned, each with its own event loop, since the crypto holds the GIL), serves the
merge of their metrics (it asks each worker for its own at every scrape, over a socketpair:
gateway/server/metrics_relay.py), and forwards SIGTERM to them. In dev mode the supervisor fixes
one seed for all workers, so they serve the same key configs. It also creates the replay memory
the workers share (:class:`~gateway.server.replay_table.ReplayTable`), so a replay landing on
another worker is refused; the kernel frees it when the last of these processes ends, however it
ends.
Every worker runs its own key lifecycle, but only worker 0 (the only one with ``--workers 1``)
owns the Kubernetes notifier: the pod gets one event per milestone and one writer of its
annotations, not one per worker. In ``--kubernetes-events on`` mode the supervisor loads the
in-cluster configuration before it spawns anyone, so a missing one still stops the gateway.

On SIGTERM uvicorn stops accepting, lets every in-flight request finish (up to
``--drain-timeout``), runs the lifespan shutdown, and the process exits 0.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import secrets
import signal
import socket
from types import FrameType

import uvicorn
from prometheus_client import CollectorRegistry

from gateway.config import Settings
from gateway.server import logs
from gateway.server.keysource import KeySource
from gateway.server.metrics import GAUGE_MERGE, GatewayMetrics, serve_metrics
from gateway.server.metrics_relay import WorkerMetrics, answer_snapshots
from gateway.server.replay_table import ReplayTable
from gateway.server.sockets import LISTEN_BACKLOG, bind_tcp_group
from gateway.server.write_coalescing import CoalescingHttpToolsProtocol

_stop_requested = False
_server: uvicorn.Server | None = None


def _note_stop(signum: int, frame: FrameType | None) -> None:
    # uvicorn re-raises the signal it drained for once it is done; exit 0 instead of dying by it.
    # A SIGTERM that lands before uvicorn installs its own handlers would otherwise be lost and
    # the worker would serve on after the supervisor asked it to stop.
    global _stop_requested
    _stop_requested = True
    if _server is not None:
        _server.should_exit = True


def key_source(settings: Settings, seed: bytes | None) -> KeySource:
    """Dev keys, or an empty source that the trust lifecycle fills (until then: not ready)."""
    if settings.dev:
        return KeySource.for_dev(seed)
    return KeySource(dev=False)


def dev_seed(settings: Settings) -> bytes | None:
    if settings.dev_seed is not None:
        return settings.dev_seed.reveal().encode()
    return None


def uvicorn_config(settings: Settings, app: object) -> uvicorn.Config:
    return uvicorn.Config(
        app,  # type: ignore[arg-type]
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http=CoalescingHttpToolsProtocol,
        lifespan="on",
        log_config=None,
        access_log=False,
        server_header=False,
        proxy_headers=False,
        timeout_graceful_shutdown=int(settings.drain_timeout) or None,
        h11_max_incomplete_event_size=settings.max_header_bytes,
        backlog=LISTEN_BACKLOG,
    )


GC_YOUNG_THRESHOLD = 7000
"""Allocations between two collections of the youngest generation: 10x CPython's default."""


def settle_heap() -> None:
    """Hide what startup built (modules, the app, its metrics) from the cycle collector, and
    collect the youngest generation 10x less often.

    Why: with the defaults, a 1 KiB request load made about 200 collections a second; every
    tenth of the tenth walked the whole startup heap and paused the loop about 25 ms, and the
    collector took about 0.6 s of every 8 s of a worker's CPU. A/B in 4 interleaved rounds of
    bench.gateway_bench's 1 KiB X25519 run: p99 latency 39-47 ms → 18-21 ms, CPU per request
    -5%, requests per second x1.06 (median), peak RSS +1 MiB. Bodies (bytes, bytearray) form
    no cycles themselves; one outlives its request only if a garbage cycle refers to it, and
    then until the next young collection at most (the 25 MiB rows of bench.gateway_bench check
    the memory goals with this setting).
    """
    gc.collect()  # so that no garbage is frozen with the rest
    gc.freeze()
    _young, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, older, oldest)


def run_worker(
    settings: Settings,
    seed: bytes | None,
    sock: socket.socket | None,
    replay: ReplayTable | None = None,
    worker: int = 0,
    metrics_channel: socket.socket | None = None,
) -> None:
    """One gateway process: build the app and serve until SIGTERM has been drained.

    ``worker`` is the process's index under the supervisor: index 0 owns the Kubernetes
    notifier, the others emit nothing to Kubernetes (their milestones repeat worker 0's)."""
    signal.signal(signal.SIGTERM, _note_stop)
    from gateway.server.app import build_app  # the app's imports are paid for only when serving
    from gateway.server.attested import attested_lifecycle, dev_attestation

    logs.configure(settings.log_level)
    metrics = GatewayMetrics()
    metrics_server = None
    if sock is None and settings.metrics_port:
        metrics_server = serve_metrics(metrics.registry, settings.host, settings.metrics_port)
    if metrics_channel is not None:
        answer_snapshots(metrics.registry, metrics_channel)
    keys = key_source(settings, seed)
    notifier = None
    if worker == 0 and settings.pod_name and settings.kubernetes_events != "off":
        # Imported only in a pod: the official client takes about half a second to import.
        from gateway.server.k8s import kubernetes_notifier

        notifier = kubernetes_notifier(settings, metrics, os.environ)
        if notifier is not None and keys.dev:
            notifier.key_released(sorted(keys.key_ages()), "dev")
    lifecycle = (
        dev_attestation(settings, keys, metrics)
        if settings.dev
        else attested_lifecycle(settings, keys, metrics, notifier)
    )
    app = build_app(settings, keys, metrics, lifecycle, replay)
    global _server
    server = _server = uvicorn.Server(uvicorn_config(settings, app))
    server.should_exit = _stop_requested
    settle_heap()
    server.run(sockets=[sock] if sock is not None else None)
    if notifier is not None:
        notifier.close()
    if metrics_server is not None:
        metrics_server.shutdown()  # type: ignore[attr-defined]


def serve(settings: Settings) -> int:
    if settings.workers == 1:
        run_worker(settings, dev_seed(settings), None)
        return 0
    return _supervise(settings)


def _supervise(settings: Settings) -> int:
    logs.configure(settings.log_level)
    if settings.kubernetes_events == "on":
        # Only worker 0 would load it: a missing configuration must stop every worker, as with one.
        from gateway.server.k8s import in_cluster_api

        in_cluster_api(settings, os.environ)
    seed = dev_seed(settings) or (secrets.token_bytes(32) if settings.dev else None)
    replay = ReplayTable.create(settings.replay_window, settings.replay_capacity)
    sockets = bind_tcp_group(settings.host, settings.port, settings.workers)
    channels = [socket.socketpair() for _ in sockets]
    context = multiprocessing.get_context("spawn")
    workers = [
        context.Process(
            target=run_worker,
            args=(settings, seed, sock, replay, n, channels[n][1]),
            name=f"worker-{n}",
        )
        for n, sock in enumerate(sockets)
    ]
    for worker in workers:
        worker.start()
    replay.close()  # the workers hold it now
    for sock in sockets:
        sock.close()  # each worker holds its own: one that exits leaves the group
    for _ours, theirs in channels:
        theirs.close()
    worker_metrics = WorkerMetrics([ours for ours, _theirs in channels], GAUGE_MERGE)
    metrics_server = None
    if settings.metrics_port:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(worker_metrics)
        metrics_server = serve_metrics(registry, settings.host, settings.metrics_port)

    stopping = False

    def forward(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for worker in workers:
            if worker.pid is not None and worker.is_alive():
                os.kill(worker.pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    logs.log_event("supervisor_started", workers=len(workers))
    for worker in workers:
        worker.join()
    if metrics_server is not None:
        metrics_server.shutdown()  # type: ignore[attr-defined]
    worker_metrics.close()
    codes = [worker.exitcode for worker in workers]
    logs.log_event("supervisor_stopped", exit_codes=codes)
    # A worker ended by the SIGTERM we forwarded had not installed its handler yet, which it does
    # before it serves: it never held a request, so its end is clean too.
    clean = (0, -signal.SIGTERM) if stopping else (0,)
    return 0 if all(code in clean for code in codes) else 1
