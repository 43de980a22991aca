"""The MAA client against the emulator over real HTTPS: retries on 503/429, refusals that are not
retried, bounded attempts, URL rules, and Azure's own SDK reading /certs and the metadata."""

from __future__ import annotations

import asyncio
import base64
import json
import random
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from azure.core.credentials import AccessToken
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from gateway.emulators.maa import MaaEmulator
from gateway.emulators.maa_signing import TokenSigner
from gateway.emulators.maa_verify import MaaVerifier
from gateway.emulators.tls import EmulatorTls, ensure_tls
from gateway.errors import AttestationRefused, AttestationServiceError, ConfigError
from gateway.trust.binding import report_data_for
from gateway.trust.evidence.simulated import ReportFields, SimulatedAmd
from gateway.trust.maa import MaaClient, maa_base_url
from gateway.trust.maa_wire import SevSnpVmRequest, SnpEvidence
from gateway.trust.rest import RetryPolicy
from tests.support.emulators import serve

FAST = RetryPolicy(attempts=4, base_delay=0.01, max_delay=0.05)
RUNTIME = b'{"keys":[]}'


@pytest.fixture(scope="module")
def emulator_tls(tmp_path_factory: pytest.TempPathFactory) -> EmulatorTls:
    return ensure_tls(Path(tmp_path_factory.mktemp("maa-client-tls")))


@pytest.fixture(scope="module")
def served_maa(
    simulated_amd: SimulatedAmd, emulator_tls: EmulatorTls
) -> Iterator[tuple[str, MaaEmulator]]:
    holder: list[MaaEmulator] = []

    def make(url: str) -> object:
        holder.append(MaaEmulator(TokenSigner(url), MaaVerifier(simulated_amd.trust)))
        return holder[0].app

    with serve(make, emulator_tls) as served:  # type: ignore[arg-type]
        yield served.url, holder[0]


class AnyCredential:
    """/certs and the metadata are anonymous, but Azure's SDK always attaches a bearer token
    (for ``https://attest.azure.net/.default``); the emulator, like MAA, ignores it."""

    def get_token(self, *scopes: str, **kwargs: object) -> AccessToken:
        assert scopes == ("https://attest.azure.net/.default",)
        return AccessToken("unused", int(time.time()) + 3600)


def _request(amd: SimulatedAmd) -> SevSnpVmRequest:
    report = amd.report(ReportFields(report_data=report_data_for(RUNTIME)))
    return SevSnpVmRequest(SnpEvidence(report, amd.cert_chain_pem()), RUNTIME)


def _attest(url: str, ca: Path, request: SevSnpVmRequest, retry: RetryPolicy) -> tuple[str, int]:
    async def go() -> tuple[str, int]:
        async with MaaClient(url, ca_bundle=ca, retry=retry) as maa:
            token = await maa.attest_sev_snp_vm(request)
            return token, maa.attempts_made

    return asyncio.run(go())


def test_retries_503_and_429_then_succeeds(
    served_maa: tuple[str, MaaEmulator], emulator_tls: EmulatorTls, simulated_amd: SimulatedAmd
) -> None:
    url, emulator = served_maa
    emulator.inject_faults(503, 429)
    before = emulator.requests_seen
    token, attempts = _attest(url, emulator_tls.ca_path, _request(simulated_amd), FAST)
    assert token.count(".") == 2
    assert attempts == 3
    assert emulator.requests_seen - before == 3


def test_gives_up_after_the_bounded_number_of_attempts(
    served_maa: tuple[str, MaaEmulator], emulator_tls: EmulatorTls, simulated_amd: SimulatedAmd
) -> None:
    url, emulator = served_maa
    emulator.inject_faults(*[503] * 6)
    before = emulator.requests_seen
    with pytest.raises(AttestationServiceError, match="unavailable after retries"):
        _attest(url, emulator_tls.ca_path, _request(simulated_amd), FAST)
    assert emulator.requests_seen - before == FAST.attempts
    emulator.clear_faults()  # so later tests start clean


def test_a_refusal_is_final_and_carries_maas_error_code(
    served_maa: tuple[str, MaaEmulator], emulator_tls: EmulatorTls, simulated_amd: SimulatedAmd
) -> None:
    url, emulator = served_maa
    request = _request(simulated_amd)
    tampered = SevSnpVmRequest(request.evidence, b'{"keys":[1]}')
    before = emulator.requests_seen
    with pytest.raises(AttestationRefused) as caught:
        _attest(url, emulator_tls.ca_path, tampered, FAST)
    assert emulator.requests_seen - before == 1
    assert (caught.value.code, caught.value.detail) == ("AttestationFailure", "RuntimeDataMismatch")
    assert "keys" not in str(caught.value)


def test_backoff_is_jittered_capped_and_honours_retry_after() -> None:
    policy = RetryPolicy(attempts=5, base_delay=0.5, max_delay=2.0)
    rng = random.Random(1)
    delays = [policy.delay(attempt, None, rng) for attempt in range(1, 6) for _ in range(50)]
    assert all(0 <= d <= 2.0 for d in delays)
    assert len({round(d, 6) for d in delays}) > 200
    assert policy.delay(1, 1.5, rng) == 1.5
    assert policy.delay(1, 60.0, rng) == 2.0
    with pytest.raises(ConfigError):
        RetryPolicy(attempts=0)


def test_signing_keys_and_openid_metadata(
    served_maa: tuple[str, MaaEmulator], emulator_tls: EmulatorTls
) -> None:
    url, _ = served_maa

    async def go() -> tuple[dict[str, object], dict[str, object]]:
        async with MaaClient(url + "/", ca_bundle=emulator_tls.ca_path) as maa:
            return await maa.signing_keys(), await maa.openid_metadata()

    jwks, metadata = asyncio.run(go())
    (key,) = jwks["keys"]  # type: ignore[misc]
    assert set(key) == {"alg", "kid", "kty", "use", "x5c"}
    cert = x509.load_der_x509_certificate(base64.b64decode(key["x5c"][0]))
    assert cert.subject.rfc4514_string() == f"CN={url}"
    assert metadata["issuer"] == url
    assert metadata["jwks_uri"] == f"{url}/certs"


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:1", "https://maa.example/attest", "https://maa.example?x=1", "ftp://x"],
)
def test_maa_url_must_be_a_bare_https_origin(url: str) -> None:
    with pytest.raises(ConfigError):
        maa_base_url(url)
    assert maa_base_url("https://sharedeus.eus.attest.azure.net/") == (
        "https://sharedeus.eus.attest.azure.net"
    )


def test_api_version_is_required_by_the_emulator(
    served_maa: tuple[str, MaaEmulator], emulator_tls: EmulatorTls
) -> None:
    import aiohttp

    from gateway.trust.rest import ssl_context

    async def post(path: str) -> tuple[int, object]:
        connector = aiohttp.TCPConnector(ssl=ssl_context(emulator_tls.ca_path))
        async with (
            aiohttp.ClientSession(connector=connector) as session,
            session.post(served_maa[0] + path, json={}) as response,
        ):
            return response.status, await response.json()

    status, body = asyncio.run(post("/attest/SevSnpVm"))
    assert (status, body["error"]["code"]) == (400, "MissingApiVersionParameter")  # type: ignore[index]
    status, body = asyncio.run(post("/attest/SevSnpVm?api-version=1999-01-01"))
    assert (status, body["error"]["code"]) == (400, "UnsupportedApiVersion")  # type: ignore[index]
    status, body = asyncio.run(post("/attest/SevSnpVm?api-version=2022-08-01"))
    assert (status, body["error"]["code"]) == (400, "InvalidParameter")  # type: ignore[index]


def test_azure_sdk_attestation_client_reads_certs_and_metadata(
    served_maa: tuple[str, MaaEmulator], emulator_tls: EmulatorTls
) -> None:
    """azure-security-attestation 1.0.0 cannot attest SEV-SNP, but its /certs and metadata calls
    work against the emulator over HTTPS with the emulators' CA."""
    from azure.security.attestation import AttestationClient

    url, emulator = served_maa
    client = AttestationClient(url, AnyCredential(), connection_verify=str(emulator_tls.ca_path))
    try:
        metadata = client.get_open_id_metadata()
        signers = client.get_signing_certificates()
    finally:
        client.close()
    assert metadata["issuer"] == url
    assert metadata["jwks_uri"] == f"{url}/certs"
    (signer,) = signers
    assert signer.key_id == emulator.signer.kid
    pem = emulator.signer.certificate.public_bytes(serialization.Encoding.PEM).decode()
    assert signer.certificates[0].strip() == pem.strip()
    assert json.dumps(metadata)


def test_azure_sdk_validates_the_emulators_tokens(
    served_maa: tuple[str, MaaEmulator], emulator_tls: EmulatorTls, simulated_amd: SimulatedAmd
) -> None:
    """Microsoft's own token validation (private in 1.0.0, as the research notes) accepts what the
    emulator signs, with the signers the SDK fetched from /certs, and refuses a forged token."""
    from azure.security.attestation import (
        AttestationClient,
        AttestationToken,
        AttestationTokenValidationException,
    )

    url, _ = served_maa
    token, _ = _attest(url, emulator_tls.ca_path, _request(simulated_amd), FAST)

    client = AttestationClient(url, AnyCredential(), connection_verify=str(emulator_tls.ca_path))
    try:
        signers = client.get_signing_certificates()
    finally:
        client.close()
    checked = AttestationToken(token=token)
    checked._validate_token(signers, validate_issuer=True, issuer=url)
    assert checked.issuer == url
    header, body, signature = token.split(".")
    other = "B" * 8 if signature.endswith("A" * 8) else "A" * 8
    forged = f"{header}.{body}.{signature[:-8]}{other}"
    with pytest.raises(AttestationTokenValidationException):
        AttestationToken(token=forged)._validate_token(signers, validate_issuer=True, issuer=url)
    with pytest.raises(AttestationTokenValidationException):
        checked._validate_token(signers, validate_issuer=True, issuer="https://other.example")
