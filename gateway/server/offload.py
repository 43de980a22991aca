"""Key agreement off the event loop, for the KEM where that pays.

A P-384 ECDH costs about 0.4 ms on this class of machine (OpenSSL through cryptography), and the
event loop serves nobody while it runs. X25519 and P-256 cost about 45 µs, roughly what any
handoff costs the loop, so they stay inline in the decapsulation; so does bulk AEAD work.

The decapsulation runs in two phases for P-384 (``ohttp.agreement_input`` → DH elsewhere →
``ohttp.decapsulate_request(..., agreed)``): only the DH(skR, pkE) leaves the loop. Where it goes:

* the worker's key-agreement child process (:mod:`gateway.server.agreement_process`), by
  default: it has its own GIL. In ``python -m bench.gateway_bench``, one worker served 1.33x the
  P-384 requests per second with it than with threads (median of 5 interleaved rounds, 1.31x to
  1.41x), 0.66 of the plain proxy against 0.42 before the change;
* a small thread pool: cryptography releases the GIL during the exchange, but the thread's own
  Python and the loop still take turns on it. The pool serves while the child starts, whenever it
  is gone or its socket is full, and always with ``--key-agreement thread``.

:class:`KeyAgreementPool` decides per request, from the key id in the first byte of an
Encapsulated Request.

The threads take jobs from a queue and hand results back with ``call_soon_threadsafe``, rather
than through ``run_in_executor``: its chained concurrent and asyncio futures cost the event loop
30 to 80 µs more per request in an A/B of the two (a loop busy 450 µs per request, 32 in flight).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from gateway.protocol import ohttp
from gateway.protocol._hpke import Bytes
from gateway.protocol.keys import KemId, KeyRing
from gateway.protocol.ohttp import Agreement, AgreementInput
from gateway.server.agreement_process import AgreementProcess, AgreementProcessGone
from gateway.server.logs import log_event

T = TypeVar("T")
OFFLOADED_KEMS = frozenset({KemId.P384_SHA384})
MAX_THREADS = 4
RESPAWN_AFTER = 10.0
"""Seconds before a key-agreement child that ended is started again (threads serve meanwhile)."""

_Job = tuple[asyncio.AbstractEventLoop, "asyncio.Future[Any]", Callable[[], Any]]


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
        loop, future, call = job
        result: object = None
        error: BaseException | None = None
        try:
            result = call()
        except Exception as raised:  # noqa: BLE001 - handed to the awaiting request as it is
            error = raised
        # RuntimeError: the loop closed meanwhile (shutdown), and nobody waits for this result.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(_settle, future, result, error)
        del job, future, result, error  # a thread waiting for work keeps no request's body alive


class KeyAgreementPool:
    """Where expensive key agreements run: a child process, or threads; ``close`` at shutdown.

    The child (:mod:`gateway.server.agreement_process`) starts at the first expensive request and
    takes the agreements once it reports ready. Until then, and whenever it is gone, the threads
    compute them; a dead child is started again after :data:`RESPAWN_AFTER` seconds.
    """

    def __init__(
        self,
        threads: int | None = None,
        *,
        process: bool = True,
        on_child_failure: Callable[[str], None] | None = None,
    ) -> None:
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._threads = [
            threading.Thread(
                target=_serve, args=(self._jobs,), name=f"key-agreement-{n}", daemon=True
            )
            for n in range(threads or default_threads())
        ]
        for thread in self._threads:
            thread.start()
        self._use_process = process
        # Told "exited" or "start_failed" (the metrics count them; an alert watches the rate).
        self._on_child_failure = on_child_failure
        self._process: AgreementProcess | None = None
        self._spawn_at = 0.0

    @staticmethod
    def wanted(ring: KeyRing, first_byte: int | None) -> bool:
        """Whether a request whose key id is ``first_byte`` should agree away from the loop."""
        if first_byte is None:
            return False
        key = ring.find(first_byte)
        return key is not None and key.kem_id in OFFLOADED_KEMS

    async def agreement(self, ring: KeyRing, data: Bytes, label: bytes) -> Agreement | None:
        """The key agreement of the request that starts with ``data``, computed away from the
        loop; None when its KEM is cheap (the decapsulation then agrees inline) or ``data`` is
        too short. Header and key errors as ``ohttp.agreement_input`` raises them."""
        if not self.wanted(ring, data[0] if data else None):
            return None
        found = ohttp.agreement_input(ring, data, label)
        return None if found is None else await self.agree(found)

    async def agree(self, found: AgreementInput) -> Agreement:
        """``found.agree()``, in the child process when it is ready, else in a thread."""
        process = self._ready_process()
        if process is not None:
            with contextlib.suppress(AgreementProcessGone):
                return Agreement(found.enc, await process.agree(found.key, found.enc))
        return await self._in_thread(found.agree)

    async def start_process(self, timeout: float = 10.0) -> bool:
        """Start the child now and wait until it is ready (or ``timeout``): whether it is."""
        self._ready_process()
        deadline = time.monotonic() + timeout
        while (process := self._process) is not None and not process.ready:
            if not process.alive or time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.01)
        return process is not None

    @property
    def process_pid(self) -> int | None:
        """The child's pid while it is alive (tests and operators' debugging)."""
        process = self._process
        return process.pid if process is not None and process.alive else None

    def _ready_process(self) -> AgreementProcess | None:
        process = self._process
        if process is not None:
            if process.alive:
                return process if process.ready else None
            process.close()
            self._process = None
            self._spawn_at = time.monotonic() + RESPAWN_AFTER
            log_event("key_agreement_process_exited", logging.WARNING, code=process.exit_code)
            self._child_failed("exited")
        if not self._use_process or time.monotonic() < self._spawn_at:
            return None
        try:
            self._process = AgreementProcess(asyncio.get_running_loop())
        except OSError as error:
            self._spawn_at = time.monotonic() + RESPAWN_AFTER
            log_event("key_agreement_process_failed", logging.WARNING, error=type(error).__name__)
            self._child_failed("start_failed")
        return None

    def _child_failed(self, reason: str) -> None:
        if self._on_child_failure is not None:
            self._on_child_failure(reason)

    async def _in_thread(self, call: Callable[[], T]) -> T:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._jobs.put((loop, future, call))
        return await future

    def close(self) -> None:
        """Stop the child; let the threads finish the jobs they hold and end (they are daemons:
        never awaited)."""
        if self._process is not None:
            self._process.close()
            self._process = None
        for _ in self._threads:
            self._jobs.put(None)
