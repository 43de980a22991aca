"""THIM's VCEK chain, fetched from the IMDS double over plain HTTP with the Metadata header."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import aiohttp
import pytest

from gateway.emulators.thim import THIM_PATH, thim_app
from gateway.errors import EvidenceError, MalformedCertificates
from gateway.trust.evidence.simulated import SimulatedAmd
from gateway.trust.rest import RetryPolicy
from gateway.trust.thim import fetch_vcek_chain
from tests.support.emulators import Served, serve

FAST = RetryPolicy(attempts=2, base_delay=0.0, max_delay=0.0)


@pytest.fixture(scope="module")
def imds(simulated_amd: SimulatedAmd) -> Iterator[Served]:
    with serve(lambda url: thim_app(simulated_amd.thim_bundle()), None) as served:
        yield served


def test_fetches_the_chain_with_the_metadata_header(
    imds: Served, simulated_amd: SimulatedAmd
) -> None:
    chain = asyncio.run(fetch_vcek_chain(imds.url + THIM_PATH))
    assert chain.to_pem() == simulated_amd.cert_chain_pem()
    assert chain.tcbm == simulated_amd.chip.reported_tcb.raw


def test_imds_double_refuses_requests_without_the_metadata_header(imds: Served) -> None:
    async def get(headers: dict[str, str]) -> tuple[int, object]:
        async with (
            aiohttp.ClientSession() as session,
            session.get(imds.url + THIM_PATH, headers=headers) as response,
        ):
            return response.status, await response.json()

    status, body = asyncio.run(get({}))
    assert status == 400
    assert body == {"error": "Bad request. Required metadata header not specified"}
    assert asyncio.run(get({"Metadata": "true", "X-Forwarded-For": "10.0.0.1"}))[0] == 400


def test_a_refusal_is_an_evidence_error(imds: Served) -> None:
    with pytest.raises(EvidenceError, match="refused"):
        asyncio.run(fetch_vcek_chain(imds.url + "/metadata/THIM/amd/unknown"))


def test_an_unreachable_imds_is_retried_then_an_evidence_error(imds: Served) -> None:
    with serve(lambda url: thim_app(b"{}"), None) as gone:
        dead = gone.url
    with pytest.raises(EvidenceError, match="unreachable"):
        asyncio.run(fetch_vcek_chain(dead + THIM_PATH, retry=FAST))


@pytest.mark.parametrize(
    ("document", "error"),
    [
        (b"<html>", MalformedCertificates),
        (json.dumps({"vcekCert": "x", "certificateChain": "y"}).encode(), MalformedCertificates),
    ],
)
def test_malformed_answers_are_evidence_errors(document: bytes, error: type[Exception]) -> None:
    with serve(lambda url: thim_app(document), None) as served, pytest.raises(error):
        asyncio.run(fetch_vcek_chain(served.url + THIM_PATH))


def test_a_chain_without_ask_and_ark_is_refused(simulated_amd: SimulatedAmd) -> None:
    document = json.loads(simulated_amd.thim_bundle())
    document["certificateChain"] = ""
    with (
        serve(lambda url: thim_app(json.dumps(document).encode()), None) as served,
        pytest.raises(EvidenceError, match="ASK or the ARK"),
    ):
        asyncio.run(fetch_vcek_chain(served.url + THIM_PATH))
