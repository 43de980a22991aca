"""The MAA emulator: Microsoft Azure Attestation's data plane, as an ASGI app.

Routes (the real service's):

* ``POST /attest/SevSnpVm?api-version=...``: verify the SNP evidence, answer ``{"token": JWT}``;
* ``POST /attest/AzureGuest?api-version=...``: verify the vTPM + SNP evidence, answer
  ``{"token": sealed}`` (the JWT sealed to the certified TPM ephemeral key);
* ``GET /certs``: the JWKS (``x5c`` only); ``GET /.well-known/openid-configuration``.

Accepts an :class:`EvidenceVerifier` (which decides, given a decoded request, what MAA would
decide), a :class:`TokenSigner` and a clock. Guarantees: a refused request gets a 400 with MAA's
CloudError JSON ``{"error": {"code", "message", "innererror": {"code"}}}`` where ``message`` is
the fixed message of our typed error and ``innererror.code`` its class name, so each kind of
tampering is told apart; never a 500 for bad input. ``inject_faults`` makes the next requests
answer 429/5xx, to exercise clients' retries against a real server.

Never: logs evidence or tokens, or issues a token for evidence its verifier refused.
"""

from __future__ import annotations

import collections
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway.emulators.maa_signing import TokenSigner
from gateway.errors import EvidenceError, GatewayError, PolicyViolation, VerificationError
from gateway.trust.maa_wire import AzureGuestRequest, SevSnpVmRequest, seal_token

MAX_REQUEST_BYTES = 512 * 1024
TOKEN_LIFETIME = 8 * 3600  # MAA's: exp - iat = 28800
API_VERSIONS = {
    "SevSnpVm": {"2020-10-01", "2022-08-01", "2022-09-01-preview", "2025-06-01"},
    "AzureGuest": {"2020-10-01"},
}


@dataclass(frozen=True)
class VerifiedGuest:
    """What an accepted AzureGuest request yields: its claims and the key to seal to."""

    claims: dict[str, Any]
    seal_inner_key: Callable[[bytes], bytes] = field(repr=False)


class EvidenceVerifier(Protocol):
    """MAA's decision on decoded evidence: claims, or a GatewayError naming the refusal."""

    def sev_snp_vm(self, request: SevSnpVmRequest) -> dict[str, Any]: ...

    def azure_guest(self, request: AzureGuestRequest) -> VerifiedGuest: ...


class MaaEmulator:
    """One emulated MAA instance; ``app`` is its ASGI application."""

    def __init__(
        self,
        signer: TokenSigner,
        verifier: EvidenceVerifier,
        *,
        clock: Callable[[], float] = time.time,
        token_lifetime: int = TOKEN_LIFETIME,
    ) -> None:
        self.signer = signer
        self.verifier = verifier
        self._clock = clock
        self._lifetime = token_lifetime
        self._faults: collections.deque[int] = collections.deque()
        self.requests_seen = 0
        self.app = Starlette(
            routes=[
                Route("/attest/SevSnpVm", self._sev_snp_vm, methods=["POST"]),
                # confidential-sidecar-containers spells it SevSnpVM; MAA accepts both.
                Route("/attest/SevSnpVM", self._sev_snp_vm, methods=["POST"]),
                Route("/attest/AzureGuest", self._azure_guest, methods=["POST"]),
                Route("/certs", self._certs, methods=["GET"]),
                Route("/.well-known/openid-configuration", self._openid_metadata, methods=["GET"]),
            ]
        )

    def inject_faults(self, *statuses: int) -> None:
        """Answer the next ``len(statuses)`` requests with these statuses (429 or 5xx)."""
        self._faults.extend(statuses)

    def clear_faults(self) -> None:
        self._faults.clear()

    def _fault(self) -> Response | None:
        self.requests_seen += 1
        if not self._faults:
            return None
        status = self._faults.popleft()
        code = "TooManyRequests" if status == 429 else "ServiceUnavailable"
        headers = {"Retry-After": "0"} if status == 429 else None
        return _cloud_error(status, code, "The service is busy; retry later.", headers=headers)

    async def _certs(self, request: Request) -> Response:
        return self._fault() or JSONResponse(self.signer.jwks())

    async def _openid_metadata(self, request: Request) -> Response:
        return self._fault() or JSONResponse(self.signer.openid_metadata())

    async def _sev_snp_vm(self, request: Request) -> Response:
        fault = self._fault() or _check_api_version(request, "SevSnpVm")
        if fault:
            return fault
        try:
            decoded = SevSnpVmRequest.decode(await _body(request))
            body_claims = self.verifier.sev_snp_vm(decoded)
        except GatewayError as error:
            return _refusal(error)
        token = self.signer.sign({**self._envelope(decoded.nonce), **body_claims})
        return JSONResponse({"token": token})

    async def _azure_guest(self, request: Request) -> Response:
        fault = self._fault() or _check_api_version(request, "AzureGuest")
        if fault:
            return fault
        try:
            decoded = AzureGuestRequest.decode(await _body(request))
            verified = self.verifier.azure_guest(decoded)
        except GatewayError as error:
            return _refusal(error)
        token = self.signer.sign({**self._envelope(None), **verified.claims})
        return JSONResponse({"token": seal_token(token, verified.seal_inner_key)})

    def _envelope(self, nonce: str | None) -> dict[str, Any]:
        """The registered claims every MAA token has."""
        now = int(self._clock())
        claims: dict[str, Any] = {
            "exp": now + self._lifetime,
            "iat": now,
            "iss": self.signer.issuer,
            "jti": os.urandom(32).hex(),
            "nbf": now,
        }
        if nonce is not None:
            claims["nonce"] = nonce
        return claims


async def _body(request: Request) -> bytes:
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_REQUEST_BYTES:
            raise EvidenceError("request body too large")
    return bytes(body)


def _check_api_version(request: Request, route: str) -> Response | None:
    version = request.query_params.get("api-version")
    if version is None:
        return _cloud_error(400, "MissingApiVersionParameter", "The api-version is required.")
    if version not in API_VERSIONS[route]:
        return _cloud_error(400, "UnsupportedApiVersion", "The api-version is not supported.")
    return None


def _refusal(error: GatewayError) -> Response:
    if isinstance(error, PolicyViolation):
        code = "PolicyEvaluationError"
    elif isinstance(error, VerificationError):
        code = "AttestationFailure"
    else:
        code = "InvalidParameter"
    return _cloud_error(400, code, error.message, detail=type(error).__name__)


def _cloud_error(
    status: int,
    code: str,
    message: str,
    *,
    detail: str | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    error: dict[str, Any] = {"code": code, "message": message}
    if detail is not None:
        error["innererror"] = {"code": detail}
    return JSONResponse({"error": error}, status_code=status, headers=headers)
