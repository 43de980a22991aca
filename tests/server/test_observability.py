"""Logs never carry secrets; metrics follow docs/metrics.md and pass `promtool check metrics`."""

from __future__ import annotations

import base64
import dataclasses
import json
import re
import shutil
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.protocol import bhttp, ohttp
from gateway.server.keysource import dev_key_ring
from tests.server.conftest import run
from tests.support.gateway_process import DEV_SEED, GatewayProcess, module_gateway
from tests.support.ohttp_client import (
    inner_request,
    key_configs,
    post_azure,
    post_chunked,
    post_plain,
)
from tests.support.upstream_double import UpstreamDouble

SECRET = "s3cr3t-canary-7f4e1d"
SECRET_BYTES = SECRET.encode()

DOC = Path(__file__).resolve().parents[2] / "docs" / "metrics.md"


@pytest.fixture(scope="module")
def logged_gateway(
    double: UpstreamDouble, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayProcess]:
    with module_gateway(
        double.url,
        tmp_path_factory,
        "logged",
        *("--upstream-read-timeout", "1", "--log-level", "debug"),
        clean_exit=False,
    ) as process:
        yield process


async def _drain(request: Any) -> None:
    """Finish an exchange whose answer does not matter, releasing its connection."""
    async with request as response:
        await response.read()


def _secret_request(path: bytes = b"/v1/audio/transcriptions", **kw: object) -> bhttp.Request:
    headers = (
        (b"authorization", b"Bearer " + SECRET_BYTES),
        (b"x-secret", SECRET_BYTES),
        (b"cookie", b"session=" + SECRET_BYTES),
    )
    return dataclasses.replace(
        inner_request(path=path, content=b"audio:" + SECRET_BYTES, headers=headers),
        authority=SECRET_BYTES + b".example",
        **kw,  # type: ignore[arg-type]
    )


def test_no_secret_reaches_the_logs(logged_gateway: GatewayProcess) -> None:
    url = logged_gateway.url
    secret_path = b"/v1/audio/transcriptions?token=" + SECRET_BYTES
    routes = [
        _secret_request(),
        _secret_request(path=secret_path),
        _secret_request(path=b"/" + SECRET_BYTES),  # 403
        _secret_request(method=b"DELETE"),  # 405
        _secret_request(path=b"/v1/audio/transcriptions?status=500"),
        _secret_request(path=b"/v1/audio/transcriptions?hang=1"),  # 504
        _secret_request(path=b"/v1/audio/transcriptions?sse=3&interval=0.01"),
        _secret_request(headers=((b"date", SECRET_BYTES),)),  # date problem
        _secret_request(headers=((b"expect", SECRET_BYTES),)),
    ]

    async def body() -> None:
        outer = {"x-outer": SECRET, "authorization": "Bearer " + SECRET}
        async with aiohttp.ClientSession(headers=outer) as session:
            configs = await key_configs(session, url)
            for config in configs:
                suite = config.suites[0]
                for request in routes:
                    await post_plain(session, url + "/gateway", config, suite, request)
                    await post_chunked(session, url + "/gateway", config, suite, request)
                    azure = dataclasses.replace(request, path=b"/whisper/transcriptions")
                    await post_azure(session, url + "/score", config, suite, azure)
                # Garbage BHTTP with the secret inside, encrypted: an encapsulated 400.
                sealed, _ = ohttp.encapsulate_request(config, suite, b"\xff" + SECRET_BYTES)
                await _drain(
                    session.post(
                        url + "/gateway", data=sealed, headers={"content-type": "message/ohttp-req"}
                    )
                )
            # Clear errors with the secret in the outer request.
            for media in ("message/ohttp-req", "text/" + SECRET, "message/ohttp-chunked-req"):
                await _drain(
                    session.post(
                        url + "/gateway", data=SECRET_BYTES * 3, headers={"content-type": media}
                    )
                )
                await _drain(
                    session.post(
                        url + "/score", data=SECRET_BYTES * 3, headers={"content-type": media}
                    )
                )
            await _drain(session.get(url + "/" + SECRET))
            await _drain(session.get(url + "/readyz?" + SECRET))
            await _drain(session.get(url + "/.well-known/ohttp-gateway?" + SECRET))

    run(body())
    logged_gateway.terminate()
    output = logged_gateway.logs()
    assert '"request"' in output  # the requests were logged, just not their content
    ring = dev_key_ring(DEV_SEED.encode())
    forbidden = [SECRET, base64.b64encode(SECRET_BYTES).decode(), SECRET_BYTES.hex(), DEV_SEED]
    for key_id in ring.key_ids:
        raw = ring.get(key_id).private_key.to_private_bytes()
        forbidden += [raw.hex(), base64.b64encode(raw).decode()]
    for needle in forbidden:
        assert needle not in output
    for line in output.splitlines():
        json.loads(line)  # every line is JSON


def _scrape(gateway: GatewayProcess) -> str:
    with urllib.request.urlopen(gateway.metrics_url, timeout=5) as response:  # noqa: S310 - loopback
        return response.read().decode()


def test_metrics_follow_the_contract_and_pass_promtool(gateway: GatewayProcess) -> None:
    async def traffic() -> None:
        async with aiohttp.ClientSession() as session:
            config = (await key_configs(session, gateway.url))[0]
            await post_plain(
                session, gateway.url + "/gateway", config, config.suites[0], inner_request()
            )
            await post_chunked(
                session, gateway.url + "/gateway", config, config.suites[0], inner_request()
            )
            await _drain(
                session.post(
                    gateway.url + "/gateway", data=b"x", headers={"content-type": "text/plain"}
                )
            )

    run(traffic())
    scrape = _scrape(gateway)
    documented = set(re.findall(r"^\| `(ohttp_gateway_[a-z_]+)`", DOC.read_text(), re.M))
    assert len(documented) >= 18
    exposed = set(re.findall(r"^# TYPE (\S+) ", scrape, re.M))
    for name in documented:
        base = name.removesuffix("_total")
        assert base in exposed or name in exposed, name
    assert 'ohttp_gateway_requests_total{outcome="ok",profile="ohttp",route="gateway"}' in scrape
    assert 'ohttp_gateway_requests_total{outcome="ok",profile="chunked",route="gateway"}' in scrape
    assert 'ohttp_gateway_decapsulation_failures_total{reason="media_type"}' in scrape
    assert 'ohttp_gateway_upstream_responses_total{status_class="2xx"}' in scrape
    assert "ohttp_gateway_dev_mode 1.0" in scrape
    assert 'ohttp_gateway_active_keys{key_id="1"} 1.0' in scrape
    assert 'ohttp_gateway_attestation_state{state="dev"} 1.0' in scrape
    for phase in ("decapsulate", "upstream", "encapsulate"):
        assert f'ohttp_gateway_phase_duration_seconds_count{{phase="{phase}"}}' in scrape
    promtool = shutil.which("promtool")
    assert promtool is not None, "promtool missing: run scripts/system-deps"
    checked = subprocess.run(
        [promtool, "check", "metrics"], input=scrape, capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.strip() == ""
    assert checked.stderr.strip() == ""
