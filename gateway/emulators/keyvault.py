"""The Key Vault / Managed HSM emulator: Secure Key Release, as the real SDK drives it.

Route: ``POST /keys/{name}/release``, ``/keys/{name}/{version}/release`` and the SDK's
``/keys/{name}//release`` (empty version segment), with ``?api-version=``; body
``{"target": <MAA token>, "nonce"?, "enc"?}``; answer ``{"value": <JWS>}``.

Accepts its own URL, an :class:`EntraEmulator` (whose access tokens it accepts), a
:class:`TokenVerifier` (how it checks MAA tokens) and a :class:`ReleaseSigner`. Guarantees, in the
order Key Vault applies them:

1. no ``Authorization``: 401 with the challenge ``Bearer authorization="<entra>/<tenant>",
   resource="https://vault.azure.net"`` (the SDK's body-less first request gets this);
2. an access token that is not this tenant's for the vault resource: 401; a client without the
   ``release`` permission: 403 ``Forbidden``;
3. unknown key: 404 ``KeyNotFound``; bad body or ``enc``: 400 ``BadParameter``;
4. the MAA token must come from an authority of the key's release policy (else 403), verify
   against that authority's ``/certs`` (else 400), and satisfy the policy's conditions (else 403,
   whose message names the failed claim and operator);
5. the key (PKCS#8 of an EC-HSM key) is wrapped (:func:`wrap_key_hsm`) to the first RSA key of
   the token's ``x-ms-runtime.keys`` with the requested ``enc`` (default CKM_RSA_AES_KEY_WRAP),
   and the §5.2 payload is signed as an RS256 JWS whose ``x5c`` leaf names the vault host; the
   payload's key carries the versioned ``kid`` and the version's ``tags``, as Key Vault's does.

Errors are Key Vault's ``{"error": {"code", "message"}}``, never a 500 for bad input.
:attr:`faults` (``"bad_signature"``, ``"corrupt_wrapped_key"``) break the next answers on purpose,
to prove clients refuse them. Never: logs tokens or keys.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway.emulators.attestation_tokens import TokenVerifier
from gateway.emulators.entra import EntraEmulator
from gateway.emulators.keyvault_signing import ReleaseSigner
from gateway.emulators.release_policy import ReleasePolicy
from gateway.errors import GatewayError, TokenIssuerMismatch
from gateway.trust.jwk import rsa_public_key_from_jwk
from gateway.trust.kms.skr import ENC_HASHES, b64url, b64url_decode, wrap_key_hsm

RESOURCE = "https://vault.azure.net"
DEFAULT_ENC = "CKM_RSA_AES_KEY_WRAP"
MAX_BODY = 256 * 1024
_CURVES = {"P-256": ec.SECP256R1, "P-384": ec.SECP384R1}


@dataclass
class VaultKey:
    """One version of an exportable EC-HSM key with its release policy."""

    name: str
    version: str
    curve: str
    private_key: ec.EllipticCurvePrivateKey = field(repr=False)
    policy: ReleasePolicy
    created: int
    tags: dict[str, str] = field(default_factory=dict)


def _error(status: int, code: str, message: str, **headers: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status, headers=headers)


def _wrapping_key(claims: Any) -> tuple[str, rsa.RSAPublicKey] | None:
    runtime = claims.get("x-ms-runtime")
    keys = runtime.get("keys") if isinstance(runtime, dict) else None
    for jwk in keys if isinstance(keys, list) else []:
        if isinstance(jwk, dict) and jwk.get("kty") == "RSA" and isinstance(jwk.get("kid"), str):
            try:
                return jwk["kid"], rsa_public_key_from_jwk(jwk)
            except GatewayError:
                continue
    return None


def _corrupt_key_hsm(key_hsm: str) -> str:
    blob = json.loads(b64url_decode(key_hsm))
    ciphertext = bytearray(b64url_decode(blob["ciphertext"]))
    ciphertext[-1] ^= 0x01
    blob["ciphertext"] = b64url(bytes(ciphertext))
    return b64url(json.dumps(blob).encode())


def _break_signature(jws: str) -> str:
    head, payload, signature = jws.split(".")
    middle = len(signature) // 2
    flipped = "A" if signature[middle] != "A" else "B"
    return ".".join((head, payload, signature[:middle] + flipped + signature[middle + 1 :]))


class KeyVaultEmulator:
    """One emulated vault; ``app`` is its ASGI application, served at ``url``."""

    def __init__(
        self,
        url: str,
        entra: EntraEmulator,
        tokens: TokenVerifier,
        signer: ReleaseSigner,
        *,
        release_clients: set[str] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.url = url.rstrip("/")
        self.entra, self.tokens, self.signer = entra, tokens, signer
        self.release_clients = release_clients
        self._clock = clock
        self.keys: dict[str, list[VaultKey]] = {}
        self.faults: set[str] = set()
        self.releases = 0
        self.app = Starlette(routes=[Route("/keys/{rest:path}", self._keys, methods=["POST"])])

    def create_key(
        self,
        name: str,
        policy: ReleasePolicy,
        curve: str = "P-384",
        tags: dict[str, str] | None = None,
    ) -> str:
        """A new exportable EC-HSM version of ``name`` with ``tags``; returns the version id."""
        version = uuid.uuid4().hex
        private_key = ec.generate_private_key(_CURVES[curve]())
        created = int(self._clock())
        key = VaultKey(name, version, curve, private_key, policy, created, dict(tags or {}))
        self.keys.setdefault(name, []).append(key)
        return version

    def set_release_policy(self, name: str, policy: ReleasePolicy) -> None:
        """Replace the policy of every version of ``name`` (a mutable policy, as in Azure)."""
        for key in self.keys[name]:
            key.policy = policy

    def _challenge(self) -> dict[str, str]:
        value = f'Bearer authorization="{self.entra.authority}", resource="{RESOURCE}"'
        return {"WWW-Authenticate": value}

    async def _keys(self, request: Request) -> Response:
        parts = request.path_params["rest"].split("/")
        if len(parts) not in (2, 3) or parts[-1] != "release" or not parts[0]:
            return _error(404, "NotFound", "The requested operation is not supported.")
        if "api-version" not in request.query_params:
            return _error(400, "BadParameter", "The api-version query parameter is required.")
        authorization = request.headers.get("authorization", "")
        if not authorization.startswith("Bearer "):
            return _error(
                401, "Unauthorized", "Request is missing a Bearer token.", **self._challenge()
            )
        claims = self.entra.verify_access_token(authorization[7:], RESOURCE)
        if claims is None:
            return _error(
                401, "Unauthorized", "The access token is not valid.", **self._challenge()
            )
        if self.release_clients is not None and claims.get("appid") not in self.release_clients:
            return _error(403, "Forbidden", "The caller does not have the keys release permission.")
        version = parts[1] if len(parts) == 3 and parts[1] else None
        key = self._find(parts[0], version)
        if key is None:
            return _error(404, "KeyNotFound", "A key with this name was not found in this vault.")
        body = await request.body()
        try:
            document = json.loads(body) if len(body) <= MAX_BODY else None
        except (ValueError, UnicodeDecodeError):
            document = None
        if not isinstance(document, dict) or not isinstance(document.get("target"), str):
            return _error(400, "BadParameter", "The release request body is not valid.")
        enc = document.get("enc") or DEFAULT_ENC
        if enc not in ENC_HASHES:
            return _error(400, "BadParameter", "The enc parameter is not supported.")
        return await self._release(key, document, enc, request.query_params["api-version"])

    def _find(self, name: str, version: str | None) -> VaultKey | None:
        versions = self.keys.get(name, [])
        if version is None:
            return versions[-1] if versions else None
        return next((key for key in versions if key.version == version), None)

    async def _release(
        self, key: VaultKey, document: dict[str, Any], enc: str, api_version: str
    ) -> Response:
        try:
            token = await self.tokens.verify(document["target"], key.policy.authorities)
        except TokenIssuerMismatch:
            return _error(
                403, "Forbidden", _unsatisfied("no policy authority matches the token issuer")
            )
        except GatewayError as error:
            message = f"Target environment attestation statement cannot be verified: {error}"
            return _error(400, "BadParameter", message)
        decision = key.policy.evaluate(token.claims, token.issuer)
        if not decision.allowed:
            return _error(403, "Forbidden", _unsatisfied(decision.reason))
        wrapping = _wrapping_key(token.claims)
        if wrapping is None:
            return _error(400, "BadParameter", "The attestation token holds no RSA key to wrap to.")
        self.releases += 1
        payload = self._payload(key, document, enc, api_version, wrapping)
        jws = self.signer.sign(payload)
        if "bad_signature" in self.faults:
            jws = _break_signature(jws)
        return JSONResponse({"value": jws})

    def _payload(
        self,
        key: VaultKey,
        document: dict[str, Any],
        enc: str,
        api_version: str,
        wrapping: tuple[str, rsa.RSAPublicKey],
    ) -> dict[str, Any]:
        material = key.private_key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        key_hsm = wrap_key_hsm(material, wrapping[1], wrapping[0], enc)
        if "corrupt_wrapped_key" in self.faults:
            key_hsm = _corrupt_key_hsm(key_hsm)
        public = key.private_key.public_key().public_numbers()
        size = (key.private_key.curve.key_size + 7) // 8
        request = {"api-version": api_version, "enc": enc, "kid": f"{self.url}/keys/{key.name}"}
        if isinstance(document.get("nonce"), str):
            request["nonce"] = document["nonce"]
        policy = json.dumps(key.policy.document).encode()
        return {
            "request": request,
            "response": {
                "key": {
                    "key": {
                        "kid": f"{self.url}/keys/{key.name}/{key.version}",
                        "kty": "EC-HSM",
                        "key_ops": ["sign", "verify"],
                        "crv": key.curve,
                        "x": b64url(public.x.to_bytes(size, "big")),
                        "y": b64url(public.y.to_bytes(size, "big")),
                        "key_hsm": key_hsm,
                    },
                    "attributes": {
                        "enabled": True,
                        "created": key.created,
                        "updated": key.created,
                        "recoveryLevel": "Recoverable+Purgeable",
                        "recoverableDays": 90,
                        "exportable": True,
                    },
                    "tags": dict(key.tags),
                    "release_policy": {"data": b64url(policy), "immutable": False},
                }
            },
        }


def _unsatisfied(reason: str) -> str:
    return f"Attestation statement does not satisfy the key release policy: {reason}."
