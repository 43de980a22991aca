"""What a Kubernetes notifier call costs the key lifecycle, per API server condition.

Runs the notifier (gateway/server/k8s.py) against kmock over HTTPS on loopback (healthy, 403,
answering after 5 s) and against a closed port, calls every milestone ``--rounds`` times, and
prints the call latency (median, p99, max) and how long the API round trip took when healthy.

    /work/venv/bin/python -m bench.k8s_notifier_bench --rounds 200
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from gateway.config import Settings
from gateway.emulators.tls import ensure_tls
from gateway.server.k8s import kubernetes_notifier
from gateway.server.metrics import GatewayMetrics
from tests.support.kube_api import KubeApi, eventually, write_token
from tests.support.upstream_double import free_port


async def _slow() -> int:
    await asyncio.sleep(5)
    return 200


def measure(condition: str, rounds: int, workdir: Path) -> None:
    tls = ensure_tls(workdir / "tls")
    api = KubeApi(tls, "ns", "gw-0", "uid-0").start()
    port = free_port() if condition == "closed port" else api.port
    if condition == "403":
        api.answer_all(403)
    elif condition == "slow (5 s)":
        api.answer_all(_slow)
    settings = Settings(
        pod_name="gw-0",
        pod_namespace="ns",
        kubernetes_token_file=write_token(workdir, "bench-token"),
        kubernetes_ca_file=tls.ca_path,
        dev=True,
    )
    environ = {"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": str(port)}
    metrics = GatewayMetrics()
    notifier = kubernetes_notifier(settings, metrics, environ)
    assert notifier is not None
    took = []
    started = time.perf_counter()
    for n in range(rounds):
        for method, args in (
            (notifier.attestation_succeeded, ("https://maa.example", 1_893_456_000)),
            (notifier.key_released, ([n], "kms")),
            (notifier.attestation_failed, ("token", "attestation_service_error")),
        ):
            begin = time.perf_counter()
            method(*args)  # type: ignore[operator]
            took.append(time.perf_counter() - begin)
    if condition == "healthy":
        eventually(lambda: not notifier._events, timeout=120)  # the queue drained
        time.sleep(0.5)  # the last call in flight
    drained = time.perf_counter() - started
    recorded = len(api.events()) if condition == "healthy" else 0
    dropped = metrics.registry.get_sample_value(
        "ohttp_gateway_kubernetes_errors_total", {"reason": "dropped"}
    )
    notifier.close()
    api.stop()
    took.sort()
    line = (
        f"{condition:12} calls={len(took):5d} median={statistics.median(took) * 1e6:7.1f} us "
        f"p99={took[int(len(took) * 0.99)] * 1e6:8.1f} us max={took[-1] * 1e3:6.2f} ms"
    )
    if condition == "healthy":
        line += f"  ({recorded} events recorded in {drained:.2f} s, {dropped or 0:.0f} dropped)"
    print(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args()
    for condition in ("healthy", "403", "closed port", "slow (5 s)"):
        with tempfile.TemporaryDirectory() as workdir:
            measure(condition, args.rounds, Path(workdir))


if __name__ == "__main__":
    main()
