"""Dev mode still serves an attestation document (docs/attestation-document.md): ``dev_mode``
true, simulated evidence binding the dev keys, which the client library accepts only when it is
allowed simulated evidence."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from gateway.client.document import parse_document
from gateway.client.policy import AttestationPolicy
from gateway.client.verify import check_key_configs, verify_document
from gateway.emulators.runner import Emulators
from gateway.errors import GatewayError
from tests.support.attested_process import exchange, get
from tests.support.gateway_process import GatewayProcess
from tests.support.upstream_double import UpstreamDouble


def test_dev_mode_document_binds_the_dev_keys(
    emulators: Emulators, double: UpstreamDouble, tmp_path: Path
) -> None:
    gateway = GatewayProcess(double.url, tmp_path / "gateway.log", env=emulators.settings())
    gateway.start()
    try:
        deadline = time.monotonic() + 20
        while get(gateway.url + "/.well-known/ohttp-gateway/attestation")[0] != 200:
            assert time.monotonic() < deadline, gateway.logs()[-2000:]
            time.sleep(0.05)
        _, served = get(gateway.url + "/.well-known/ohttp-gateway")
        body = get(gateway.url + "/.well-known/ohttp-gateway/attestation")[1]
        assert json.loads(body)["dev_mode"] is True
        document = parse_document(body)
        assert document.key_configs == served
        jwks = emulators.maa.signer.jwks()
        strict = AttestationPolicy(maa_issuer=emulators.maa_url, amd_roots=(emulators.amd.ark,))
        with pytest.raises(GatewayError):
            verify_document(document, policy=strict, jwks=jwks, now=time.time())
        allowed = AttestationPolicy(
            maa_issuer=emulators.maa_url, amd_roots=(emulators.amd.ark,), allow_simulated=True
        )
        verified = verify_document(document, policy=allowed, jwks=jwks, now=time.time())
        configs = check_key_configs(verified, served)
        assert exchange(gateway.url, configs[0]) == 200
    finally:
        assert gateway.terminate() == 0
