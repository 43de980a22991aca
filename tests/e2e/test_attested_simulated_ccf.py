"""The simulated provider and the confidential KMS, end to end: a real gateway process attests
to the MAA emulator, has the KMS emulator release its key, becomes ready, serves requests
encrypted to the released key, and publishes an attestation document that binds exactly the key
configs it serves."""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.client.document import parse_document
from gateway.client.policy import AttestationPolicy
from gateway.client.verify import check_key_configs, verify_document
from gateway.emulators.runner import Emulators
from gateway.protocol.keys import decode_key_configs
from gateway.trust.binding import user_data_for
from gateway.trust.token import verify_token
from tests.support.attested_process import AttestedGateway, exchange, get
from tests.support.upstream_double import UpstreamDouble

CCF = {"OHTTP_GATEWAY_KMS_BACKEND": "ccf"}


@pytest.fixture(scope="module")
def gateway(
    emulators: Emulators, double: UpstreamDouble, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AttestedGateway]:
    log = Path(tmp_path_factory.mktemp("gw")) / "gateway.log"
    env = {**emulators.settings(), **CCF}
    gateway = AttestedGateway(env, double.url, log).start()
    gateway.wait_ready()
    yield gateway
    assert gateway.terminate() == 0


def test_ready_and_serves_requests_encrypted_to_the_released_key(
    gateway: AttestedGateway, emulators: Emulators
) -> None:
    status, body = get(gateway.url + "/.well-known/ohttp-gateway")
    assert status == 200
    (config,) = decode_key_configs(body)
    kms = emulators.ccf_kms
    assert kms.latest is not None
    # The served config is byte for byte the one the KMS published (and its receipt binds).
    assert config.encode().hex() == kms.keys[kms.latest].public_key_hex

    assert exchange(gateway.url, config) == 200
    assert gateway.metric("ohttp_gateway_attestation_state", state="attested") == 1
    assert gateway.metric("ohttp_gateway_active_keys", key_id=str(config.key_id)) == 1
    assert gateway.metric("ohttp_gateway_attestation_token_expiry_timestamp_seconds") > time.time()
    assert gateway.metric("ohttp_gateway_trust_request_duration_seconds_count", service="kms") >= 1


def test_attestation_document_binds_the_served_key_configs(
    gateway: AttestedGateway, emulators: Emulators
) -> None:
    _, served = get(gateway.url + "/.well-known/ohttp-gateway")
    status, body = get(gateway.url + "/.well-known/ohttp-gateway/attestation")
    assert status == 200
    document = json.loads(body)
    assert document["version"] == 1
    assert document["dev_mode"] is False
    assert document["evidence_provider"] == "simulated"
    assert document["maa"] == {"issuer": emulators.maa_url, "route": "SevSnpVm"}
    binding = document["binding"]
    assert base64.b64decode(binding["key_configs"]) == served
    assert binding["key_configs_sha256"] == hashlib.sha256(served).hexdigest()
    nonce = base64.b64decode(binding["nonce"])
    assert binding["user_data"] == user_data_for(served, nonce).hex().upper()
    # The token verifies against the emulator's /certs and carries the same user-data.
    jwks = emulators.maa.signer.jwks()
    token = verify_token(document["token"], jwks=jwks, issuer=emulators.maa_url, now=time.time())
    assert token.user_data == bytes.fromhex(binding["user_data"])
    runtime = base64.b64decode(document["evidence"]["runtime_data"])
    assert json.loads(runtime)["user-data"] == binding["user_data"]
    assert document["expires_at"] == token.expires_at > time.time()


def test_the_client_library_verifies_the_document_and_the_served_keys(
    gateway: AttestedGateway, emulators: Emulators
) -> None:
    _, served = get(gateway.url + "/.well-known/ohttp-gateway")
    _, body = get(gateway.url + "/.well-known/ohttp-gateway/attestation")
    policy = AttestationPolicy(
        maa_issuer=emulators.maa_url, amd_roots=(emulators.amd.ark,), allow_simulated=True
    )
    verified = verify_document(
        parse_document(body), policy=policy, jwks=emulators.maa.signer.jwks(), now=time.time()
    )
    (config,) = check_key_configs(verified, served)
    assert exchange(gateway.url, config) == 200


def test_logs_name_each_step_and_never_a_token(gateway: AttestedGateway) -> None:
    logs = gateway.logs()
    steps = [json.loads(line).get("step") for line in logs.splitlines() if "lifecycle_step" in line]
    assert steps[:4] == ["token", "release", "keys", "evidence"]
    assert "ready" in steps
    _, body = get(gateway.url + "/.well-known/ohttp-gateway/attestation")
    token = json.loads(body)["token"]
    assert token.split(".")[2] not in logs
