"""Shared timing helper for the micro-benchmarks in bench/."""

from __future__ import annotations

import time
from collections.abc import Callable


def timed_ms(runs: int, step: Callable[[], object]) -> list[float]:
    """Wall-clock milliseconds of ``runs`` sequential calls of ``step``."""
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        step()
        samples.append((time.perf_counter() - started) * 1000)
    return samples
