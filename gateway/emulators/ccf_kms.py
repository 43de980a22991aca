"""The confidential-KMS emulator: Microsoft's azure-transparent-kms (a CCF app), over HTTPS.

Routes (the KMS's, under ``/app``, plus CCF's ``/node/network``):

* ``POST /app/refresh``: create a new P-384 key (kid = (count + 1) % 256, as the KMS does); its
  ledger transaction's claims digest is SHA-256 of its public key hex; answers ``{"kid",
  "publicKey"}``. Unauthenticated here (the real one is a governance-gated call): loopback only;
* ``GET /app/listpubkeys``: ``[{"publicKey": hex, "receipt": JSON text}]`` for the latest key;
* ``POST /app/key?kid=N&encrypted=true`` with ``Authorization: Bearer <MAA token>``: the token
  must come from an authority of the release policy and verify against its ``/certs``, and its
  claims must satisfy the policy; the COSE_Key is wrapped with RSA-OAEP-SHA256 to the token's
  runtime RSA key (``TpmEphemeralEncryptionKey`` if present, else the first); answers
  ``{"kid", "key": base64, "receipt": JSON text}``;
* ``GET /app/keyReleasePolicy``; ``GET /node/network`` -> ``{"service_certificate": PEM}``.

Guarantees: ``encrypted`` other than ``true`` is refused (400): this emulator never releases a
key in clear, unlike the reference KMS's default; after a refresh, ``pending_polls`` requests
answer 202 (receipt not committed yet), to exercise clients' bounded retries; errors are CCF's
``{"error": {"code", "message"}}``, never a 500 for bad input. :attr:`faults`
(``"tamper_receipt"``, ``"corrupt_wrapped_key"``, ``"ignore_encrypted"``: answer like the reference
KMS with the key in clear) break answers on purpose, to prove clients refuse them.
Never: logs tokens or keys.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway.emulators.attestation_tokens import TokenVerifier
from gateway.emulators.ccf_ledger import Ledger
from gateway.emulators.release_policy import ReleasePolicy
from gateway.errors import GatewayError, TokenIssuerMismatch
from gateway.trust.jwk import rsa_public_key_from_jwk
from gateway.trust.kms.ccf import kms_public_key_hex
from gateway.trust.kms.cose import encode_cose_key
from gateway.trust.receipts import public_key_claims_digest

TPM_KEY_ID = "TpmEphemeralEncryptionKey"
_KID = re.compile(r"\d{1,3}")


@dataclass
class KmsKey:
    kid: int
    private_key: ec.EllipticCurvePrivateKey = field(repr=False)
    public_key_hex: str
    transaction: int


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status)


def _wrapping_key(claims: Any) -> rsa.RSAPublicKey | None:
    runtime = claims.get("x-ms-runtime")
    keys = runtime.get("keys") if isinstance(runtime, dict) else None
    candidates = [k for k in keys if isinstance(k, dict)] if isinstance(keys, list) else []
    candidates.sort(key=lambda jwk: jwk.get("kid") != TPM_KEY_ID)
    for jwk in candidates:
        try:
            return rsa_public_key_from_jwk(jwk)
        except GatewayError:
            continue
    return None


class CcfKmsEmulator:
    """One emulated KMS; ``app`` is its ASGI application."""

    def __init__(
        self,
        ledger: Ledger,
        tokens: TokenVerifier,
        policy: ReleasePolicy,
        *,
        pending_polls: int = 0,
    ) -> None:
        self.ledger, self.tokens, self.policy = ledger, tokens, policy
        self.pending_polls = pending_polls
        self._pending = 0
        self.keys: dict[int, KmsKey] = {}
        self.latest: int | None = None
        self.faults: set[str] = set()
        self.releases = 0
        self.app = Starlette(
            routes=[
                Route("/app/refresh", self._refresh, methods=["POST"]),
                Route("/app/listpubkeys", self._listpubkeys),
                Route("/app/key", self._key, methods=["POST"]),
                Route("/app/keyReleasePolicy", self._policy),
                Route("/node/network", self._network),
            ]
        )

    def refresh(self) -> int:
        """Create and record a new key; returns its kid."""
        kid = (len(self.keys) + 1) % 256
        private_key = ec.generate_private_key(ec.SECP384R1())
        public = private_key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        public_key_hex = kms_public_key_hex(kid, public)
        index = self.ledger.append(public_key_claims_digest(public_key_hex))
        self.keys[kid] = KmsKey(kid, private_key, public_key_hex, index)
        self.latest = kid
        self._pending = self.pending_polls
        return kid

    def _still_pending(self) -> bool:
        if self._pending > 0:
            self._pending -= 1
            return True
        return False

    def _receipt(self, key: KmsKey) -> str:
        receipt = self.ledger.receipt(key.transaction)
        if "tamper_receipt" in self.faults:
            digest = bytearray(bytes.fromhex(receipt["leaf_components"]["write_set_digest"]))
            digest[0] ^= 0x01
            receipt["leaf_components"]["write_set_digest"] = digest.hex()
        return json.dumps(receipt)

    async def _refresh(self, request: Request) -> Response:
        kid = self.refresh()
        return JSONResponse({"kid": kid, "publicKey": self.keys[kid].public_key_hex})

    async def _listpubkeys(self, request: Request) -> Response:
        if self.latest is None:
            return _error(404, "KeyNotFound", "No key has been generated yet.")
        if self._still_pending():
            return Response(status_code=202)
        key = self.keys[self.latest]
        return JSONResponse([{"publicKey": key.public_key_hex, "receipt": self._receipt(key)}])

    async def _policy(self, request: Request) -> Response:
        return JSONResponse(dict(self.policy.document))

    async def _network(self, request: Request) -> Response:
        return JSONResponse({"service_certificate": self.ledger.service_cert_pem()})

    async def _key(self, request: Request) -> Response:
        authorization = request.headers.get("authorization", "")
        if not authorization.startswith("Bearer "):
            return _error(401, "InvalidAuthenticationInfo", "A bearer token is required.")
        kid_text = request.query_params.get("kid", "")
        if not _KID.fullmatch(kid_text) or int(kid_text) not in self.keys:
            return _error(404, "KeyNotFound", "No key with this kid.")
        if (
            request.query_params.get("encrypted") != "true"
            and "ignore_encrypted" not in self.faults
        ):
            return _error(400, "EncryptionRequired", "This KMS releases keys only encrypted.")
        try:
            token = await self.tokens.verify(authorization[7:], self.policy.authorities)
        except TokenIssuerMismatch:
            return _error(401, "InvalidAuthenticationInfo", "The token issuer is not trusted.")
        except GatewayError as error:
            return _error(401, "InvalidAuthenticationInfo", f"The token is not valid: {error}")
        decision = self.policy.evaluate(token.claims, token.issuer)
        if not decision.allowed:
            return _error(
                403, "KeyReleasePolicyNotSatisfied", f"Key release policy: {decision.reason}."
            )
        if self._still_pending():
            return Response(status_code=202)
        return self._release(self.keys[int(kid_text)], token.claims)

    def _release(self, key: KmsKey, claims: Any) -> Response:
        plaintext = encode_cose_key(key.private_key, key.kid)
        if "ignore_encrypted" in self.faults:
            wrapped = plaintext.hex()
        else:
            wrapping = _wrapping_key(claims)
            if wrapping is None:
                return _error(400, "InvalidToken", "The token holds no RSA key to wrap to.")
            sha256 = hashes.SHA256()
            oaep = padding.OAEP(mgf=padding.MGF1(sha256), algorithm=sha256, label=None)
            ciphertext = bytearray(wrapping.encrypt(plaintext, oaep))
            if "corrupt_wrapped_key" in self.faults:
                ciphertext[-1] ^= 0x01
            wrapped = base64.b64encode(bytes(ciphertext)).decode()
        self.releases += 1
        return JSONResponse({"kid": key.kid, "key": wrapped, "receipt": self._receipt(key)})
