"""Key agreement off the event loop, for the KEM where that pays.

A P-384 ECDH costs about 0.5 ms on this class of machine (OpenSSL through cryptography), and the
event loop serves nobody while it runs. cryptography releases the GIL during the exchange, so a
small thread pool lets the loop go on reading, forwarding and answering other requests, and lets a
second core do the arithmetic (bench/offload_bench.py shows both). X25519 and P-256 cost about
45 µs, roughly what a thread handoff costs the loop, so they stay inline; so does bulk AEAD work,
for which cryptography keeps the GIL (two threads opening 25 MiB each took longer than one thread
opening both).

:class:`KeyAgreementPool` decides per request, from the key id in the first byte of an
Encapsulated Request, and runs the sans-I/O decapsulation call either inline or in a thread.
The call is the same either way: the protocol core does not know which thread runs it.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from gateway.protocol.keys import KemId, KeyRing

T = TypeVar("T")
OFFLOADED_KEMS = frozenset({KemId.P384_SHA384})
MAX_THREADS = 4


def default_threads() -> int:
    """One thread per core this process may run on, at most MAX_THREADS."""
    return max(1, min(MAX_THREADS, len(os.sched_getaffinity(0))))


class KeyAgreementPool:
    """The threads that run expensive key agreements; ``close`` at shutdown."""

    def __init__(self, threads: int | None = None) -> None:
        self._executor = ThreadPoolExecutor(
            threads or default_threads(), thread_name_prefix="key-agreement"
        )

    @staticmethod
    def wanted(ring: KeyRing, first_byte: int | None) -> bool:
        """Whether a request whose key id is ``first_byte`` should be opened in a thread."""
        if first_byte is None:
            return False
        key = ring.find(first_byte)
        return key is not None and key.kem_id in OFFLOADED_KEMS

    async def run(self, offload: bool, call: Callable[..., T], *args: object) -> T:
        """``call(*args)``, in a pool thread when ``offload`` else right here."""
        if not offload:
            return call(*args)
        return await asyncio.get_running_loop().run_in_executor(self._executor, call, *args)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
