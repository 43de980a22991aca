"""Key rotation at the confidential KMS: picked up under continuous load with no failed request;
picked up at once when a request names the new key id; the superseded key decrypts through its
grace period and then leaves the served list, and the attestation document follows each change."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from pathlib import Path

import aiohttp

from gateway.emulators.runner import Emulators
from gateway.protocol.keys import KeyConfig, decode_key_configs
from tests.support.attested_process import AttestedGateway, get
from tests.support.ohttp_client import inner_request, key_configs, post_plain
from tests.support.upstream_double import UpstreamDouble

CCF = {"OHTTP_GATEWAY_KMS_BACKEND": "ccf"}
LOAD_SECONDS = 6.0
WORKERS = 4


def _served(gateway: AttestedGateway) -> list[KeyConfig]:
    return decode_key_configs(get(gateway.url + "/.well-known/ohttp-gateway")[1])


def _document_binds_served(gateway: AttestedGateway) -> None:
    _, served = get(gateway.url + "/.well-known/ohttp-gateway")
    document = json.loads(get(gateway.url + "/.well-known/ohttp-gateway/attestation")[1])
    assert base64.b64decode(document["binding"]["key_configs"]) == served


async def _one(session: aiohttp.ClientSession, url: str, config: KeyConfig) -> int:
    answer = await post_plain(session, url + "/gateway", config, config.suites[0], inner_request())
    return answer.inner.status if answer.inner is not None else answer.status


def test_rotation_under_continuous_load_fails_no_request(
    emulators: Emulators, double: UpstreamDouble, tmp_path: Path
) -> None:
    env = {**emulators.settings(), **CCF, "OHTTP_GATEWAY_KEY_REFRESH_INTERVAL": "0.5"}
    gateway = AttestedGateway(env, double.url, tmp_path / "gateway.log").start()
    try:
        gateway.wait_ready()
        (before,) = _served(gateway)
        outcomes: list[int] = []

        async def worker(fresh: bool, deadline: float) -> None:
            async with aiohttp.ClientSession() as session:
                config = before
                while time.monotonic() < deadline:
                    if fresh:  # a client that always takes the gateway's current first config
                        config = (await key_configs(session, gateway.url))[0]
                    outcomes.append(await _one(session, gateway.url, config))

        async def load() -> None:
            deadline = time.monotonic() + LOAD_SECONDS
            tasks = [asyncio.create_task(worker(n % 2 == 0, deadline)) for n in range(WORKERS)]
            await asyncio.sleep(LOAD_SECONDS / 3)
            await asyncio.to_thread(emulators.ccf_kms.refresh)  # rotate mid-load
            await asyncio.gather(*tasks)

        asyncio.run(load())
        served = _served(gateway)
        assert [c.key_id for c in served] == [emulators.ccf_kms.latest, before.key_id]
        assert len(outcomes) > 50
        assert outcomes.count(200) == len(outcomes), {s: outcomes.count(s) for s in set(outcomes)}
        assert gateway.metric("ohttp_gateway_key_rotations_total") >= 1
        _document_binds_served(gateway)
    finally:
        assert gateway.terminate() == 0


def test_unknown_key_id_triggers_a_refresh_and_grace_ends(
    emulators: Emulators, double: UpstreamDouble, tmp_path: Path
) -> None:
    env = {
        **emulators.settings(),
        **CCF,
        "OHTTP_GATEWAY_KEY_REFRESH_INTERVAL": "3600",  # only the unknown key id can trigger it
        "OHTTP_GATEWAY_KEY_GRACE_PERIOD": "1.5",
    }
    gateway = AttestedGateway(env, double.url, tmp_path / "gateway.log").start()
    try:
        gateway.wait_ready()
        (old,) = _served(gateway)
        kms = emulators.ccf_kms
        kid = kms.refresh()
        # A client that learnt the new key elsewhere (another replica) names it first.
        new = KeyConfig.decode(bytes.fromhex(kms.keys[kid].public_key_hex))

        async def until_served() -> list[int]:
            statuses = []
            async with aiohttp.ClientSession() as session:
                for _ in range(100):
                    statuses.append(await _one(session, gateway.url, new))
                    if statuses[-1] == 200:
                        break
                    await asyncio.sleep(0.05)
            return statuses

        statuses = asyncio.run(until_served())
        assert statuses[0] == 400  # unknown key id, answered in the clear
        assert statuses[-1] == 200
        assert [c.key_id for c in _served(gateway)] == [kid, old.key_id]
        _document_binds_served(gateway)
        deadline = time.monotonic() + 10
        while len(_served(gateway)) > 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert [c.key_id for c in _served(gateway)] == [kid]  # grace over: exactly what decrypts
        _document_binds_served(gateway)
        assert asyncio.run(_until_status(gateway, old)) == 400
    finally:
        assert gateway.terminate() == 0


async def _until_status(gateway: AttestedGateway, config: KeyConfig) -> int:
    async with aiohttp.ClientSession() as session:
        return await _one(session, gateway.url, config)
