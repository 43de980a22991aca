"""Client fixtures: a real dev gateway (child process) behind a recording tap, and an MAA
emulator world that makes attestation documents for the gateway's keys."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from gateway.demo.backend import SAMPLE_TEXT, BackendProcess, BackendSettings, RunningBackend
from tests.support.attested_gateway import AttestationWorld, GatewayTap, attestation_world
from tests.support.gateway_process import GatewayProcess

PHRASES = (SAMPLE_TEXT, "hello world today is a sunny day")


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AttestationWorld]:
    with attestation_world(Path(tmp_path_factory.mktemp("client-world"))) as running:
        yield running


@pytest.fixture(scope="session")
def backend() -> Iterator[RunningBackend]:
    with BackendProcess(BackendSettings(port=0, phrases=PHRASES, stream_pace=0.1)) as running:
        yield running


@pytest.fixture(scope="session")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, backend: RunningBackend
) -> Iterator[GatewayProcess]:
    log = Path(tmp_path_factory.mktemp("client-gateway")) / "gateway.log"
    process = GatewayProcess(backend.url, log, "--replay-window", "120").start()
    yield process
    process.terminate()


def key_configs_of(url: str) -> bytes:
    async def fetch() -> bytes:
        async with (
            aiohttp.ClientSession() as session,
            session.get(url + "/.well-known/ohttp-gateway") as answer,
        ):
            assert answer.status == 200
            return await answer.read()

    return asyncio.run(fetch())


@pytest.fixture(scope="session")
def gateway_keys(gateway: GatewayProcess) -> bytes:
    return key_configs_of(gateway.url)


@pytest.fixture(scope="session")
def good_document(world: AttestationWorld, gateway_keys: bytes) -> dict[str, object]:
    return world.document(gateway_keys)


@pytest.fixture
def tap(gateway: GatewayProcess) -> Iterator[GatewayTap]:
    with GatewayTap(gateway.url) as running:
        yield running
