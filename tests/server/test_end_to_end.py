"""Through the real gateway process to the backend double, over loopback sockets."""

from __future__ import annotations

import hashlib
import itertools
import json

import aiohttp
import pytest

from gateway.protocol.keys import KeyConfig
from tests.server.conftest import run
from tests.support.gateway_process import GatewayProcess
from tests.support.ohttp_client import (
    header,
    inner_request,
    key_configs,
    post_azure,
    post_chunked,
    post_plain,
)
from tests.support.upstream_double import UpstreamDouble


async def _configs(url: str) -> list[KeyConfig]:
    async with aiohttp.ClientSession() as session:
        return await key_configs(session, url)


def _cases(url: str) -> list[tuple[KeyConfig, object]]:
    return [(config, suite) for config in run(_configs(url)) for suite in config.suites]


def test_keys_are_served_with_cache_control(gateway: GatewayProcess) -> None:
    async def body() -> None:
        async with aiohttp.ClientSession() as session:
            async with session.get(gateway.url + "/.well-known/ohttp-gateway") as response:
                assert response.status == 200
                assert response.headers["content-type"] == "application/ohttp-keys"
                assert "max-age" in response.headers["cache-control"]
            configs = await key_configs(session, gateway.url)
        assert {c.kem_id.name for c in configs} == {"X25519_SHA256", "P384_SHA384"}
        assert all(len(c.suites) == 9 for c in configs)

    run(body())


def test_every_suite_plain_and_chunked(gateway: GatewayProcess, double: UpstreamDouble) -> None:
    async def body() -> None:
        async with aiohttp.ClientSession() as session:
            configs = await key_configs(session, gateway.url)
            for config in configs:
                for suite in config.suites:
                    request = inner_request(content=b"x" * 1000)
                    plain = await post_plain(
                        session, gateway.url + "/gateway", config, suite, request
                    )
                    assert plain.status == 200
                    assert plain.inner is not None
                    assert plain.inner.status == 200
                    assert json.loads(plain.inner.content)["received"] == 1000
                    chunked = await post_chunked(
                        session, gateway.url + "/.well-known/ohttp-gateway", config, suite, request
                    )
                    assert chunked.status == 200
                    assert chunked.inner is not None
                    assert chunked.headers["incremental"] == "?1"
                    assert json.loads(chunked.inner.content)["received"] == 1000

    run(body())


def test_chunked_requests_whose_hdr_and_enc_arrive_in_pieces(gateway: GatewayProcess) -> None:
    """The gateway collects hdr ‖ enc before the key agreement (which P-384 runs in the
    key-agreement child): 9-byte pieces 10 ms apart still open, for every KEM."""

    async def body() -> None:
        async with aiohttp.ClientSession() as session:
            for config in await key_configs(session, gateway.url):
                request = inner_request(content=b"y" * 300)
                answer = await post_chunked(
                    session,
                    gateway.url + "/gateway",
                    config,
                    config.suites[0],
                    request,
                    split_first=9,
                )
                assert answer.status == 200
                assert answer.inner is not None
                assert json.loads(answer.inner.content)["received"] == 300

    run(body())


def test_forwarding_fixes_destination_and_strips_headers(
    gateway: GatewayProcess, double: UpstreamDouble
) -> None:
    async def body() -> None:
        async with aiohttp.ClientSession() as session:
            config = (await key_configs(session, gateway.url))[0]
            extra = (
                (b"host", b"evil.example"),
                (b"x-forwarded-for", b"10.9.8.7"),
                (b"connection", b"x-secret-hop"),
                (b"x-secret-hop", b"1"),
                (b"keep-alive", b"timeout=5"),
                (b"x-kept", b"yes"),
            )
            request = inner_request(
                path=b"/v1/audio/transcriptions?api-version=2024-06-01", headers=extra
            )
            answer = await post_plain(
                session, gateway.url + "/gateway", config, config.suites[0], request
            )
        assert answer.inner is not None
        assert answer.inner.status == 200
        seen = json.loads(answer.inner.content)
        assert seen["query"] == "api-version=2024-06-01"
        headers = seen["headers"]
        assert headers["host"] == f"127.0.0.1:{double.port}"
        for dropped in ("x-forwarded-for", "x-secret-hop", "keep-alive", "connection", "forwarded"):
            assert dropped not in headers
        assert headers["x-kept"] == "yes"
        assert headers["authorization"] == "Bearer inner-token"
        assert "user-agent" not in headers
        assert set(answer.headers) <= {"content-type", "cache-control", "content-length", "date"}

    run(body())


def test_azure_profile_status_in_clear_raw_body(gateway: GatewayProcess) -> None:
    async def body() -> None:
        async with aiohttp.ClientSession() as session:
            configs = await key_configs(session, gateway.url)
            p384 = next(c for c in configs if c.kem_id.name == "P384_SHA384")
            request = inner_request(path=b"/whisper/transcriptions", content=b"y" * 5000)
            ok = await post_azure(session, gateway.url + "/score", p384, p384.suites[0], request)
            assert ok.status == 200
            assert json.loads(ok.body)["received"] == 5000
            teapot = inner_request(path=b"/whisper/transcriptions?status=418")
            refused = await post_azure(
                session, gateway.url + "/score", p384, p384.suites[0], teapot
            )
            assert refused.status == 418
            assert refused.encrypted
            forbidden = inner_request(path=b"/admin")
            denied = await post_azure(
                session, gateway.url + "/score", p384, p384.suites[0], forbidden
            )
            assert denied.status == 403
            assert denied.encrypted

    run(body())


def test_upload_of_25_mib_plain_and_chunked(gateway: GatewayProcess) -> None:
    audio = bytes(range(256)) * (25 * 1024 * 1024 // 256)
    digest = hashlib.sha256(audio).hexdigest()

    async def pieces():  # type: ignore[no-untyped-def]
        for offset in range(0, len(audio), 1 << 20):
            yield audio[offset : offset + (1 << 20)]

    async def body() -> None:
        async with aiohttp.ClientSession() as session:
            config = (await key_configs(session, gateway.url))[0]
            request = inner_request(content=audio)
            plain = await post_plain(
                session, gateway.url + "/gateway", config, config.suites[0], request
            )
            assert plain.inner is not None
            assert plain.inner.status == 200
            assert json.loads(plain.inner.content)["sha256"] == digest
            streamed = inner_request(content=b"")
            chunked = await post_chunked(
                session, gateway.url + "/gateway", config, config.suites[0], streamed, pieces()
            )
            assert chunked.inner is not None
            assert chunked.inner.status == 200
            seen = json.loads(chunked.inner.content)
            assert seen["sha256"] == digest
            assert seen["received"] == len(audio)

    run(body())


def test_sse_events_arrive_one_by_one(gateway: GatewayProcess) -> None:
    async def body() -> None:
        async with aiohttp.ClientSession() as session:
            config = (await key_configs(session, gateway.url))[0]
            request = inner_request(path=b"/v1/audio/transcriptions?sse=5&interval=0.3")
            answer = await post_chunked(
                session, gateway.url + "/gateway", config, config.suites[0], request
            )
        assert answer.inner is not None
        assert answer.inner.status == 200
        assert header(
            answer.inner,
            b"content-type",
        ).startswith(b"text/event-stream")
        event_times = [t for t, data in answer.arrivals if b"data: {" in data]
        assert len(event_times) == 5, answer.arrivals
        gaps = [b - a for a, b in itertools.pairwise(event_times)]
        # Each event arrives when the upstream sends it (0.3 s apart), not all at the end.
        assert all(gap > 0.15 for gap in gaps), gaps
        assert event_times[-1] - event_times[0] > 0.9

    run(body())


@pytest.mark.parametrize("profile", ["plain", "chunked"])
def test_upstream_status_is_encrypted_inside(gateway: GatewayProcess, profile: str) -> None:
    async def body() -> None:
        async with aiohttp.ClientSession() as session:
            config = (await key_configs(session, gateway.url))[0]
            request = inner_request(path=b"/v1/audio/transcriptions?status=503")
            send = post_plain if profile == "plain" else post_chunked
            answer = await send(
                session, gateway.url + "/gateway", config, config.suites[0], request
            )
        assert answer.status == 200
        assert answer.inner is not None
        assert answer.inner.status == 503

    run(body())
