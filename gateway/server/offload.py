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

The threads take jobs from a queue and hand results back with ``call_soon_threadsafe``, rather
than through ``run_in_executor``: its chained concurrent and asyncio futures cost the event loop
30 to 80 µs more per request in an A/B of the two (a loop busy 450 µs per request, 32 in flight),
and the loop, holding the GIL, is what bounds a P-384 worker (bench/offload_bench.py measures the
loop thread's share).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from gateway.protocol.keys import KemId, KeyRing

T = TypeVar("T")
OFFLOADED_KEMS = frozenset({KemId.P384_SHA384})
MAX_THREADS = 4

_Job = tuple[
    asyncio.AbstractEventLoop, "asyncio.Future[Any]", Callable[..., Any], tuple[object, ...]
]


def default_threads() -> int:
    """One thread per core this process may run on, at most MAX_THREADS."""
    return max(1, min(MAX_THREADS, len(os.sched_getaffinity(0))))


def _settle(future: asyncio.Future[Any], result: object, error: BaseException | None) -> None:
    if future.done():  # the request was cancelled meanwhile (its client went away)
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


def _serve(jobs: queue.SimpleQueue[_Job | None]) -> None:
    while (job := jobs.get()) is not None:
        loop, future, call, args = job
        result: object = None
        error: BaseException | None = None
        try:
            result = call(*args)
        except Exception as raised:  # noqa: BLE001 - handed to the awaiting request as it is
            error = raised
        # RuntimeError: the loop closed meanwhile (shutdown), and nobody waits for this result.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(_settle, future, result, error)
        del job, future, result, error  # a thread waiting for work keeps no request's body alive


class KeyAgreementPool:
    """The threads that run expensive key agreements; ``close`` at shutdown."""

    def __init__(self, threads: int | None = None) -> None:
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._threads = [
            threading.Thread(
                target=_serve, args=(self._jobs,), name=f"key-agreement-{n}", daemon=True
            )
            for n in range(threads or default_threads())
        ]
        for thread in self._threads:
            thread.start()

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
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._jobs.put((loop, future, call, args))
        return await future

    def close(self) -> None:
        """Let the threads finish the jobs they hold and end (they are daemons: never awaited)."""
        for _ in self._threads:
            self._jobs.put(None)
