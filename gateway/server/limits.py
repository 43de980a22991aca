"""Limits on the outer request, checked before any work is done for it.

* :class:`ConcurrencyLimit`: at most ``limit`` requests processed at once; one more is refused
  at once with :class:`Overloaded` (a queue would only hide overload from the relay).
* :func:`check_header_size`: the outer header section is at most ``max_bytes``.
* :func:`declared_length`: a Content-Length above the body limit is refused with
  :class:`EncapsulatedBodyTooLarge` before one body byte is read; a malformed one is a 400.
* :func:`read_body`: reads an ASGI request body, refusing it as soon as it passes the limit,
  so a sender that declares nothing still cannot make the gateway hold more than the limit.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable

from starlette.types import Receive

from gateway.errors import (
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


async def body_chunks(receive: Receive, max_bytes: int) -> AsyncIterator[bytes]:
    """The request body as it arrives, refused once more than ``max_bytes`` arrived."""
    received = 0
    while True:
        message = await receive()
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
    receive: Receive, max_bytes: int, declared: int | None = None
) -> bytes | bytearray:
    """The whole request body, at most ``max_bytes``; with a declared length it is read straight
    into one buffer of that size (no second copy to join the pieces)."""
    if declared is None:
        parts = [chunk async for chunk in body_chunks(receive, max_bytes)]
        return parts[0] if len(parts) == 1 else b"".join(parts)
    buffer = bytearray(declared)
    filled = 0
    with memoryview(buffer) as view:
        async for chunk in body_chunks(receive, max_bytes):
            end = filled + len(chunk)
            if end > declared:
                raise OuterRequestError("Body longer than its Content-Length")
            view[filled:end] = chunk
            filled = end
    if filled != declared:
        raise OuterRequestError("Body shorter than its Content-Length")
    return buffer
