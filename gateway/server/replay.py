"""Replay protection (RFC 9458 §6.5): a bounded memory of ``enc`` values and a Date window.

An :class:`EncMemory` remembers each request's ``enc`` (a high-entropy per-request value) for
``window`` seconds and refuses a second sighting with :class:`ReplayDetected`. Its memory is
bounded and fixed: when it cannot hold one more unexpired value it refuses the request with
:class:`ReplayMemoryFull` (an :class:`Overloaded`, 503) rather than forgetting a value early,
which would re-open a replay (fail closed). Two implementations keep this contract:

* :class:`ReplayCache` here, for one process (``--workers 1``): an ordered dict, exactly
  ``max_entries`` values;
* :class:`gateway.server.replay_table.ReplayTable`, shared by all worker processes of one gateway
  (``--workers N``), so a replay landing on another worker is refused too.

:func:`check_date` refuses an inner ``Date`` more than ``window`` seconds from the gateway's clock.
A request without a Date is accepted: the enc memory still covers it.

Replicas (pods) do not share a memory: a replay sent to another replica is bounded only by the
Date window. Expiry uses ``time.monotonic`` (CLOCK_MONOTONIC, one clock for the whole host).
"""

from __future__ import annotations

import collections
import time
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime
from typing import Protocol

from gateway.errors import DateOutOfWindow, ReplayDetected, ReplayMemoryFull

DEFAULT_MAX_ENTRIES = 1 << 19


class EncMemory(Protocol):
    """The replay memory's contract, whatever holds it (see the module docstring)."""

    window: float

    def check_and_remember(self, enc: bytes, now: float | None = None) -> None:
        """Remember ``enc`` until ``now + window``; ReplayDetected if remembered and unexpired,
        ReplayMemoryFull if there is no room for it (nothing is forgotten early)."""
        ...


class ReplayCache:
    """Seen ``enc`` values with their expiry, oldest first; one process only."""

    def __init__(self, window: float, max_entries: int = DEFAULT_MAX_ENTRIES) -> None:
        self.window = window
        self.max_entries = max_entries
        self._expiry: collections.OrderedDict[bytes, float] = collections.OrderedDict()

    def __len__(self) -> int:
        return len(self._expiry)

    def check_and_remember(self, enc: bytes, now: float | None = None) -> None:
        """Remember ``enc``; raise ReplayDetected if it is already remembered."""
        now = time.monotonic() if now is None else now
        self._forget_expired(now)
        if enc in self._expiry:
            raise ReplayDetected
        if len(self._expiry) >= self.max_entries:
            raise ReplayMemoryFull("Replay memory full")
        self._expiry[enc] = now + self.window

    def _forget_expired(self, now: float) -> None:
        # Insertion order is expiry order: the window is constant and the clock monotonic.
        while self._expiry:
            enc, expiry = next(iter(self._expiry.items()))
            if expiry > now:
                return
            del self._expiry[enc]


def check_date(value: bytes | None, window: float, now: float | None = None) -> None:
    """Refuse an inner Date header outside ``now ± window``; None (no Date) passes."""
    if value is None:
        return
    now = time.time() if now is None else now
    try:
        stamp = parsedate_to_datetime(value.decode("ascii")).timestamp()
    except (ValueError, TypeError, UnicodeDecodeError, IndexError):
        raise DateOutOfWindow("Date not parseable") from None
    if abs(stamp - now) > window:
        raise DateOutOfWindow


def http_date(now: float | None = None) -> str:
    """The gateway's clock as an IMF-fixdate, sent with a date problem so clients can retry."""
    moment = datetime.fromtimestamp(time.time() if now is None else now, UTC)
    return format_datetime(moment, usegmt=True)
