"""Key configs from Azure's confidential KMS (``/app/listpubkeys``, the emulator over HTTPS):
used only with their ledger receipts verified; a tampered receipt is refused and nothing is sent.
The attestation document must still bind exactly the KMS's key config."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.client.session import ClientSettings, Head, KmsSource, OhttpClient
from gateway.emulators.tls import ensure_tls
from gateway.errors import KeyConfigsChanged, ReceiptSignatureInvalid
from gateway.protocol.keys import KeyConfig, encode_key_configs
from gateway.trust.evidence.simulated import SimulatedAmd
from gateway.trust.kms.ccf import KMS_SUITES
from tests.client.test_cli import ohttp_client
from tests.support.attested_gateway import AttestationWorld, GatewayTap
from tests.support.kms_world import World, running_world


@pytest.fixture(scope="module")
def kms(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[World, Path]]:
    state = Path(tmp_path_factory.mktemp("client-kms"))
    amd = SimulatedAmd.generate(rsa_bits=2048)
    with running_world(amd, ensure_tls(state), state) as world:
        world.kms.refresh()
        cert = state / "kms-service.pem"
        cert.write_text(world.ledger.service_cert_pem())
        yield world, cert


@pytest.fixture(autouse=True)
def _clear(kms: tuple[World, Path]) -> Iterator[None]:
    yield
    kms[0].kms.faults.clear()


def _kms_keys(world: World) -> bytes:
    latest = world.kms.keys[world.kms.latest or 0]
    return encode_key_configs([KeyConfig.decode(bytes.fromhex(latest.public_key_hex))])


def test_keys_from_the_kms_with_receipts_verified(kms: tuple[World, Path]) -> None:
    world, cert = kms
    args = ("keys", "--gateway", "http://127.0.0.1:1", "--kms", world.urls["kms"])
    done = ohttp_client(*args, "--kms-cert", str(cert))
    assert done.returncode == 0, done.stderr
    listed = json.loads(done.stdout)
    assert listed["verified_receipts"] is True
    (config,) = listed["key_configs"]
    assert config["key_id"] == world.kms.latest
    assert config["kem"] == "P384_SHA384"
    assert config["suites"] == ["HKDF_SHA384/AES_256_GCM"]
    assert len(KMS_SUITES) == 1


def test_a_tampered_receipt_is_refused(kms: tuple[World, Path]) -> None:
    world, cert = kms
    world.kms.faults.add("tamper_receipt")
    args = ("keys", "--gateway", "http://127.0.0.1:1", "--kms", world.urls["kms"])
    done = ohttp_client(*args, "--kms-cert", str(cert))
    assert done.returncode == 3
    assert done.stderr.strip().endswith("[ReceiptSignatureInvalid]")
    assert len(done.stderr.strip().splitlines()) == 1


def test_the_client_refuses_to_send_with_a_tampered_receipt(
    kms: tuple[World, Path], world: AttestationWorld, gateway: Any
) -> None:
    kms_world, cert = kms
    document = world.document(_kms_keys(kms_world))
    source = KmsSource(kms_world.urls["kms"], cert)
    with GatewayTap(gateway.url, document) as tap:
        settings = ClientSettings(gateway.url, world.policy(), relay=tap.url, kms=source)

        async def verify() -> int:
            async with OhttpClient(settings) as client:
                return (await client.verified()).configs[0].key_id

        # The document binds the KMS's key config: verified.
        assert asyncio.run(verify()) == kms_world.kms.latest
        kms_world.kms.faults.add("tamper_receipt")

        async def send() -> None:
            async with OhttpClient(settings) as client:
                await client.send(Head(b"GET", b"/v1/models"), b"")

        with pytest.raises(ReceiptSignatureInvalid):
            asyncio.run(send())
        assert not [seen for seen in tap.seen if seen.method == "POST"]


def test_a_document_for_other_keys_than_the_kms_publishes_is_refused(
    kms: tuple[World, Path], world: AttestationWorld, gateway: Any, gateway_keys: bytes
) -> None:
    kms_world, cert = kms
    with GatewayTap(gateway.url, world.document(gateway_keys)) as tap:
        source = KmsSource(kms_world.urls["kms"], cert)
        settings = ClientSettings(gateway.url, world.policy(), relay=tap.url, kms=source)

        async def verify() -> None:
            async with OhttpClient(settings) as client:
                await client.verified()

        with pytest.raises(KeyConfigsChanged):
            asyncio.run(verify())
