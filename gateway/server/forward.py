"""The one upstream client: a pooled keep-alive aiohttp session to the fixed Whisper upstream.

Chosen by measurement (bench/gateway_bench.py, shared/research/whisper-backends-and-proxying.md
§3): aiohttp ran several times faster than httpx as a proxy client and streams 25 MiB bodies in
constant memory. The session is created once at startup and closed at shutdown.

Guarantees:
* requests go to ``base_url`` + an allowlisted target only; the Host is the upstream's;
* bytes are relayed unchanged both ways (no decompression, no added headers: aiohttp's automatic
  User-Agent, Accept and Accept-Encoding are suppressed);
* a short connect timeout and a long read timeout;
* foreign exceptions are mapped once, in :func:`_mapped_errors`: timeouts to
  :class:`UpstreamTimeout`, everything else to :class:`UpstreamUnavailable`. An error raised by the
  request body stream (the client's data) is re-raised as itself, not as an upstream failure,
  also when the upstream had already begun to answer: the failing stream closes that answer.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterable, AsyncIterator, Iterator
from contextlib import contextmanager
from types import TracebackType

import aiohttp
from yarl import URL

from gateway.errors import UpstreamError, UpstreamTimeout, UpstreamUnavailable
from gateway.server.policy import Field, forwardable

SKIPPED_AUTO_HEADERS = ("User-Agent", "Accept", "Accept-Encoding", "Content-Type")
# Below the idle timeout of common upstream servers (uvicorn: 5 s), so a pooled connection is
# never reused just as the upstream closes it.
KEEPALIVE_SECONDS = 4.0
# aiohttp writes larger bytes bodies in one go (and warns); above this they go as a BytesIO.
INLINE_BODY_LIMIT = 1 << 20


class CapturedBody:
    """Wraps a streamed request body and remembers the error it raised, if any.

    aiohttp turns an exception raised inside a request body into a connection error; keeping the
    original lets the caller answer for what actually went wrong (a too-large, broken or stalled
    upload). aiohttp reports that error only while it waits for the response head: once an
    upstream answered early, the failing body closes the answer (:meth:`watch`), so its reader
    does not wait for an upstream that waits for the rest of the body.
    """

    def __init__(self, chunks: AsyncIterable[bytes]) -> None:
        self._chunks = chunks
        self.error: Exception | None = None
        self._answer: aiohttp.ClientResponse | None = None

    def watch(self, answer: aiohttp.ClientResponse) -> None:
        """Close ``answer`` when the body fails (at once if it already did)."""
        self._answer = answer
        if self.error is not None:
            answer.close()

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._chunks:
                yield chunk
        except Exception as error:
            self.error = error
            if self._answer is not None:
                # Not from inside aiohttp's body writer, which is still unwinding.
                asyncio.get_running_loop().call_soon(self._answer.close)
            raise


class UpstreamResponse:
    """An upstream answer whose head has arrived; the body is read or streamed once."""

    def __init__(self, response: aiohttp.ClientResponse, body: CapturedBody | None = None) -> None:
        self._response = response
        self._body = body
        self.status = response.status
        raw = tuple((name.lower(), value) for name, value in response.raw_headers)
        self.headers: tuple[Field, ...] = tuple(forwardable(raw, response=True))

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives."""
        with _mapped_errors(self._body):
            async for chunk in self._response.content.iter_any():
                yield chunk

    @property
    def at_end(self) -> bool:
        """Whether the whole body has been read (the last chunk read included)."""
        return self._response.content.at_eof()

    async def read(self, max_bytes: int) -> bytes:
        """The whole body, at most ``max_bytes``."""
        parts: list[bytes] = []
        size = 0
        async for chunk in self.chunks():
            size += len(chunk)
            if size > max_bytes:
                raise UpstreamError("Upstream response too large")
            parts.append(chunk)
        return b"".join(parts)

    def release(self) -> None:
        """Give the connection back, or close it when the body was not read to the end."""
        if self._response.content.at_eof():
            self._response.release()
        else:
            self._response.close()

    async def __aenter__(self) -> UpstreamResponse:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


@contextmanager
def _mapped_errors(body: CapturedBody | None = None) -> Iterator[None]:
    try:
        yield
    except (aiohttp.ClientError, OSError, TimeoutError) as error:
        if body is not None and body.error is not None:
            raise body.error from None
        if isinstance(error, TimeoutError | aiohttp.ServerTimeoutError):
            raise UpstreamTimeout from error
        raise UpstreamUnavailable from error


class Upstream:
    """The pooled client; ``start`` at startup, ``close`` at shutdown."""

    def __init__(
        self, base_url: str, *, connect_timeout: float, read_timeout: float, pool_size: int
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._timeout = aiohttp.ClientTimeout(
            total=None, connect=None, sock_connect=connect_timeout, sock_read=read_timeout
        )
        self._pool_size = pool_size
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(
            limit=self._pool_size, keepalive_timeout=KEEPALIVE_SECONDS, ttl_dns_cache=None
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=self._timeout,
            auto_decompress=False,
            skip_auto_headers=SKIPPED_AUTO_HEADERS,
            cookie_jar=aiohttp.DummyCookieJar(),
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def send(
        self,
        method: bytes,
        target: str,
        headers: tuple[Field, ...],
        body: bytes | CapturedBody,
        content_length: int | None = None,
    ) -> UpstreamResponse:
        """Send a request; returns once the response head arrived."""
        if self._session is None:
            raise UpstreamUnavailable("Upstream client not started")
        fields = [(n.decode("latin-1"), v.decode("latin-1")) for n, v in forwardable(headers)]
        if content_length is not None:
            fields.append(("Content-Length", str(content_length)))
        url = URL(self.base_url + target, encoded=True)
        data: bytes | io.BytesIO | CapturedBody = body
        if isinstance(body, bytes) and len(body) > INLINE_BODY_LIMIT:
            data = io.BytesIO(body)  # written in slices, yielding to the loop between them
        captured = body if isinstance(body, CapturedBody) else None
        with _mapped_errors(captured):
            response = await self._session.request(
                method.decode("ascii"),
                url,
                headers=fields,
                data=data,
                allow_redirects=False,
                compress=None,
            )
        if not 200 <= response.status <= 599:
            response.close()  # a final status BHTTP cannot carry: the upstream misbehaved
            raise UpstreamUnavailable("Upstream answered with an invalid status")
        if captured is not None:
            captured.watch(response)
        return UpstreamResponse(response, captured)

    async def probe(self, timeout: float) -> bool:
        """True when the upstream answers HTTP at all (any status) within ``timeout``."""
        if self._session is None:
            return False
        try:
            async with asyncio.timeout(timeout):
                response = await self._session.get(URL(self.base_url + "/", encoded=True))
                response.close()
        except (aiohttp.ClientError, OSError, TimeoutError):
            return False
        return True
