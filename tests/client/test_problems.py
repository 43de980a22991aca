"""RFC 9458 problem responses against the real dev gateway (through the tap):

* ``ohttp-key`` (§5.2, in the clear): the client drops its keys, verifies again, retries once;
  a second refusal is :class:`KeyConfigRejected`;
* ``date`` (§6.5, encapsulated, with the gateway's Date): one retry with that Date and a fresh
  HPKE context; never a second one.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from gateway.client.multipart import FileForm
from gateway.client.session import ClientSettings, Head, OhttpClient
from gateway.demo.backend import SAMPLE_AUDIO, SAMPLE_TEXT
from gateway.errors import KeyConfigRejected
from gateway.protocol.keys import AeadId, GatewayKey, KdfId, KemId, KeyRing, SymmetricSuite
from tests.support.attested_gateway import DOCUMENT_PATH, AttestationWorld, GatewayTap

KEYS_PATH = "/.well-known/ohttp-gateway"
_form = FileForm(SAMPLE_AUDIO, {"model": "whisper-1", "response_format": "text"})
HEAD = Head(b"POST", b"/v1/audio/transcriptions", ((b"content-type", _form.content_type),))


async def _read_form() -> bytes:
    return b"".join([piece async for piece in _form.chunks()])


FORM = asyncio.run(_read_form())


def _stale_keys() -> bytes:
    # Key id 9: not one the gateway holds, so it answers the ohttp-key problem.
    suite = SymmetricSuite(KdfId.HKDF_SHA256, AeadId.AES_128_GCM)
    return KeyRing([GatewayKey.generate(9, KemId.X25519_SHA256, (suite,))]).encoded_configs


def _settings(
    world: AttestationWorld, tap: GatewayTap, gateway: Any, **extra: Any
) -> ClientSettings:
    return ClientSettings(gateway=gateway.url, relay=tap.url, policy=world.policy(), **extra)


def _posts(tap: GatewayTap) -> int:
    return [seen.method for seen in tap.seen].count("POST")


def _stale(world: AttestationWorld, tap: GatewayTap, times: int) -> None:
    stale = _stale_keys()
    document = json.dumps(world.document(stale)).encode()
    tap.overrides = {KEYS_PATH: [stale] * times, DOCUMENT_PATH: [document] * times}


def test_ohttp_key_problem_refreshes_the_keys_and_retries_once(
    world: AttestationWorld, tap: GatewayTap, good_document: Any, gateway: Any
) -> None:
    tap.document = good_document
    _stale(world, tap, times=1)

    async def go() -> int:
        async with OhttpClient(_settings(world, tap, gateway)) as client:
            return (await client.send(HEAD, FORM)).status

    assert asyncio.run(go()) < 400
    assert _posts(tap) == 2


def test_ohttp_key_problem_twice_is_refused(
    world: AttestationWorld, tap: GatewayTap, good_document: Any, gateway: Any
) -> None:
    tap.document = good_document
    _stale(world, tap, times=2)

    async def go() -> None:
        async with OhttpClient(_settings(world, tap, gateway)) as client:
            await client.send(HEAD, FORM)

    with pytest.raises(KeyConfigRejected):
        asyncio.run(go())
    assert _posts(tap) == 2


def test_ohttp_key_problem_on_a_streamed_request_retries_with_a_fresh_body(
    world: AttestationWorld, tap: GatewayTap, good_document: Any, gateway: Any
) -> None:
    tap.document = good_document
    _stale(world, tap, times=1)

    async def body() -> AsyncIterator[bytes]:
        yield FORM[:1000]
        yield FORM[1000:]

    async def go() -> bytes:
        async with (
            OhttpClient(_settings(world, tap, gateway)) as client,
            client.stream(HEAD, body) as response,
        ):
            assert response.status == 200
            return await response.read()

    assert asyncio.run(go()).decode().strip() == SAMPLE_TEXT
    assert _posts(tap) == 2


@pytest.mark.parametrize("streamed", [False, True])
def test_date_problem_is_retried_once_with_the_gateways_date(
    world: AttestationWorld, tap: GatewayTap, good_document: Any, gateway: Any, streamed: bool
) -> None:
    tap.document = good_document
    # The local clock is an hour slow: outside the gateway's 120 s window.
    settings = _settings(world, tap, gateway, clock_skew=-3600.0)

    async def body() -> AsyncIterator[bytes]:
        yield FORM

    async def go() -> tuple[int, bytes]:
        async with OhttpClient(settings) as client:
            if not streamed:
                answer = await client.send(HEAD, FORM)
                return answer.status, answer.content
            async with client.stream(HEAD, body) as response:
                return response.status, await response.read()

    status, content = asyncio.run(go())
    assert status == 200
    assert content.decode().strip() == SAMPLE_TEXT
    assert _posts(tap) == 2  # the refused attempt, then one retry
