"""Replay memory cost per request: the in-process ReplayCache against the shared ReplayTable.

Run: ``python -m bench.replay_bench`` (about 20 s). Both memories are driven side by side, in
alternating rounds, in steady state: each round remembers ``--ops`` new ``enc`` values (32 bytes,
like X25519's) at a request rate where as many values expire as arrive, with ``--live`` values
remembered (half the default capacity). Printed: nanoseconds per ``check_and_remember`` (best
and median round) for

* ``cache``: :class:`ReplayCache`, what ``--workers 1`` uses (and, before the shared table, every
  worker of ``--workers N``);
* ``table``: :class:`ReplayTable` in one process (the per-request cost of ``--workers N``);
* ``table, 2 processes``: two spawned processes driving one table at once (lock contention);
* ``flock pair``: the lock alone, the table's largest single cost.
"""

from __future__ import annotations

import argparse
import fcntl
import multiprocessing
import os
import statistics
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from gateway.server.replay import DEFAULT_MAX_ENTRIES, EncMemory, ReplayCache
from gateway.server.replay_table import ReplayTable

WINDOW = 60.0


class SteadyState:
    """Feeds a memory new values on a clock where ``live`` values stay remembered."""

    def __init__(self, memory: EncMemory, live: int) -> None:
        self.memory, self.step, self.now = memory, WINDOW / live, 0.0

    def run(self, count: int) -> float:
        """Nanoseconds per call over ``count`` new values."""
        values = [os.urandom(32) for _ in range(count)]
        check, step, now = self.memory.check_and_remember, self.step, self.now
        started = time.perf_counter()
        for value in values:
            now += step
            check(value, now)
        elapsed = time.perf_counter() - started
        self.now = now
        return elapsed / count * 1e9


def _rounds(run: Callable[[], float], rounds: int) -> list[float]:
    return [run() for _ in range(rounds)]


def _flock_pair(count: int) -> float:
    table = ReplayTable.create(WINDOW, 1024)
    fd = table._fd  # the bench measures the lock the table takes
    started = time.perf_counter()
    for _ in range(count):
        fcntl.flock(fd, fcntl.LOCK_EX)
        fcntl.flock(fd, fcntl.LOCK_UN)
    elapsed = time.perf_counter() - started
    table.close()
    return elapsed / count * 1e9


def _contender(
    table: ReplayTable, live: int, ops: int, rounds: int, start: Any, out: Connection
) -> None:
    driver = SteadyState(table, live)
    driver.now = time.monotonic()  # both processes share the table's clock
    driver.run(live)  # each fills its half up to the steady state
    start.wait()
    out.send(_rounds(lambda: driver.run(ops), rounds))


def contended(capacity: int, live: int, ops: int, rounds: int) -> list[float]:
    context = multiprocessing.get_context("spawn")
    table = ReplayTable.create(WINDOW, capacity)
    start = context.Barrier(2)
    pipes = [context.Pipe(duplex=False) for _ in range(2)]
    workers = [
        context.Process(target=_contender, args=(table, live // 2, ops, rounds, start, sender))
        for _, sender in pipes
    ]
    for worker in workers:
        worker.start()
    samples = [sample for receiver, _ in pipes for sample in receiver.recv()]
    for worker in workers:
        worker.join()
    table.close()
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--capacity", type=int, default=DEFAULT_MAX_ENTRIES)
    parser.add_argument("--live", type=int, default=DEFAULT_MAX_ENTRIES // 2)
    parser.add_argument("--ops", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()

    table = ReplayTable.create(WINDOW, args.capacity)
    drivers = {
        "cache": SteadyState(ReplayCache(WINDOW, args.capacity), args.live),
        "table": SteadyState(table, args.live),
    }
    for driver in drivers.values():  # fill up to the steady state first
        driver.run(args.live)
    results: dict[str, list[float]] = {name: [] for name in drivers}
    for _ in range(args.rounds):
        for name, driver in drivers.items():
            results[name].append(driver.run(args.ops))
    table.close()
    results["table, 2 processes"] = contended(args.capacity, args.live, args.ops, args.rounds)
    results["flock pair"] = _rounds(lambda: _flock_pair(args.ops), args.rounds)

    print(f"capacity {args.capacity}, {args.live} live, {args.ops} ops x {args.rounds} rounds")
    print(f"{'memory':22s} {'best ns':>8s} {'median ns':>10s}")
    for name, samples in results.items():
        print(f"{name:22s} {min(samples):8.0f} {statistics.median(samples):10.0f}")


if __name__ == "__main__":
    main()
