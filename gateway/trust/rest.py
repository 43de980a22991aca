"""A small JSON-over-HTTPS client with bounded, jittered retries, for MAA, THIM and the KMSs.

Accepts: a CA bundle (added to the system roots, never replacing verification), a timeout, a
:class:`RetryPolicy` and the error class to raise on failure (the caller's place in the tree:
evidence for THIM, attestation service for MAA). Guarantees:

* TLS is always verified; a certificate failure is final and is not retried;
* 429 and 5xx answers and connection failures are retried at most ``attempts`` times in total,
  with full-jitter exponential backoff capped at ``max_delay``; ``Retry-After`` (seconds) is
  honoured up to the same cap;
* other answers are returned as a :class:`RestResponse` for the caller to interpret;
* bodies larger than ``max_body`` are refused;
* proxies from the environment are ignored (IMDS must never be reached through a proxy).

Never: logs or puts bodies, headers or URLs' query strings into error messages.

aiohttp rather than urllib in a thread: the gateway is asyncio end to end, aiohttp is already its
upstream client (measured faster than httpx, see DESIGN.md §6), and a session can verify TLS
against a CA bundle added to the system roots.
"""

from __future__ import annotations

import asyncio
import functools
import json
import random
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import aiohttp

from gateway.errors import ConfigError, TrustError

MAX_BODY = 1 << 20
USER_AGENT = "ohttp-gateway"


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to retry a failed call."""

    attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 8.0

    def __post_init__(self) -> None:
        if self.attempts < 1 or self.base_delay < 0 or self.max_delay < self.base_delay:
            raise ConfigError("invalid retry policy")

    def delay(self, attempt: int, retry_after: float | None, rng: random.Random) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        if retry_after is not None:
            return min(retry_after, self.max_delay)
        # Full jitter: spreads replicas that failed together (AWS architecture blog).
        return rng.uniform(0, min(self.max_delay, self.base_delay * 2 ** (attempt - 1)))


@dataclass(frozen=True)
class RestResponse:
    """A final (not retried) answer."""

    status: int
    body: bytes = field(repr=False)

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except (ValueError, UnicodeDecodeError):
            return None


def ssl_context(ca_bundle: Path | None) -> ssl.SSLContext:
    """A new context: system roots plus ``ca_bundle``, with hostname checks on. Callers may add
    trust anchors to it (the confidential KMS pins its service certificate)."""
    context = ssl.create_default_context()
    if ca_bundle is not None:
        try:
            context.load_verify_locations(cafile=str(ca_bundle))
        except (OSError, ssl.SSLError) as error:
            raise ConfigError("the CA bundle cannot be read") from error
    return context


def shared_ssl_context(ca_bundle: Path | None) -> ssl.SSLContext:
    """Like :func:`ssl_context`, but one context per (bundle, its mtime), never to be modified:
    loading the system roots takes ~100 ms, too much for every client. A bundle regenerated at
    the same path gets a new context."""
    if ca_bundle is None:
        return _shared(None, 0)
    try:
        mtime = ca_bundle.stat().st_mtime_ns
    except OSError as error:
        raise ConfigError("the CA bundle cannot be read") from error
    return _shared(ca_bundle, mtime)


@functools.lru_cache(maxsize=8)
def _shared(ca_bundle: Path | None, mtime_ns: int) -> ssl.SSLContext:
    return ssl_context(ca_bundle)


def _retry_after(headers: Any) -> float | None:
    value = headers.get("Retry-After")
    if value is None or not value.isdigit():
        return None
    return float(value)


class RestClient:
    """One aiohttp session, opened on first use; close it with ``close()`` or ``async with``."""

    def __init__(
        self,
        *,
        error: type[TrustError],
        ca_bundle: Path | None = None,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        max_body: int = MAX_BODY,
        rng: random.Random | None = None,
        context: ssl.SSLContext | None = None,
    ) -> None:
        self._error = error
        # ``context``: callers with their own trust anchors (the confidential KMS's pinned
        # service certificate); it must verify as strictly as ``ssl_context`` does.
        self._ssl = context or shared_ssl_context(ca_bundle)
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._retry = retry or RetryPolicy()
        self._max_body = max_body
        self._rng = rng or random.SystemRandom()
        self._session: aiohttp.ClientSession | None = None
        self.attempts_made = 0

    async def __aenter__(self) -> RestClient:
        self._open()
        return self

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self._ssl),
                timeout=self._timeout,
                trust_env=False,
                headers={"User-Agent": USER_AGENT},
            )
        return self._session

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def request(
        self,
        method: str,
        url: str,
        *,
        json_body: Any = None,
        headers: dict[str, str] | None = None,
    ) -> RestResponse:
        """The first answer that is neither 429 nor 5xx, or ``error`` when retries run out."""
        for attempt in range(1, self._retry.attempts + 1):
            self.attempts_made += 1
            retry_after: float | None = None
            try:
                response = await self._once(method, url, json_body, headers)
            except aiohttp.ClientSSLError as error:
                raise self._error("TLS verification of the service failed") from error
            except (aiohttp.ClientError, TimeoutError) as error:
                if attempt == self._retry.attempts:
                    raise self._error("service unreachable after retries") from error
            else:
                if response.status != 429 and response.status < 500:
                    return response
                if attempt == self._retry.attempts:
                    raise self._error("service unavailable after retries")
                retry_after = response.retry_after
            await asyncio.sleep(self._retry.delay(attempt, retry_after, self._rng))
        raise AssertionError("unreachable")  # pragma: no cover

    async def _once(
        self, method: str, url: str, json_body: Any, headers: dict[str, str] | None
    ) -> _Answer:
        async with self._open().request(
            method, url, json=json_body, headers=headers, allow_redirects=False
        ) as response:
            # read(n) may return less than is there: read to the end, bounded.
            body = bytearray()
            async for chunk in response.content.iter_chunked(1 << 16):
                body += chunk
                if len(body) > self._max_body:
                    raise self._error("service answer too large")
            return _Answer(response.status, bytes(body), _retry_after(response.headers))


@dataclass(frozen=True)
class _Answer(RestResponse):
    retry_after: float | None = None
