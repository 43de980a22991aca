"""The real openai SDK, unchanged, transcribes through the whole chain on loopback:

SDK → ``ohttp-client proxy`` (verifies, encapsulates) → ``ohttp-gateway relay`` → a tap that
records what reaches the gateway → ``ohttp-gateway serve --dev`` → the PocketSphinx backend.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import pytest

from gateway.demo.backend import SAMPLE_AUDIO, SAMPLE_TEXT
from tests.support.attested_gateway import AttestationWorld, GatewayTap
from tests.support.gateway_process import GatewayProcess
from tests.support.listening import Listening

Chain = tuple[GatewayTap, Listening, Listening]
ALLOWED = {"host", "content-type", "content-length", "incremental", "transfer-encoding"}


@pytest.fixture(scope="module")
def chain(
    tmp_path_factory: pytest.TempPathFactory,
    world: AttestationWorld,
    gateway: GatewayProcess,
    gateway_keys: bytes,
) -> Iterator[Chain]:
    logs = tmp_path_factory.mktemp("chain")
    document = world.document(gateway_keys, dev_mode=True, provider="simulated")
    with GatewayTap(gateway.url, document) as tap:
        relay_args = ("relay", "--gateway", tap.url, "--port", "0")
        with Listening(logs / "relay.log", "gateway.cli", *relay_args) as relay:
            proxy_args = ("proxy", "--gateway", gateway.url, "--relay", relay.url, "--port", "0")
            proxy_args += ("--allow-simulated", "--ca-bundle", str(world.tls.ca_path))
            with Listening(logs / "proxy.log", "gateway.client.cli", *proxy_args) as proxy:
                yield tap, relay, proxy


def _sdk(proxy: Listening) -> openai.OpenAI:
    return openai.OpenAI(base_url=proxy.url + "/v1", api_key="sk-test", max_retries=0, timeout=60)


def test_openai_sdk_transcribes_through_proxy_relay_gateway(chain: Chain) -> None:
    tap, _, proxy = chain
    with SAMPLE_AUDIO.open("rb") as audio:
        result = _sdk(proxy).audio.transcriptions.create(model="whisper-1", file=audio)
    assert result.text == SAMPLE_TEXT
    posts = [seen for seen in tap.seen if seen.method == "POST"]
    assert posts
    assert all(seen.path == "/gateway" for seen in posts)
    assert "SIMULATED" in proxy.output()


def test_openai_sdk_streams_deltas_through_the_chain(chain: Chain) -> None:
    _, _, proxy = chain
    with SAMPLE_AUDIO.open("rb") as audio:
        stream = _sdk(proxy).audio.transcriptions.create(model="whisper-1", file=audio, stream=True)
        events = list(stream)
    deltas = [e.delta for e in events if e.type == "transcript.text.delta"]
    done = [e for e in events if e.type == "transcript.text.done"]
    assert len(done) == 1
    assert done[0].text == SAMPLE_TEXT
    assert len(deltas) > 1
    assert "".join(deltas).strip() == SAMPLE_TEXT


def test_azure_openai_client_with_a_deployment_path(chain: Chain) -> None:
    _, _, proxy = chain
    client = openai.AzureOpenAI(
        azure_endpoint=proxy.url,
        api_key="azure-key",
        api_version="2024-06-01",
        azure_deployment="whisper",
        max_retries=0,
        timeout=60,
    )
    with SAMPLE_AUDIO.open("rb") as audio:
        result = client.audio.transcriptions.create(model="whisper", file=audio)
    assert result.text == SAMPLE_TEXT


def test_response_format_text_passes_through(chain: Chain) -> None:
    _, _, proxy = chain
    with SAMPLE_AUDIO.open("rb") as audio:
        text = _sdk(proxy).audio.transcriptions.create(
            model="whisper-1", file=audio, response_format="text"
        )
    assert str(text).strip() == SAMPLE_TEXT


def test_a_refusal_reaches_the_sdk_as_an_openai_error(chain: Chain) -> None:
    _, _, proxy = chain
    # The gateway's path allowlist refuses /v1/models inside the encrypted exchange.
    with pytest.raises(openai.PermissionDeniedError):
        _sdk(proxy).models.list()


def test_only_the_three_headers_reach_the_gateway(chain: Chain, gateway: Any) -> None:
    tap, _, proxy = chain
    with SAMPLE_AUDIO.open("rb") as audio:
        _sdk(proxy).audio.transcriptions.create(model="whisper-1", file=audio)
    assert tap.seen
    for seen in tap.seen:
        assert set(seen.headers) <= ALLOWED, seen
    assert "sk-test" not in gateway.logs()
