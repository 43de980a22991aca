"""THIM's VCEK chain: parsing its JSON (fuzzed), and fetching it from the IMDS double over HTTP."""

from __future__ import annotations

import asyncio
import datetime
import json

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from gateway.emulators.thim import THIM_PATH, thim_app
from gateway.errors import EvidenceError
from gateway.trust.rest import RetryPolicy
from gateway.trust.thim import fetch_vcek_chain, parse_thim_response
from tests.support.emulators import serve
from tests.support.fuzzing import assert_parses_or_raises_ours, cases

TCBM = 0x7308000000000003


def _pem(name: str) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


VCEK, ASK, ARK = _pem("VCEK"), _pem("SEV-Milan"), _pem("ARK-Milan")


def _document(**overrides: object) -> bytes:
    document = {
        "vcekCert": VCEK.decode(),
        "tcbm": f"{TCBM:016X}",
        "certificateChain": (ASK + ARK).decode(),
        "cacheControl": "86400",
    }
    document.update(overrides)
    return json.dumps(document).encode()


def test_parses_thim_json() -> None:
    chain = parse_thim_response(_document())
    assert chain.vcek_pem == VCEK
    assert chain.chain_pem == ASK + ARK
    assert chain.pem() == VCEK + ASK + ARK
    assert chain.tcbm == TCBM


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"<html>", "not JSON"),
        (b"[]", "not a JSON object"),
        (_document(vcekCert=None), "lacks vcekCert"),
        (_document(tcbm="73080000"), "16 hex digits"),
        (_document(vcekCert=(VCEK + ASK).decode()), "exactly one certificate"),
        (_document(certificateChain=ASK.decode()), "the ASK and the ARK"),
        (_document(vcekCert="-----BEGIN CERTIFICATE-----\n@@@@\n-----END CERTIFICATE-----"), "one"),
        (_document(vcekCert=VCEK.decode().replace("MII", "NII", 1)), "not DER"),
    ],
)
def test_refuses_malformed_answers(body: bytes, message: str) -> None:
    with pytest.raises(EvidenceError, match=message):
        parse_thim_response(body)


def test_fuzz_parse_thim_response() -> None:
    for data in cases([_document()], count=3000, seed=4):
        assert_parses_or_raises_ours(parse_thim_response, data)


def test_fetches_from_the_imds_double_with_the_metadata_header() -> None:
    with serve(lambda url: thim_app(_document()), None) as served:
        chain = asyncio.run(fetch_vcek_chain(served.url + THIM_PATH))
    assert chain.pem() == VCEK + ASK + ARK
    assert chain.tcbm == TCBM


def test_imds_double_refuses_requests_without_the_metadata_header() -> None:
    async def get(url: str, headers: dict[str, str]) -> tuple[int, object]:
        async with aiohttp.ClientSession() as session, session.get(url, headers=headers) as r:
            return r.status, await r.json()

    with serve(lambda url: thim_app(_document()), None) as served:
        url = served.url + THIM_PATH
        status, body = asyncio.run(get(url, {}))
        assert status == 400
        assert body == {"error": "Bad request. Required metadata header not specified"}
        proxied = {"Metadata": "true", "X-Forwarded-For": "10.0.0.1"}
        assert asyncio.run(get(url, proxied))[0] == 400


def test_fetch_maps_a_refusal_and_an_unreachable_imds_to_evidence_errors() -> None:
    with serve(lambda url: thim_app(_document()), None) as served:
        with pytest.raises(EvidenceError, match="refused"):
            asyncio.run(fetch_vcek_chain(served.url + "/metadata/THIM/amd/unknown"))
        dead_url = served.url
    fast = RetryPolicy(attempts=2, base_delay=0.0, max_delay=0.0)
    with pytest.raises(EvidenceError, match="unreachable"):
        asyncio.run(fetch_vcek_chain(dead_url + THIM_PATH, retry=fast))
