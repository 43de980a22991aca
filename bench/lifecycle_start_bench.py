"""Time from ``ohttp-gateway serve`` process start to ready, against the local emulators.

Runs ``emulate``'s emulators in this process (HTTPS on loopback), then starts a real gateway
process (simulated provider, the confidential KMS or Key Vault) ``--runs`` times and reports
the time from spawn to the first ``/readyz`` 200, from spawn to ``/livez`` (the Python start-up
share of it), and the lifecycle's own share (the app's ``started`` log to ``keys_serving``). Usage::

    /work/venv/bin/python -m bench.lifecycle_start_bench [--runs 5] [--kms ccf|akv]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from gateway.emulators.server import BackgroundServers
from tests.support.attested_process import AttestedGateway, make_emulators
from tests.support.upstream_double import UpstreamDouble


def _lifecycle_seconds(logs: str) -> float:
    """From the app's ``started`` event to the first ``keys_serving`` (the lifecycle's share)."""
    events = [json.loads(line) for line in logs.splitlines() if line.startswith("{")]
    started = next(e["ts"] for e in events if e.get("event") == "started")
    serving = next(e["ts"] for e in events if e.get("event") == "keys_serving")
    return float(serving - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--kms", choices=("ccf", "akv"), default="ccf")
    args = parser.parse_args()
    state = Path(tempfile.mkdtemp(prefix="lifecycle-bench-"))
    emulators = make_emulators(state / "emulators")
    upstream = UpstreamDouble().start()
    ready, live, cycle = [], [], []
    with BackgroundServers(emulators.group):
        env = {**emulators.settings(), "OHTTP_GATEWAY_KMS_BACKEND": args.kms}
        for run in range(args.runs):
            gateway = AttestedGateway(env, upstream.url, state / f"gateway-{run}.log")
            gateway.start()
            live.append(time.monotonic() - gateway.started_at)
            ready.append(gateway.wait_ready())
            gateway.terminate()
            cycle.append(_lifecycle_seconds(gateway.logs()))
    upstream.stop()
    print(f"kms={args.kms} runs={args.runs} cpus={os.cpu_count()}")
    print(f"spawn -> /livez  median {statistics.median(live):.3f} s  max {max(live):.3f} s")
    print(f"spawn -> /readyz median {statistics.median(ready):.3f} s  max {max(ready):.3f} s")
    print(f"lifecycle (app started -> keys serving) median {statistics.median(cycle):.3f} s")


if __name__ == "__main__":
    main()
