"""The seam the trust lifecycle plugs into: a KeySource installed, published, rotated and failed
while the gateway runs, seen through the routes, /readyz and the metrics."""

from __future__ import annotations

import dataclasses
import json

import aiohttp
from prometheus_client import generate_latest

from gateway.config import Settings
from gateway.server.keysource import AttestationState, KeySource, dev_key_ring
from tests.server.conftest import run
from tests.support.gateway_process import GatewayThread
from tests.support.ohttp_client import inner_request, key_configs, post_plain
from tests.support.upstream_double import UpstreamDouble


def test_dev_keys_are_deterministic_per_seed_and_random_without() -> None:
    assert dev_key_ring(b"s" * 32).encoded_configs == dev_key_ring(b"s" * 32).encoded_configs
    assert dev_key_ring(b"s" * 32).encoded_configs != dev_key_ring(b"t" * 32).encoded_configs
    assert dev_key_ring().encoded_configs != dev_key_ring().encoded_configs
    assert [c.kem_id.name for c in dev_key_ring().configs] == ["X25519_SHA256", "P384_SHA384"]


def test_lifecycle_install_publish_rotate_fail(double: UpstreamDouble) -> None:
    keys = KeySource(dev=False)
    settings = dataclasses.replace(Settings(upstream=double.url, metrics_port=0))
    server = GatewayThread(settings, keys).start()
    url = server.url

    async def get(session: aiohttp.ClientSession, path: str) -> tuple[int, bytes]:
        async with session.get(url + path) as response:
            return response.status, await response.read()

    async def body() -> None:
        async with aiohttp.ClientSession() as session:
            assert (await get(session, "/readyz"))[0] == 503
            assert (await get(session, "/.well-known/ohttp-gateway/attestation"))[0] == 503
            keys.install(dev_key_ring(b"a" * 32), AttestationState.ATTESTED)
            keys.publish_attestation(b'{"token": "t"}', token_expiry=2_000_000_000)
            status, document = await get(session, "/.well-known/ohttp-gateway/attestation")
            assert status == 200
            assert json.loads(document) == {"token": "t"}
            ready = json.loads((await get(session, "/readyz"))[1])
            scrape = generate_latest(server.metrics.registry).decode()
            assert "ohttp_gateway_attestation_token_expiry_timestamp_seconds 2e+09" in scrape
            assert 'ohttp_gateway_attestation_state{state="attested"} 1.0' in scrape
            assert ready["ready"] is True
            assert ready["confidential"] is True
            assert "mode" not in ready
            config = (await key_configs(session, url))[0]
            first = await post_plain(
                session, url + "/gateway", config, config.suites[0], inner_request()
            )
            assert first.inner is not None
            assert first.inner.status == 200
            # Rotation: a new ring; clients with the old config get the ohttp-key problem.
            keys.install(dev_key_ring(b"b" * 32), AttestationState.ATTESTED)
            stale = await post_plain(
                session, url + "/gateway", config, config.suites[0], inner_request()
            )
            assert stale.status in (400, 422)
            assert not stale.encrypted
            keys.fail()
            assert (await get(session, "/.well-known/ohttp-gateway"))[0] == 503
            assert (await get(session, "/readyz"))[0] == 503

    try:
        run(body())
        scrape = generate_latest(server.metrics.registry).decode()
        assert (
            'ohttp_gateway_requests_total{outcome="ok",profile="none",route="attestation"} 1.0'
            in scrape
        )
        assert "ohttp_gateway_dev_mode 0.0" in scrape
        assert 'ohttp_gateway_attestation_state{state="failed"} 1.0' in scrape
    finally:
        server.stop()
