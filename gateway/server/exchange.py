"""The per-process services a request uses, the admission of an inner request, and the guard
that cancels upstream work when the client goes away.

:class:`Gateway` bundles what every handler needs (settings, keys, the upstream client, the
replay cache, the path policy, limits and the pace a request body must keep, metrics, the
key-agreement threads).
:meth:`Gateway.admit` applies the after-decapsulation policy to an inner request head, in a fixed
order: method, Expect, path, Date, replay. :func:`guarded` runs a request's remaining work while
watching the client: once the request body is consumed, ASGI ``receive()`` yields only
``http.disconnect``, and if that comes first the work (and with it the upstream request) is
cancelled.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from dataclasses import InitVar, dataclass, field
from typing import TypeVar

from starlette.types import Receive

from gateway.config import Settings
from gateway.errors import DateOutOfWindow, ReplayDetected
from gateway.protocol.bhttp import Limits
from gateway.server.forward import Upstream
from gateway.server.keysource import KeySource
from gateway.server.limits import BodyPace, ClientGone, ConcurrencyLimit
from gateway.server.metrics import GatewayMetrics
from gateway.server.offload import KeyAgreementPool
from gateway.server.policy import (
    Field,
    PathPolicy,
    check_expect,
    check_method,
    header_value,
)
from gateway.server.replay import EncMemory, ReplayCache, check_date

T = TypeVar("T")
# The plain profile buffers whole responses; transcripts are small, so this bounds memory only.
MAX_BUFFERED_RESPONSE = 32 * 1024 * 1024
# How long a request's work runs before a task starts watching for the client's disconnect.
WATCH_AFTER = 0.05


@dataclass
class Gateway:
    """Everything a request handler needs, created once per worker process."""

    settings: Settings
    keys: KeySource
    upstream: Upstream
    metrics: GatewayMetrics
    # None: a memory of this process's own; the supervisor passes the workers' shared one.
    shared_replay: InitVar[EncMemory | None] = None
    replay: EncMemory = field(init=False)
    paths: PathPolicy = field(init=False)
    limit: ConcurrencyLimit = field(init=False)
    body_pace: BodyPace = field(init=False)
    bhttp_limits: Limits = field(init=False)
    key_agreement: KeyAgreementPool = field(init=False)
    upstream_ok: bool = False

    def __post_init__(self, shared_replay: EncMemory | None) -> None:
        if shared_replay is None:
            shared_replay = ReplayCache(self.settings.replay_window, self.settings.replay_capacity)
        self.replay = shared_replay
        self.paths = PathPolicy(self.settings.allowed_paths)
        self.limit = ConcurrencyLimit(self.settings.max_concurrency)
        self.body_pace = BodyPace(
            self.settings.body_idle_timeout,
            self.settings.body_min_rate,
            self.settings.body_rate_grace,
        )
        child_failures = self.metrics.key_agreement_child_failures
        self.key_agreement = KeyAgreementPool(
            process=self.settings.key_agreement == "process",
            on_child_failure=lambda reason: child_failures.labels(reason).inc(),
        )
        self.bhttp_limits = Limits(
            max_field_section_size=self.settings.max_header_bytes,
            max_content_length=self.settings.max_body_bytes,
        )

    def admit(self, method: bytes, path: bytes, headers: tuple[Field, ...], enc: bytes) -> str:
        """The upstream target for an inner request head, or the refusal."""
        check_method(method)
        check_expect(headers)
        target = self.paths.target(path)
        try:
            check_date(header_value(headers, b"date"), self.settings.replay_window)
            self.replay.check_and_remember(enc)
        except (ReplayDetected, DateOutOfWindow):
            self.metrics.replays_refused.inc()
            raise
        return target


async def _until_disconnect(receive: Receive, body_done: asyncio.Event) -> None:
    await body_done.wait()
    while (await receive())["type"] != "http.disconnect":
        pass


async def guarded(work: Awaitable[T], receive: Receive, body_done: asyncio.Event) -> T:
    """``work``'s result, or ClientGone once the client disconnected (``work`` is cancelled).

    ``work`` runs in the calling task. The watcher, a task of its own, starts only once the work
    has run for :data:`WATCH_AFTER` seconds: most requests finish sooner, and a watcher task
    costs about 25 µs per request to create, run and cancel. A disconnect is thus noticed at
    least that late, which only matters for work that runs longer (transcription takes
    seconds). It cancels the calling task, and the CancelledError that reaches ``work``'s await
    point cancels the upstream request with it.
    """
    current = asyncio.current_task()
    gone = False
    watcher: asyncio.Future[None] | None = None

    async def watch() -> None:
        nonlocal gone
        await _until_disconnect(receive, body_done)
        gone = True
        if current is not None:
            current.cancel()

    def start_watching() -> None:
        nonlocal watcher
        watcher = asyncio.ensure_future(watch())

    timer = asyncio.get_running_loop().call_later(WATCH_AFTER, start_watching)
    try:
        result = await work
    except asyncio.CancelledError:
        if not gone:
            raise  # a real cancellation (shutdown): not ours to absorb
        if current is not None:
            current.uncancel()
        raise ClientGone from None
    finally:
        timer.cancel()
        if watcher is not None:
            watcher.cancel()
    if gone:  # the work swallowed the cancellation: the client is gone all the same
        if current is not None:
            current.uncancel()
        raise ClientGone
    return result
