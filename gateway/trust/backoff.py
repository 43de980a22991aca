"""Jittered, capped exponential backoff for the key lifecycle's retries (pure but for the RNG).

Accepts a first delay, a cap and an optional ``random.Random``. Guarantees: the n-th consecutive
failure waits a uniform random time in ``[cap_n / 2, cap_n]`` where ``cap_n = min(cap, base *
2**(n-1))`` ("equal jitter": replicas that failed together spread out, yet a delay never collapses
to zero, so a dead service is not hammered); :meth:`reset` after a success starts over. Never:
sleeps itself, or grows past ``cap``.
"""

from __future__ import annotations

import random

from gateway.errors import ConfigError


class Backoff:
    """Delays between attempts of one retried step; see the module docstring."""

    def __init__(self, base: float, cap: float, rng: random.Random | None = None) -> None:
        if not 0 < base <= cap:
            raise ConfigError("backoff needs 0 < first delay <= cap")
        self.base, self.cap = base, cap
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not a secret
        self.failures = 0

    def next_delay(self) -> float:
        """Count one more failure and return how long to wait before the next attempt."""
        self.failures += 1
        ceiling = min(self.cap, self.base * 2 ** min(self.failures - 1, 62))
        return self._rng.uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        self.failures = 0
