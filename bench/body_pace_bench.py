"""What the request body deadline costs per request: ``read_body`` with and without its timer.

The gateway reads every outer body through ``gateway.server.limits.body_chunks``, which runs each
ASGI ``receive()`` under one ``asyncio.timeout_at`` (a timer armed and disarmed, no extra task).
At 1 KiB a plain request's body has arrived with its head, so ``receive()`` returns at once: the
timer is armed and cancelled without firing, once per request. This measures exactly that, on
uvloop (what ``serve`` runs), interleaved so that machine load hits every case alike:

* ``read_body``: the production function, 1 KiB body in one message, with the default pace
  (idle 30 s, min rate 100 B/s) and with the rate off (idle gap only);
* ``bare receive`` vs ``receive under timeout_at``: the one construct the deadline added, alone,
  on the same receive (the floor of what any per-receive deadline costs in asyncio).

* with ``--against-ref REF``: ``read_body`` as it was at git revision REF (e.g. ``975d559``, the
  last one without a deadline), loaded from ``git show`` into its own module: the A/B.

Figures are medians of ``--rounds`` rounds of ``--batch`` calls each, in ns per call. Run:
``/work/venv/bin/python -m bench.body_pace_bench [--against-ref 975d559]`` (``--quick`` for a
smoke run).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import inspect
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import ModuleType

import uvloop
from starlette.types import Message

from gateway.server.limits import BodyPace, read_body

BODY = b"\x00" * 1024
MESSAGE: Message = {"type": "http.request", "body": BODY, "more_body": False}
DEFAULT = BodyPace(30.0, 100, 30.0)
IDLE_ONLY = BodyPace(30.0, 0, 30.0)


async def receive() -> Message:
    return MESSAGE


async def bare() -> None:
    await receive()


async def under_timer() -> None:
    async with asyncio.timeout_at(asyncio.get_running_loop().time() + 30):
        await receive()


async def read_default() -> None:
    await read_body(receive, 1 << 20, DEFAULT, len(BODY))


async def read_idle_only() -> None:
    await read_body(receive, 1 << 20, IDLE_ONLY, len(BODY))


CASES: dict[str, Callable[[], Awaitable[None]]] = {
    "bare receive": bare,
    "receive under timeout_at": under_timer,
    "read_body, default pace": read_default,
    "read_body, idle gap only": read_idle_only,
}


def limits_at(ref: str) -> ModuleType:
    """gateway/server/limits.py as it was at ``ref``, imported as a separate module."""
    source = subprocess.run(
        ["git", "show", f"{ref}:gateway/server/limits.py"],
        capture_output=True,
        check=True,
        cwd=Path(__file__).resolve().parents[1],
    ).stdout
    path = Path(tempfile.mkdtemp()) / "baseline_limits.py"
    path.write_bytes(source)
    spec = importlib.util.spec_from_file_location("baseline_limits", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def add_baseline(ref: str) -> None:
    old = limits_at(ref)
    takes_pace = "pace" in inspect.signature(old.read_body).parameters

    async def read_then() -> None:
        if takes_pace:
            await old.read_body(receive, 1 << 20, old.BodyPace(30.0, 100, 30.0), len(BODY))
        else:
            await old.read_body(receive, 1 << 20, len(BODY))

    CASES[f"read_body at {ref}"] = read_then


async def measure(rounds: int, batch: int) -> dict[str, float]:
    samples: dict[str, list[float]] = {name: [] for name in CASES}
    for _ in range(rounds):
        for name, case in CASES.items():
            started = time.perf_counter_ns()
            for _ in range(batch):
                await case()
            samples[name].append((time.perf_counter_ns() - started) / batch)
    return {name: statistics.median(values) for name, values in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--batch", type=int, default=20_000)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--against-ref", help="also time read_body as of this git revision")
    args = parser.parse_args()
    if args.against_ref:
        add_baseline(args.against_ref)
    rounds, batch = (3, 2000) if args.quick else (args.rounds, args.batch)
    uvloop.run(measure(1, 2000))  # warm up
    results = uvloop.run(measure(rounds, batch))
    for name, ns in results.items():
        print(f"{name:28s} {ns:8.0f} ns/call")
    added = results["receive under timeout_at"] - results["bare receive"]
    print(f"{'timer per receive':28s} {added:8.0f} ns")
    if args.against_ref:
        delta = results["read_body, default pace"] - results[f"read_body at {args.against_ref}"]
        print(f"{'read_body added per request':28s} {delta:8.0f} ns")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
