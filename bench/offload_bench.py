"""Where a request's key agreement runs: the event loop, a thread, or the child process.

What it compares: N pre-encapsulated 1 KiB requests to one dev key, decapsulated with C at a time
in flight on one asyncio loop, with the key agreement (a) inline, as the gateway does for cheap
KEMs, (b) in a ``KeyAgreementPool`` thread and (c) in its child process
(gateway/server/agreement_process.py), which the gateway uses for P-384. For each it reports the
wall time per request and the CPU time the event-loop thread itself spent per request
(``time.thread_time``) and the wall time, which shows whether another core did the arithmetic.
X25519 is measured the same way as a control.

What it does not show: the GIL. The thread variant's loop CPU is the lower (a datagram each way
costs the loop more than a queue handoff), but the pool thread's Python takes the GIL from the loop
too, and under a server's load that, not the loop's own CPU, capped a P-384 worker. The end-to-end
comparison is ``bench.gateway_bench``'s "P-384 / P-384 (threads)" ratio.

How: the variants alternate (inline, thread, process, inline, ...) for R rounds in one run; medians.
Run: ``python -m bench.offload_bench [--requests N] [--concurrency C] [--rounds R]``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from gateway.protocol import ohttp
from gateway.protocol.keys import KemId, KeyRing
from gateway.server.keysource import dev_key_ring
from gateway.server.offload import KeyAgreementPool

VARIANTS = ("inline", "thread", "process")


async def open_one(ring: KeyRing, body: bytes, pool: KeyAgreementPool | None) -> None:
    agreed = None
    if pool is not None:
        found = ohttp.agreement_input(ring, body, ohttp.REQUEST_LABEL)
        assert found is not None
        agreed = await pool.agree(found)
    ohttp.decapsulate_request(ring, body, agreed)


async def open_all(
    ring: KeyRing, bodies: list[bytes], pool: KeyAgreementPool | None, concurrency: int
) -> None:
    queue = iter(bodies)

    async def lane() -> None:
        for body in queue:
            await open_one(ring, body, pool)
            await asyncio.sleep(0)  # let the other lanes in, as a server's loop would

    await asyncio.gather(*(lane() for _ in range(concurrency)))


async def measure(
    ring: KeyRing, bodies: list[bytes], variant: str, concurrency: int
) -> tuple[float, float]:
    """(wall µs per request, loop-thread CPU µs per request)."""
    pool = None
    if variant != "inline":
        pool = KeyAgreementPool(process=variant == "process")
        if variant == "process" and not await pool.start_process():
            raise SystemExit("the key-agreement process did not start")
    try:
        wall, cpu = time.perf_counter(), time.thread_time()
        await open_all(ring, bodies, pool, concurrency)
        count = len(bodies)
        return (
            (time.perf_counter() - wall) * 1e6 / count,
            (time.thread_time() - cpu) * 1e6 / count,
        )
    finally:
        if pool is not None:
            pool.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    ring = dev_key_ring(b"offload-bench-seed")
    print(f"{args.requests} requests of 1 KiB, {args.concurrency} in flight, {args.rounds} rounds")
    print(f"{'KEM':8} {'variant':8} {'wall µs/req':>12} {'loop-thread CPU µs/req':>23}")
    for config in ring.configs:
        bodies = [
            ohttp.encapsulate_request(config, config.suites[0], bytes(1024))[0]
            for _ in range(args.requests)
        ]
        samples: dict[str, list[tuple[float, float]]] = {name: [] for name in VARIANTS}
        for _ in range(args.rounds):
            for variant in VARIANTS:
                samples[variant].append(
                    asyncio.run(measure(ring, bodies, variant, args.concurrency))
                )
        medians = {}
        for variant, runs in samples.items():
            wall = statistics.median(run[0] for run in runs)
            cpu = statistics.median(run[1] for run in runs)
            medians[variant] = (wall, cpu)
            print(f"{config.kem_id.name[:8]:8} {variant:8} {wall:12.1f} {cpu:23.1f}")
        used = "the gateway uses the process" if config.kem_id is KemId.P384_SHA384 else "control"
        for variant in ("thread", "process"):
            print(
                f"{'':8} {variant}/inline: wall {medians[variant][0] / medians['inline'][0]:.2f}x,"
                f" loop-thread CPU {medians[variant][1] / medians['inline'][1]:.2f}x ({used})"
            )


if __name__ == "__main__":
    main()
