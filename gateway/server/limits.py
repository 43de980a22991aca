"""Limits on the outer request, checked before any work is done for it.

* :class:`ConcurrencyLimit`: at most ``limit`` requests processed at once; one more is refused
  at once with :class:`Overloaded` (a queue would only hide overload from the relay).
* :func:`check_header_size`: the outer header section is at most ``max_bytes``.
* :func:`declared_length`: a Content-Length above the body limit is refused with
  :class:`EncapsulatedBodyTooLarge` before one body byte is read; a malformed one is a 400.
* :func:`read_body`: reads an ASGI request body, refusing it as soon as it passes the limit,
  so a sender that declares nothing still cannot make the gateway hold more than the limit.
* :class:`BodyPace`: how long a body may keep the gateway waiting. :func:`body_chunks` (and so
  :func:`read_body`) raises :class:`BodyTimeout` when the client sends nothing for
  ``idle_timeout`` seconds, or, past a grace period, falls below ``min_rate`` bytes per second.
  There is deliberately no cap on a body's total duration: a chunked request may carry live audio.
  Only time spent waiting on the client counts, never time the gateway spent elsewhere (the
  upstream accepting what was forwarded), and the timer costs no extra task: each ``receive()``
  runs under one :func:`asyncio.timeout_at`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass

from starlette.types import Receive

from gateway.errors import (
    BodyTimeout,
    EncapsulatedBodyTooLarge,
    HeadersTooLarge,
    OuterRequestError,
    Overloaded,
)


class ClientGone(Exception):
    """The client closed the connection; nobody is left to answer. Internal control flow."""


class ConcurrencyLimit:
    """A non-blocking counter of requests in progress."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_flight = 0

    def __enter__(self) -> ConcurrencyLimit:
        if self.in_flight >= self.limit:
            raise Overloaded
        self.in_flight += 1
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.in_flight -= 1


def check_header_size(headers: Iterable[tuple[bytes, bytes]], max_bytes: int) -> None:
    if sum(len(name) + len(value) for name, value in headers) > max_bytes:
        raise HeadersTooLarge


def declared_length(headers: Iterable[tuple[bytes, bytes]], max_bytes: int) -> int | None:
    """The outer Content-Length, checked against the limit; None when the body is chunked."""
    values = [value for name, value in headers if name == b"content-length"]
    if not values:
        return None
    if len(set(values)) != 1 or not values[0].isdigit() or len(values[0]) > 20:
        raise OuterRequestError("Invalid Content-Length")
    length = int(values[0])
    if length > max_bytes:
        raise EncapsulatedBodyTooLarge
    return length


@dataclass(frozen=True, slots=True)
class BodyPace:
    """The pace a request body must keep (docs/configuration.md, ``--body-*``).

    The minimum rate follows Apache's mod_reqtimeout ``MinRate``: waiting starts with ``grace``
    seconds of allowance and every byte received adds ``1 / min_rate`` seconds. An idle gap cap
    alone is beaten by a sender that trickles one byte per gap; the rate makes it pay bandwidth.
    """

    idle_timeout: float
    min_rate: int = 0
    grace: float = 0.0

    def budget(self, received: int, waited: float) -> float:
        """Seconds the next wait on the client may last, after ``waited`` seconds of waiting so
        far for ``received`` bytes; at most ``idle_timeout``."""
        if not self.min_rate:
            return self.idle_timeout
        return min(self.idle_timeout, self.grace + received / self.min_rate - waited)


async def body_chunks(receive: Receive, max_bytes: int, pace: BodyPace) -> AsyncIterator[bytes]:
    """The request body as it arrives, refused once more than ``max_bytes`` arrived or once the
    sender falls behind ``pace``."""
    received, waited = 0, 0.0
    clock = asyncio.get_running_loop().time
    while True:
        began = clock()
        try:
            async with asyncio.timeout_at(began + pace.budget(received, waited)):
                message = await receive()
        except TimeoutError as stalled:
            raise BodyTimeout from stalled
        waited += clock() - began
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk = message.get("body", b"")
        received += len(chunk)
        if received > max_bytes:
            raise EncapsulatedBodyTooLarge
        if chunk:
            yield chunk
        if not message.get("more_body", False):
            return


async def read_body(
    receive: Receive, max_bytes: int, pace: BodyPace, declared: int | None = None
) -> bytes | bytearray:
    """The whole request body, at most ``max_bytes``, at ``pace``; with a declared length it is
    read straight into one buffer of that size (no second copy to join the pieces). A body that
    arrives in one message (most small ones) is returned as it came, without a copy."""
    chunks = body_chunks(receive, max_bytes, pace)
    first = await anext(chunks, b"")
    if declared is None:
        parts = [first] + [chunk async for chunk in chunks]
        return parts[0] if len(parts) == 1 else b"".join(parts)
    if len(first) > declared:
        raise OuterRequestError("Body longer than its Content-Length")
    if len(first) == declared:
        if await anext(chunks, None) is not None:
            raise OuterRequestError("Body longer than its Content-Length")
        return first
    buffer = bytearray(declared)
    filled = len(first)
    with memoryview(buffer) as view:
        view[:filled] = first
        async for chunk in chunks:
            end = filled + len(chunk)
            if end > declared:
                raise OuterRequestError("Body longer than its Content-Length")
            view[filled:end] = chunk
            filled = end
    if filled != declared:
        raise OuterRequestError("Body shorter than its Content-Length")
    return buffer
