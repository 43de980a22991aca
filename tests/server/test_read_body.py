"""limits.read_body against the ASGI message sequences a server can deliver."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from gateway.errors import EncapsulatedBodyTooLarge, OuterRequestError
from gateway.server.limits import BodyPace, ClientGone, read_body

PACE = BodyPace(5.0)


def messages(*parts: bytes, disconnect: bool = False) -> Callable[[], Awaitable[dict[str, object]]]:
    queue: list[dict[str, object]] = [
        {"type": "http.request", "body": part, "more_body": index < len(parts) - 1}
        for index, part in enumerate(parts)
    ]
    if disconnect:
        queue[-1]["more_body"] = True
        queue.append({"type": "http.disconnect"})

    async def receive() -> dict[str, object]:
        return queue.pop(0)

    return receive


def read(receive: Callable[[], Awaitable[dict[str, object]]], declared: int | None) -> bytes:
    return bytes(asyncio.run(read_body(receive, 100, PACE, declared)))


@pytest.mark.parametrize("declared", [None, 6])
@pytest.mark.parametrize("parts", [(b"abcdef",), (b"abc", b"def"), (b"a", b"", b"bcdef")])
def test_whole_bodies_in_any_slicing(parts: tuple[bytes, ...], declared: int | None) -> None:
    assert read(messages(*parts), declared) == b"abcdef"


def test_a_single_message_body_is_returned_without_a_copy() -> None:
    body = b"x" * 50

    async def go() -> bytes | bytearray:
        return await read_body(messages(body), 100, PACE, 50)

    assert asyncio.run(go()) is body


def test_empty_bodies() -> None:
    assert read(messages(b""), None) == b""
    assert read(messages(b""), 0) == b""


@pytest.mark.parametrize("parts", [(b"abcdefg",), (b"abcdef", b"g"), (b"abc", b"defg")])
def test_longer_than_declared_is_refused(parts: tuple[bytes, ...]) -> None:
    with pytest.raises(OuterRequestError):
        read(messages(*parts), 6)


@pytest.mark.parametrize("parts", [(b"abcde",), (b"ab", b"cde")])
def test_shorter_than_declared_is_refused(parts: tuple[bytes, ...]) -> None:
    with pytest.raises(OuterRequestError):
        read(messages(*parts), 6)


@pytest.mark.parametrize("declared", [None, 150])
def test_more_than_the_limit_is_refused(declared: int | None) -> None:
    with pytest.raises(EncapsulatedBodyTooLarge):
        read(messages(b"x" * 60, b"x" * 60), declared)


def test_a_disconnect_mid_body_is_client_gone() -> None:
    with pytest.raises(ClientGone):
        read(messages(b"abc", disconnect=True), 6)
