"""The MAA client against a misbehaving service (a real HTTPS server on loopback that answers
badly on purpose): every way an answer can be unusable is a typed error, never a crash."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.emulators.tls import EmulatorTls, ensure_tls
from gateway.errors import AttestationServiceError, GatewayError, VerificationError
from gateway.trust.maa import MaaClient
from gateway.trust.maa_wire import (
    AzureGuestRequest,
    SevSnpVmRequest,
    SnpEvidence,
    TpmEvidence,
)
from gateway.trust.rest import MAX_BODY, RetryPolicy
from tests.support.emulators import serve

REQUEST = SevSnpVmRequest(SnpEvidence(b"report", b"chain"), b"{}")
GUEST = AzureGuestRequest(
    tpm=TpmEvidence(b"c", b"p", b"q", b"s", ((0, bytes(32)),), b"e", b"i", b"g"),
    snp=SnpEvidence(b"report", b"chain"),
    runtime_data=b"{}",
)


@pytest.fixture(scope="module")
def emulator_tls(tmp_path_factory: pytest.TempPathFactory) -> EmulatorTls:
    return ensure_tls(Path(tmp_path_factory.mktemp("bad-maa-tls")))


def _answering(status: int, body: bytes, headers: dict[str, str] | None = None) -> Starlette:
    async def answer(request: Request) -> Response:
        return Response(body, status_code=status, headers=headers, media_type="application/json")

    paths = [
        "/attest/SevSnpVm",
        "/attest/AzureGuest",
        "/certs",
        "/.well-known/openid-configuration",
    ]
    return Starlette(routes=[Route(p, answer, methods=["GET", "POST"]) for p in paths])


def _call(
    tls: EmulatorTls, app: Starlette, call: Callable[[MaaClient], Awaitable[object]]
) -> object:
    async def go(url: str) -> object:
        retry = RetryPolicy(attempts=2, base_delay=0.0, max_delay=0.0)
        async with MaaClient(url, ca_bundle=tls.ca_path, retry=retry) as maa:
            return await call(maa)

    with serve(lambda url: app, tls) as served:
        return asyncio.run(go(served.url))


def _attest(maa: MaaClient) -> Awaitable[str]:
    return maa.attest_sev_snp_vm(REQUEST)


def _guest(maa: MaaClient) -> Awaitable[str]:
    return maa.attest_azure_guest(GUEST, lambda sealed: bytes(32))


def _keys(maa: MaaClient) -> Awaitable[object]:
    return maa.signing_keys()


def _metadata(maa: MaaClient) -> Awaitable[object]:
    return maa.openid_metadata()


@pytest.mark.parametrize(
    ("status", "body", "call", "error", "message"),
    [
        (200, b'{"token": "not a jwt"}', _attest, AttestationServiceError, "malformed token"),
        (200, b'{"token": 42}', _attest, VerificationError, "no token"),
        (200, b"<html>", _attest, VerificationError, "no token"),
        (200, b'{"token": "a.b.c"}', _guest, VerificationError, "sealed attestation token"),
        (200, b'{"keys": "none"}', _keys, AttestationServiceError, "signing keys are malformed"),
        (200, b'{"keys": [1]}', _keys, AttestationServiceError, "signing keys are malformed"),
        (200, b"[]", _metadata, AttestationServiceError, "malformed JSON"),
        (302, b"", _keys, AttestationServiceError, "answered unexpectedly"),
        (404, b"", _keys, AttestationServiceError, "refused"),
        (200, b" " * (MAX_BODY + 1), _keys, AttestationServiceError, "too large"),
    ],
)
def test_unusable_answers_are_typed_errors(
    emulator_tls: EmulatorTls,
    status: int,
    body: bytes,
    call: Callable[[MaaClient], Awaitable[object]],
    error: type[GatewayError],
    message: str,
) -> None:
    with pytest.raises(error, match=message):
        _call(emulator_tls, _answering(status, body), call)


def test_a_sealed_answer_the_tpm_key_does_not_open_is_refused(emulator_tls: EmulatorTls) -> None:
    from gateway.trust.maa_wire import seal_token

    sealed = seal_token("a.b.c", lambda inner_key: inner_key)  # "encrypted" to nobody
    app = _answering(200, json.dumps({"token": sealed}).encode())
    with pytest.raises(VerificationError, match="did not open"):
        _call(emulator_tls, app, _guest)  # the callable hands back the wrong inner key
