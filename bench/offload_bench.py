"""P-384 decapsulation on the event loop vs in the key-agreement pool (gateway/server/offload.py).

What it compares: N pre-encapsulated 1 KiB requests to the P-384 dev key, opened with C at a time
in flight on one asyncio loop, (a) inline, as every other KEM is, and (b) through
``KeyAgreementPool.run(True, ...)``. For each it reports the wall time per request and the CPU
time the event-loop thread itself spent per request (``time.thread_time``): the loop-thread time
is what caps a worker's request rate, the wall time shows whether a second core did the ECDH.
X25519 is measured the same way as a control (the pool is not used for it by the gateway).

How: the variants alternate (inline, pool, inline, pool, ...) for R rounds in one run; medians.
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


async def open_all(
    ring: KeyRing, bodies: list[bytes], pool: KeyAgreementPool, offload: bool, concurrency: int
) -> None:
    queue = iter(bodies)

    async def lane() -> None:
        for body in queue:
            await pool.run(offload, ohttp.decapsulate_request, ring, body)
            await asyncio.sleep(0)  # let the other lanes in, as a server's loop would

    await asyncio.gather(*(lane() for _ in range(concurrency)))


def measure(
    ring: KeyRing, bodies: list[bytes], pool: KeyAgreementPool, offload: bool, concurrency: int
) -> tuple[float, float]:
    """(wall µs per request, loop-thread CPU µs per request)."""
    wall, cpu = time.perf_counter(), time.thread_time()
    asyncio.run(open_all(ring, bodies, pool, offload, concurrency))
    count = len(bodies)
    return (
        (time.perf_counter() - wall) * 1e6 / count,
        (time.thread_time() - cpu) * 1e6 / count,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    ring = dev_key_ring(b"offload-bench-seed")
    pool = KeyAgreementPool()
    print(f"{args.requests} requests of 1 KiB, {args.concurrency} in flight, {args.rounds} rounds")
    print(f"{'KEM':8} {'variant':7} {'wall µs/req':>12} {'loop-thread CPU µs/req':>23}")
    try:
        for config in ring.configs:
            bodies = [
                ohttp.encapsulate_request(config, config.suites[0], bytes(1024))[0]
                for _ in range(args.requests)
            ]
            samples: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
            for _ in range(args.rounds):
                for offload in (False, True):
                    samples[offload].append(measure(ring, bodies, pool, offload, args.concurrency))
            medians = {}
            for offload, runs in samples.items():
                wall = statistics.median(run[0] for run in runs)
                cpu = statistics.median(run[1] for run in runs)
                medians[offload] = (wall, cpu)
                name = "pool" if offload else "inline"
                print(f"{config.kem_id.name[:8]:8} {name:7} {wall:12.1f} {cpu:23.1f}")
            used = "gateway uses the pool" if config.kem_id is KemId.P384_SHA384 else "control"
            print(
                f"{'':8} pool/inline: wall {medians[True][0] / medians[False][0]:.2f}x, "
                f"loop-thread CPU {medians[True][1] / medians[False][1]:.2f}x ({used})"
            )
    finally:
        pool.close()


if __name__ == "__main__":
    main()
