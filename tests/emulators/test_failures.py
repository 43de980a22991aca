"""The emulators' own failure paths: loopback-only binding, a server that cannot start, key files
that cannot be written or read, and an oversized attestation request."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from starlette.applications import Starlette

from gateway.emulators.maa import MAX_REQUEST_BYTES, MaaEmulator
from gateway.emulators.maa_signing import TokenSigner
from gateway.emulators.maa_verify import MaaVerifier
from gateway.emulators.runner import load_or_create_simulated_amd
from gateway.emulators.server import BackgroundServers, ServerGroup, bind_loopback
from gateway.emulators.tls import EmulatorTls, write_private
from gateway.errors import ConfigError
from gateway.trust.amd import AmdTrust
from gateway.trust.rest import ssl_context
from tests.support.emulators import serve


@pytest.mark.parametrize("host", ["0.0.0.0", "10.0.0.1", "::"])
def test_only_loopback_addresses_are_bound(host: str) -> None:
    with pytest.raises(ConfigError, match="loopback"):
        bind_loopback(host)


def test_a_port_in_use_is_a_config_error() -> None:
    taken = bind_loopback()
    taken.listen()
    try:
        with pytest.raises(ConfigError, match="cannot bind"):
            bind_loopback(port=taken.getsockname()[1])
    finally:
        taken.close()


def test_a_server_that_cannot_start_is_reported(tmp_path: Path) -> None:
    missing = EmulatorTls(tmp_path / "ca.pem", tmp_path / "none.pem", tmp_path / "none-key.pem")
    group = ServerGroup()
    group.add(Starlette(), bind_loopback(), missing)
    with pytest.raises(ConfigError, match="did not start"), BackgroundServers(group):
        pass


def test_key_files_that_cannot_be_written_or_read(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_bytes(b"")
    with pytest.raises(ConfigError):
        write_private(blocker / "key.pem", b"secret")
    with pytest.raises(ConfigError):
        load_or_create_simulated_amd(blocker / "simulated-amd.pem")
    ec_key = tmp_path / "ec.pem"
    ec_key.write_bytes(
        ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    with pytest.raises(ConfigError, match="not an RSA key"):
        TokenSigner("https://127.0.0.1:1", key_path=ec_key)


def test_an_oversized_attestation_request_is_a_400(emulator_tls: EmulatorTls) -> None:
    def make(url: str) -> Starlette:
        return MaaEmulator(TokenSigner(url), MaaVerifier(AmdTrust.pinned())).app

    async def post(url: str) -> tuple[int, object]:
        connector = aiohttp.TCPConnector(ssl=ssl_context(emulator_tls.ca_path))
        async with (
            aiohttp.ClientSession(connector=connector) as session,
            session.post(
                f"{url}/attest/SevSnpVm?api-version=2022-08-01",
                data=b"{" + b" " * MAX_REQUEST_BYTES + b"}",
            ) as response,
        ):
            return response.status, await response.json()

    with serve(make, emulator_tls) as served:  # type: ignore[arg-type]
        status, body = asyncio.run(post(served.url))
    assert status == 400
    assert body["error"]["code"] == "InvalidParameter"  # type: ignore[index]
    assert body["error"]["message"] == "request body too large"  # type: ignore[index]
