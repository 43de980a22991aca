"""The ASGI application: routes, the outer checks of every gateway request, health and keys.

Routes (shared/DESIGN.md §3): ``GET /.well-known/ohttp-gateway`` (the key configs, RFC 9540);
``POST /.well-known/ohttp-gateway`` and ``POST /gateway`` (``message/ohttp-req`` or
``message/ohttp-chunked-req``); ``POST /score`` (the Azure profile);
``GET /.well-known/ohttp-gateway/attestation`` (the document the trust lifecycle publishes);
``/livez``; ``/readyz``.

Every gateway request passes, in order: the outer header size, the media type (415), the declared
length (413, before one body byte is read), readiness (503) and the concurrency limit (503); then
its profile handler. Whatever escapes a handler is by construction an error from before
decapsulation and is answered in the clear by :func:`clear_error`; an unexpected exception is a bug,
logged by type and location only and answered with a bare 500. Each request is logged once, as
JSON with its request id, and counted in the metrics.

The POST routes of the gateway resource reach their endpoint straight from :class:`GatewayApp`;
everything else (lifespan, health, keys, 404 and 405) goes through Starlette's router. The
endpoint answers every exception itself, so the router's middleware had nothing to add there but
about 2% of a 1 KiB request's CPU.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from time import perf_counter
from typing import Any, Protocol

from starlette.applications import Starlette
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.config import Settings
from gateway.errors import GatewayError, NotReady, UnknownKeyId, UnsupportedMediaType
from gateway.protocol.keys import KeyRing
from gateway.server import profiles
from gateway.server.answers import clear_error, outcome, send_response
from gateway.server.exchange import Gateway
from gateway.server.forward import Upstream
from gateway.server.keysource import KeySource
from gateway.server.limits import ClientGone, check_header_size, declared_length
from gateway.server.logs import log_event, new_request_id
from gateway.server.metrics import GatewayMetrics
from gateway.server.replay import EncMemory

Handler = Callable[[Gateway, KeyRing, Receive, Send, profiles.Result], Awaitable[None]]
PROFILES: dict[bytes, tuple[str, Handler]] = {
    b"message/ohttp-req": ("ohttp", profiles.plain),
    b"message/ohttp-chunked-req": ("chunked", profiles.chunked),
}
# Microsoft's client labels its plain RFC 9458 request message/ohttp-chunked-req: both are plain.
AZURE_PROFILES: dict[bytes, tuple[str, Handler]] = {
    b"message/ohttp-req": ("azure", profiles.azure),
    b"message/ohttp-chunked-req": ("azure", profiles.azure),
}
KEYS_CACHE_CONTROL = b"public, max-age=3600"
REFRESH_SECONDS = 5.0
PROBE_TIMEOUT = 2.0


class TrustTask(Protocol):
    """What fills the key source for the app's lifetime (gateway/trust/lifecycle.py)."""

    async def run(self) -> None: ...

    async def aclose(self) -> None: ...


def media_type(headers: list[tuple[bytes, bytes]]) -> bytes | None:
    value = next((v for n, v in headers if n == b"content-type"), None)
    return None if value is None else value.split(b";", 1)[0].strip().lower()


class GatewayEndpoint:
    """POST to the gateway resource (or /score): outer checks, then the profile's handler."""

    def __init__(self, gw: Gateway, route: str, table: dict[bytes, tuple[str, Handler]]) -> None:
        self.gw, self.route, self.table = gw, route, table

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        gw, started, result = self.gw, perf_counter(), profiles.Result()
        new_request_id()
        response_started = False

        async def tracked_send(message: Message) -> None:
            nonlocal response_started
            response_started = True
            await send(message)

        profile = "none"
        error: BaseException | None = None
        gw.metrics.in_flight.inc()
        try:
            headers = scope["headers"]
            check_header_size(headers, gw.settings.max_header_bytes)
            entry = self.table.get(media_type(headers) or b"")
            if entry is None:
                raise UnsupportedMediaType
            profile, handler = entry
            result.declared_length = declared_length(headers, gw.settings.max_body_bytes)
            ring = gw.keys.key_ring
            if ring is None:
                raise NotReady
            with gw.limit:
                await handler(gw, ring, receive, tracked_send, result)
            error = result.error
        except GatewayError as failure:
            error = failure
            gw.metrics.decapsulation_failures.labels(failure.reason).inc()
            if isinstance(failure, UnknownKeyId) and gw.keys.on_unknown_key is not None:
                gw.keys.on_unknown_key()  # a rotation elsewhere: refresh soon (rate limited)
            if not response_started:
                status, fields, body = clear_error(failure)
                await send_response(send, status, fields, body)
                result.sent += len(body)
        except ClientGone as gone:
            error = gone
        except Exception as bug:  # noqa: BLE001 - a defect of ours, answered without detail
            error = bug
            log_event("internal_error", logging.ERROR, exc_info=True)
            if not response_started:
                await send_response(send, 500, [(b"content-type", b"text/plain")], b"internal")
        finally:
            gw.metrics.in_flight.dec()
        self._record(profile, error, result, started)

    def _record(
        self, profile: str, error: BaseException | None, result: profiles.Result, started: float
    ) -> None:
        metrics, elapsed = self.gw.metrics, perf_counter() - started
        label = outcome(error, result.upstream_status)
        metrics.child(metrics.requests, self.route, profile, label).inc()
        metrics.child(metrics.request_duration, self.route).observe(elapsed)
        metrics.child(metrics.received_bytes, self.route).inc(result.received)
        metrics.child(metrics.sent_bytes, self.route).inc(result.sent)
        fields: dict[str, Any] = {
            "route": self.route,
            "profile": profile,
            "outcome": label,
            "duration_ms": round(elapsed * 1000, 3),
            "bytes_in": result.received,
            "bytes_out": result.sent,
        }
        if isinstance(error, GatewayError):
            fields["reason"] = error.reason
        elif isinstance(error, ClientGone):
            fields["reason"] = "client_disconnected"
        log_event("request", **fields)


class KeysEndpoint:
    """GET the active key configs as application/ohttp-keys (RFC 9540)."""

    def __init__(self, gw: Gateway) -> None:
        self.gw = gw

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        ring = self.gw.keys.key_ring
        if ring is None:
            status, fields, body = clear_error(NotReady())
            label = "not_ready"
        else:
            status, body, label = 200, ring.encoded_configs, "ok"
            fields = [(b"content-type", b"application/ohttp-keys")]
            fields.append((b"cache-control", KEYS_CACHE_CONTROL))
        self.gw.metrics.requests.labels("keys", "none", label).inc()
        await send_response(send, status, fields, body)


class AttestationEndpoint:
    """GET the attestation document the trust lifecycle published; 503 until there is one."""

    def __init__(self, gw: Gateway) -> None:
        self.gw = gw

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        document = self.gw.keys.attestation
        if document is None or self.gw.keys.key_ring is None:
            status, fields, body = clear_error(NotReady())
            label = "not_ready"
        else:
            status, body, label = 200, document, "ok"
            fields = [(b"content-type", b"application/json"), (b"cache-control", b"no-store")]
        self.gw.metrics.requests.labels("attestation", "none", label).inc()
        await send_response(send, status, fields, body)


class HealthEndpoint:
    """/livez answers while the event loop runs; /readyz when a key is loaded and the upstream
    answers. Both say whether the service is confidential."""

    def __init__(self, gw: Gateway, *, readiness: bool) -> None:
        self.gw, self.readiness = gw, readiness

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        gw = self.gw
        document: dict[str, object] = {"confidential": not gw.keys.dev}
        if gw.keys.dev:
            document["mode"] = "dev: NOT CONFIDENTIAL"
        status = 200
        if self.readiness:
            keys = gw.keys
            gw.metrics.observe_keys(keys.key_ages(), keys.dev, keys.state, keys.token_expiry)
            gw.upstream_ok = await gw.upstream.probe(PROBE_TIMEOUT)
            loaded = keys.key_ring is not None
            ready = loaded and gw.upstream_ok
            gw.metrics.ready.set(1 if ready else 0)
            document |= {"ready": ready, "keys_loaded": loaded, "upstream": gw.upstream_ok}
            document["attestation"] = gw.keys.state.value
            status = 200 if ready else 503
        else:
            document["status"] = "alive"
        body = json.dumps(document).encode()
        await send_response(send, status, [(b"content-type", b"application/json")], body)


class GatewayApp:
    """The ASGI app a worker serves: POST to a gateway route goes straight to its endpoint, the
    rest to ``router``."""

    def __init__(self, router: Starlette, direct: dict[str, ASGIApp]) -> None:
        self.router, self.direct = router, direct

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            endpoint = self.direct.get(scope["path"])
            if endpoint is not None:
                await endpoint(scope, receive, send)
                return
        await self.router(scope, receive, send)


async def _refresh(gw: Gateway) -> None:
    """Keep the key, readiness and dev-mode gauges current between scrapes."""
    while True:
        gw.metrics.observe_keys(
            gw.keys.key_ages(), gw.keys.dev, gw.keys.state, gw.keys.token_expiry
        )
        gw.upstream_ok = await gw.upstream.probe(PROBE_TIMEOUT)
        ready = gw.keys.key_ring is not None and gw.upstream_ok
        gw.metrics.ready.set(1 if ready else 0)
        await asyncio.sleep(REFRESH_SECONDS)


def build_app(
    settings: Settings,
    keys: KeySource,
    metrics: GatewayMetrics,
    lifecycle: TrustTask | None = None,
    replay: EncMemory | None = None,
) -> GatewayApp:
    """The gateway app for one worker process; ``lifecycle`` (attest → release → serve) runs
    for the app's lifetime and fills ``keys``; ``replay`` is the workers' shared enc memory
    (None: one of this process's own)."""
    upstream = Upstream(
        settings.upstream,
        connect_timeout=settings.upstream_connect_timeout,
        read_timeout=settings.upstream_read_timeout,
        pool_size=settings.max_concurrency,
    )
    gw = Gateway(settings, keys, upstream, metrics, shared_replay=replay)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await upstream.start()
        metrics.observe_keys(keys.key_ages(), keys.dev, keys.state, keys.token_expiry)
        if keys.dev:
            log_event("dev_mode", logging.WARNING, confidential=False, detail="NOT CONFIDENTIAL")
        log_event("started", key_ids=list(keys.key_ages()), started_at=time.time())
        refresher = asyncio.ensure_future(_refresh(gw))
        trust = None if lifecycle is None else asyncio.ensure_future(lifecycle.run())
        try:
            yield
        finally:
            refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await refresher
            if lifecycle is not None and trust is not None:
                trust.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await trust
                await lifecycle.aclose()
                if not keys.dev:
                    keys.fail()  # released private keys leave memory with the ring
            await upstream.close()
            gw.key_agreement.close()
            log_event("stopped")

    gateway = GatewayEndpoint(gw, "gateway", PROFILES)
    direct: dict[str, ASGIApp] = {
        "/gateway": gateway,
        "/.well-known/ohttp-gateway": gateway,
        "/score": GatewayEndpoint(gw, "score", AZURE_PROFILES),
    }
    # The POST routes stay in the router too, so that their other methods get 405, not 404.
    routes = [Route(path, endpoint, methods=["POST"]) for path, endpoint in direct.items()]
    routes += [
        Route("/.well-known/ohttp-gateway", KeysEndpoint(gw), methods=["GET"]),
        Route("/.well-known/ohttp-gateway/attestation", AttestationEndpoint(gw), methods=["GET"]),
        Route("/livez", HealthEndpoint(gw, readiness=False), methods=["GET"]),
        Route("/readyz", HealthEndpoint(gw, readiness=True), methods=["GET"]),
    ]
    return GatewayApp(Starlette(routes=routes, lifespan=lifespan), direct)
