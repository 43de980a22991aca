"""The emulators' CA and server certificate, and real HTTPS verified against that CA."""

from __future__ import annotations

import asyncio
import ipaddress
import stat
from pathlib import Path

import pytest
from cryptography import x509
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from gateway.emulators.tls import EmulatorTls, ensure_tls
from gateway.errors import AttestationServiceError
from gateway.trust.rest import RestClient, RetryPolicy
from tests.support.emulators import serve


def _hello_app(url: str) -> Starlette:
    async def hello(request: object) -> JSONResponse:
        return JSONResponse({"url": url})

    return Starlette(routes=[Route("/hello", hello)])


def test_generates_ca_and_loopback_server_certificate(tmp_path: Path) -> None:
    tls = ensure_tls(tmp_path)
    ca = x509.load_pem_x509_certificate(tls.ca_path.read_bytes())
    server = x509.load_pem_x509_certificate(tls.cert_path.read_bytes())
    server.verify_directly_issued_by(ca)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["localhost"]
    assert set(names.get_values_for_type(x509.IPAddress)) == {
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    }
    assert stat.S_IMODE(tls.key_path.stat().st_mode) == 0o600


def test_reuses_a_valid_set_and_replaces_a_broken_one(tmp_path: Path) -> None:
    first = ensure_tls(tmp_path)
    ca_pem = first.ca_path.read_bytes()
    assert ensure_tls(tmp_path).ca_path.read_bytes() == ca_pem
    first.cert_path.write_bytes(b"not a certificate")
    assert ensure_tls(tmp_path).ca_path.read_bytes() != ca_pem


def test_https_is_verified_against_the_generated_ca(emulator_tls: EmulatorTls) -> None:
    async def get(url: str, ca: Path | None) -> tuple[int, int]:
        async with RestClient(error=AttestationServiceError, ca_bundle=ca) as client:
            response = await client.request("GET", f"{url}/hello")
            return response.status, client.attempts_made

    with serve(_hello_app, emulator_tls) as served:
        assert served.url.startswith("https://127.0.0.1:")
        assert asyncio.run(get(served.url, emulator_tls.ca_path)) == (200, 1)


def test_an_untrusted_certificate_fails_closed_without_retrying(
    emulator_tls: EmulatorTls,
) -> None:
    client = RestClient(error=AttestationServiceError, retry=RetryPolicy(attempts=3))

    async def get(url: str) -> None:
        async with client:
            await client.request("GET", f"{url}/hello")

    with (
        serve(_hello_app, emulator_tls) as served,
        pytest.raises(AttestationServiceError, match="TLS verification"),
    ):
        asyncio.run(get(served.url))
    assert client.attempts_made == 1
