"""The client: verify the gateway, then encapsulate, send through the relay and decapsulate.

Accepts a :class:`ClientSettings` (gateway URL, optional relay URL, policy, optional KMS key
source) and inner requests as :class:`gateway.protocol.bhttp.Request` (standard OHTTP) or a
request head plus a body factory (chunked OHTTP, streamed from disk or from a socket).

Guarantees:

* nothing is encapsulated before :meth:`OhttpClient.verified` succeeded for the exact key
  configs in use; the verification is cached until the token's (or document's) expiry minus a
  margin, never longer;
* standard requests are RFC 9458 ``message/ohttp-req``; streamed requests are chunked OHTTP
  (``message/ohttp-chunked-req`` with ``Incremental: ?1``), whose request and response both flow
  with bounded memory; ``/score`` requests use Microsoft's profile (P-384, Azure framing);
* a clear ``ohttp-key`` problem (RFC 9458 §5.2) drops the cached keys, re-verifies, and retries
  once when the body can be replayed; a second one is :class:`KeyConfigRejected`;
* an encapsulated ``date`` problem with a ``Date`` (§6.5) is retried once, with that Date in the
  inner request and a fresh HPKE context, and that Date is used for nothing else;
* each request carries only ``Content-Type`` (and ``Incremental``) to the relay.

Never does: send plaintext, send to an unverified key, or retry more than once.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from email.utils import formatdate
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from gateway.client.document import parse_document
from gateway.client.keysource import (
    fetch_document,
    fetch_jwks,
    fetch_key_configs,
    kms_key_configs,
)
from gateway.client.policy import AttestationPolicy
from gateway.client.verify import VerifiedGateway, check_key_configs, verify_document
from gateway.errors import (
    PROBLEM_DATE,
    PROBLEM_OHTTP_KEY,
    ClientConnectionFailed,
    ConfigError,
    KeyConfigRejected,
    OuterResponseRefused,
)
from gateway.protocol import bhttp, ohttp
from gateway.protocol.azure_profile import AzureResponseDecapsulator
from gateway.protocol.chunked import ChunkedRequestEncapsulator, ChunkedResponseDecapsulator
from gateway.protocol.keys import KemId, KeyConfig

CACHE_MARGIN = 60.0  # re-verify this long before the token expires
MAX_PROBLEM_SIZE = 16 * 1024
MAX_RESPONSE_SIZE = 64 * 1024 * 1024
BodyFactory = Callable[[], AsyncIterator[bytes]]


@dataclass(frozen=True)
class KmsSource:
    """Azure's confidential KMS as the key source: its URL and pinned service certificate."""

    url: str
    service_cert: Path
    ca_bundle: Path | None = None


@dataclass(frozen=True)
class ClientSettings:
    gateway: str
    policy: AttestationPolicy = field(repr=False)
    relay: str | None = None
    kms: KmsSource | None = None
    ca_bundle: Path | None = None  # extra roots for https relays/gateways (tests, private CAs)
    timeout: float = 600.0
    clock_skew: float = 0.0  # added to the local clock for the inner Date (tests)

    def __post_init__(self) -> None:
        for url in (self.gateway, self.relay):
            parts = urlsplit(url or "http://x")
            if parts.scheme not in ("http", "https") or not parts.hostname or parts.query:
                raise ConfigError("gateway and relay must be http(s) URLs without query")

    @property
    def base(self) -> str:
        """Where requests go: the relay (which forwards to its one gateway), else the gateway."""
        return (self.relay or self.gateway).rstrip("/")

    @property
    def authority(self) -> bytes:
        return (urlsplit(self.gateway).netloc or "gateway").encode("ascii")


@dataclass(frozen=True)
class Head:
    """An inner request head: method, path (with query) and lowercase header fields."""

    method: bytes
    path: bytes
    headers: tuple[bhttp.Field, ...] = ()


class StreamedResponse:
    """An inner response whose body is still arriving: status and headers first."""

    def __init__(self, head: bhttp.ResponseHead, rest: AsyncIterator[bytes]) -> None:
        self.status = head.status
        self.headers = head.headers
        self._rest = rest

    def header(self, name: bytes) -> bytes | None:
        return next((value for key, value in self.headers if key == name), None)

    def iter_body(self) -> AsyncIterator[bytes]:
        return self._rest

    async def read(self, limit: int = MAX_RESPONSE_SIZE) -> bytes:
        body = bytearray()
        async for piece in self._rest:
            body += piece
            if len(body) > limit:
                raise OuterResponseRefused("response too large")
        return bytes(body)


class OhttpClient:
    """One verified gateway; use ``async with`` so the HTTP session is closed."""

    def __init__(self, settings: ClientSettings, *, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self._clock = clock
        self._verified: VerifiedGateway | None = None
        self._session: aiohttp.ClientSession | None = None
        self.posts = 0  # encapsulated requests sent (tests check that refusals send nothing)

    async def __aenter__(self) -> OhttpClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            from gateway.trust.rest import ssl_context

            connector = aiohttp.TCPConnector(ssl=ssl_context(self.settings.ca_bundle))
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=self.settings.timeout, sock_connect=10),
                trust_env=False,
                auto_decompress=False,
                skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding"),
            )
        return self._session

    # --- verification -------------------------------------------------------------------------

    async def verified(self, *, refresh: bool = False) -> VerifiedGateway:
        """The verified gateway, from cache while its token is valid."""
        now = self._clock()
        cached = self._verified
        if cached is not None and not refresh and now < cached.expires_at - CACHE_MARGIN:
            return cached
        self._verified = None
        verified = await self._verify(now)
        self._verified = verified
        return verified

    async def _verify(self, now: float) -> VerifiedGateway:
        policy = self.settings.policy
        document = parse_document(await fetch_document(self.session, self.settings.base))
        issuer = policy.maa_issuer or document.maa_issuer
        jwks = await fetch_jwks(issuer, policy.maa_ca_bundle or self.settings.ca_bundle)
        verified = verify_document(document, policy=policy, jwks=jwks, now=now)
        check_key_configs(verified, await self._key_configs())
        return verified

    async def _key_configs(self) -> bytes:
        kms = self.settings.kms
        if kms is not None:
            return await kms_key_configs(kms.url, kms.service_cert, kms.ca_bundle)
        return await fetch_key_configs(self.session, self.settings.base)

    async def config(self, kem: KemId | None = None) -> KeyConfig:
        configs = (await self.verified()).configs
        chosen = [c for c in configs if kem is None or c.kem_id == kem]
        if not chosen:
            raise KeyConfigRejected("the gateway offers no key config of the required KEM")
        # X25519 is the cheapest where the caller does not care.
        return next((c for c in chosen if c.kem_id == KemId.X25519_SHA256), chosen[0])

    def date(self) -> bytes:
        return formatdate(self._clock() + self.settings.clock_skew, usegmt=True).encode()

    # --- standard OHTTP -----------------------------------------------------------------------

    async def send(self, head: Head, content: bytes) -> bhttp.Response:
        """One RFC 9458 exchange (known-length BHTTP), with the §5.2/§6.5 retries."""
        date: bytes | None = None
        for attempt in range(2):
            response = await self._send_once(head, content, date, key_retry=True)
            retry_date = date_problem(response.status, response.headers, response.content)
            if retry_date is None or attempt == 1:
                return response
            date = retry_date
        raise AssertionError("unreachable")  # pragma: no cover

    async def _send_once(
        self, head: Head, content: bytes, date: bytes | None, *, key_retry: bool
    ) -> bhttp.Response:
        config = await self.config()
        request = self._inner(head, content, date)
        sealed, context = ohttp.encapsulate_request(
            config, config.suites[0], bhttp.encode_request(request)
        )
        headers = {"Content-Type": "message/ohttp-req"}
        async with self._post("/gateway", sealed, headers) as answer:
            body = await answer.content.read(MAX_RESPONSE_SIZE + 1)
            if answer.status != 200:
                await self._refused(answer.status, answer.content_type, body)
                if key_retry:
                    return await self._send_once(head, content, date, key_retry=False)
                raise KeyConfigRejected()
        return bhttp.decode_response(context.decapsulate_response(body))

    def _inner(self, head: Head, content: bytes, date: bytes | None) -> bhttp.Request:
        headers = tuple((k, v) for k, v in head.headers if k != b"date")
        headers += ((b"date", date or self.date()),)
        authority = self.settings.authority
        return bhttp.Request(head.method, b"https", authority, head.path, headers, content)

    @contextlib.asynccontextmanager
    async def _post(
        self, path: str, data: Any, headers: dict[str, str]
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        self.posts += 1
        try:
            async with self.session.post(
                self.settings.base + path, data=data, headers=headers, allow_redirects=False
            ) as answer:
                yield answer
        except (aiohttp.ClientConnectionError, TimeoutError) as failure:
            raise ClientConnectionFailed("relay or gateway unreachable") from failure

    async def _refused(self, status: int, content_type: str, body: bytes) -> None:
        """A clear refusal: the ohttp-key problem drops the keys (the caller retries once)."""
        if status == 400 and problem_type(content_type, body) == PROBLEM_OHTTP_KEY:
            await self.verified(refresh=True)
            return
        raise OuterResponseRefused(
            f"relay or gateway answered {status} in the clear", outer_status=status
        )

    # --- chunked OHTTP ------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def stream(
        self, head: Head, body: BodyFactory, *, replayable: bool = True
    ) -> AsyncIterator[StreamedResponse]:
        """A chunked OHTTP exchange; ``body()`` gives a fresh iterator per attempt."""
        date: bytes | None = None
        key_retry = replayable
        for attempt in range(2):
            async with self._stream_once(head, body, date, key_retry) as response:
                retry = None
                if replayable and attempt == 0 and response.status == 400:
                    content = await response.read(MAX_PROBLEM_SIZE)
                    retry = date_problem(response.status, response.headers, content)
                    if retry is None:
                        yield _replayed(response, content)
                        return
                if retry is None:
                    yield response
                    return
                date = retry
        raise AssertionError("unreachable")  # pragma: no cover

    @contextlib.asynccontextmanager
    async def _stream_once(
        self, head: Head, body: BodyFactory, date: bytes | None, key_retry: bool
    ) -> AsyncIterator[StreamedResponse]:
        config = await self.config()
        encapsulator = ChunkedRequestEncapsulator(config, config.suites[0])
        decapsulator = encapsulator.response_decapsulator()
        request = self._inner(head, b"", date)
        upload = _upload(encapsulator, request, body())
        headers = {"Content-Type": "message/ohttp-chunked-req", "Incremental": "?1"}
        async with self._post("/gateway", upload, headers) as answer:
            if answer.status != 200:
                refusal = await answer.content.read(MAX_PROBLEM_SIZE)
                await self._refused(answer.status, answer.content_type, refusal)
                if not key_retry:
                    raise KeyConfigRejected()
                retried = self._stream_once(head, body, date, key_retry=False)
                async with retried as response:
                    yield response
                return
            yield await _open_response(answer, decapsulator)

    # --- Azure /score -------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def score(
        self, head: Head, content: bytes
    ) -> AsyncIterator[tuple[int, AsyncIterator[bytes]]]:
        """Microsoft's profile: P-384, known-length BHTTP in, status in clear, Azure framing out.

        Yields the clear status and the decrypted raw upstream body as it arrives; a stream
        that ends before its final chunk raises :class:`AzureFramingError`.
        """
        config = await self.config(KemId.P384_SHA384)
        request = self._inner(head, content, None)
        sealed, context = ohttp.encapsulate_request(
            config, config.suites[0], bhttp.encode_request(request)
        )
        headers = {"Content-Type": "message/ohttp-chunked-req"}
        decapsulator = AzureResponseDecapsulator(context)
        async with self._post("/score", sealed, headers) as answer:

            async def body() -> AsyncIterator[bytes]:
                async for data in answer.content.iter_any():
                    for piece in decapsulator.feed(data):
                        yield piece
                for piece in decapsulator.finish():
                    yield piece

            yield answer.status, body()


def problem_type(content_type: str | bytes, body: bytes) -> str | None:
    """The ``type`` of an RFC 9457 problem+json body, else None."""
    if isinstance(content_type, bytes):
        content_type = content_type.decode("latin-1")
    if content_type.split(";")[0].strip().lower() != "application/problem+json":
        return None
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    kind = document.get("type") if isinstance(document, dict) else None
    return kind if isinstance(kind, str) else None


def date_problem(status: int, headers: tuple[bhttp.Field, ...], content: bytes) -> bytes | None:
    """The gateway's Date if this inner response is the §6.5 ``date`` problem, else None."""
    fields = dict(headers)
    if status != 400 or problem_type(fields.get(b"content-type", b""), content) != PROBLEM_DATE:
        return None
    return fields.get(b"date")


async def _upload(
    encapsulator: ChunkedRequestEncapsulator, request: bhttp.Request, body: AsyncIterator[bytes]
) -> AsyncIterator[bytes]:
    encoder = bhttp.RequestEncoder()
    head = encoder.head(
        request.method, request.scheme, request.authority, request.path, request.headers
    )
    yield encapsulator.start() + encapsulator.encapsulate_chunk(head)
    async for piece in body:
        if piece:
            yield encapsulator.encapsulate_chunk(encoder.body(piece))
    yield encapsulator.finish(encoder.end())


async def _open_response(
    answer: aiohttp.ClientResponse, decapsulator: ChunkedResponseDecapsulator
) -> StreamedResponse:
    """Read until the inner response head; the rest of the body streams from the iterator."""
    events = _events(answer, decapsulator)
    async for event in events:
        if isinstance(event, bhttp.ResponseHead):
            return StreamedResponse(event, _body(events))
    raise OuterResponseRefused("gateway response ended before its head")


async def _events(
    answer: aiohttp.ClientResponse, decapsulator: ChunkedResponseDecapsulator
) -> AsyncIterator[bhttp.Event]:
    decoder = bhttp.ResponseDecoder()
    async for data in answer.content.iter_any():
        for plaintext in decapsulator.feed(data):
            for event in decoder.feed(plaintext):
                yield event
    for plaintext in decapsulator.finish():
        for event in decoder.feed(plaintext):
            yield event
    for event in decoder.finish():
        yield event


async def _body(events: AsyncIterator[bhttp.Event]) -> AsyncIterator[bytes]:
    async for event in events:
        if isinstance(event, bhttp.BodyChunk):
            yield event.data


def _replayed(response: StreamedResponse, content: bytes) -> StreamedResponse:
    """A response whose (small) body was already read to inspect it."""

    async def again() -> AsyncIterator[bytes]:
        yield content

    head = bhttp.ResponseHead(response.status, response.headers, bhttp.Framing.INDETERMINATE_LENGTH)
    return StreamedResponse(head, again())
