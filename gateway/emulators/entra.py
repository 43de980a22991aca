"""The Entra ID emulator: the token endpoint workload identity uses, and what MSAL looks up.

Routes (the real service's shapes):

* ``POST /{tenant}/oauth2/v2.0/token``: ``grant_type=client_credentials`` with
  ``client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer`` and
  ``client_assertion`` = the pod's projected service-account token (``AZURE_FEDERATED_TOKEN_FILE``);
  answers ``{"token_type": "Bearer", "expires_in", "ext_expires_in", "access_token"}``;
* ``GET /{tenant}/v2.0/.well-known/openid-configuration``, ``GET /{tenant}/discovery/v2.0/keys``
  and ``GET /common/discovery/instance`` (MSAL's instance discovery).

Accepts the tenant id, a :class:`FederatedIssuer` (the emulated cluster's OIDC issuer, which signs
service-account tokens) and the federated credentials: client id -> service-account subject.
Guarantees, as Entra: the assertion must be an RS256 JWT of that issuer, for audience
``api://AzureADTokenExchange``, unexpired, whose ``sub`` is the one federated with ``client_id``;
otherwise a 400 OAuth error (``invalid_client`` with an AADSTS code). Access tokens are RS256
JWTs for the resource of the ``scope`` (``https://vault.azure.net/.default`` ->
``aud=https://vault.azure.net``), with ``tid``, ``appid`` and ``oid``; :meth:`verify_access_token`
is how the Key Vault emulator checks them. Never: logs assertions or tokens.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

FEDERATION_AUDIENCE = "api://AzureADTokenExchange"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
TOKEN_LIFETIME = 3599
MAX_FORM_BYTES = 64 * 1024


def _rsa_jwk(key: rsa.RSAPublicKey, kid: str) -> dict[str, Any]:
    jwk: dict[str, Any] = jwt.algorithms.RSAAlgorithm.to_jwk(key, as_dict=True)
    jwk.update(kid=kid, use="sig", alg="RS256")
    return jwk


class FederatedIssuer:
    """The cluster's service-account token issuer (AKS's OIDC issuer), emulated."""

    def __init__(self, issuer: str = "https://oidc.cluster.emulator.invalid/") -> None:
        self.issuer = issuer
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = uuid.uuid4().hex
        self.public_key = self._key.public_key()

    def __repr__(self) -> str:
        return f"FederatedIssuer(issuer={self.issuer!r})"

    def issue(
        self, subject: str, *, audience: str = FEDERATION_AUDIENCE, lifetime: int = 3600
    ) -> str:
        """A projected service-account token, as the kubelet writes it for the pod."""
        now = int(time.time())
        claims = {"iss": self.issuer, "sub": subject, "aud": [audience], "iat": now, "nbf": now}
        claims["exp"] = now + lifetime
        return jwt.encode(claims, self._key, algorithm="RS256", headers={"kid": self.kid})


def _oauth_error(error: str, code: int, description: str) -> JSONResponse:
    body = {
        "error": error,
        "error_description": f"AADSTS{code}: {description}",
        "error_codes": [code],
        "timestamp": time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime()),
        "trace_id": str(uuid.uuid4()),
        "correlation_id": str(uuid.uuid4()),
    }
    return JSONResponse(body, status_code=400)


class EntraEmulator:
    """One emulated Entra ID tenant; ``app`` is its ASGI application, served at ``url``."""

    def __init__(
        self,
        url: str,
        tenant_id: str,
        federated: FederatedIssuer,
        clients: Mapping[str, str],
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.url = url.rstrip("/")
        self.tenant_id = tenant_id
        self.federated = federated
        self.clients = dict(clients)
        self._clock = clock
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = uuid.uuid4().hex
        self.tokens_issued = 0
        self.app = Starlette(
            routes=[
                Route("/{tenant}/oauth2/v2.0/token", self._token, methods=["POST"]),
                Route("/{tenant}/v2.0/.well-known/openid-configuration", self._openid),
                Route("/{tenant}/discovery/v2.0/keys", self._keys),
                Route("/common/discovery/instance", self._instance_discovery),
            ]
        )

    def __repr__(self) -> str:
        return f"EntraEmulator(url={self.url!r}, tenant_id={self.tenant_id!r})"

    @property
    def token_issuer(self) -> str:
        return f"https://sts.windows.net/{self.tenant_id}/"

    @property
    def authority(self) -> str:
        """What a resource's 401 challenge names as ``authorization``."""
        return f"{self.url}/{self.tenant_id}"

    async def _token(self, request: Request) -> Response:
        if request.path_params["tenant"] != self.tenant_id:
            return _oauth_error("invalid_request", 90002, "Tenant not found.")
        body = await request.body()
        if len(body) > MAX_FORM_BYTES:
            return _oauth_error("invalid_request", 900144, "The request body is too large.")
        form = await request.form()
        fields = {key: value for key, value in form.items() if isinstance(value, str)}
        if fields.get("grant_type") != "client_credentials":
            return _oauth_error("unsupported_grant_type", 70003, "The grant type is unsupported.")
        if fields.get("client_assertion_type") != ASSERTION_TYPE:
            return _oauth_error("invalid_client", 7000218, "A client assertion is required.")
        client_id, scope = fields.get("client_id", ""), fields.get("scope", "")
        subject = self.clients.get(client_id)
        if subject is None:
            return _oauth_error("unauthorized_client", 700016, "Application not found.")
        if not self._assertion_valid(fields.get("client_assertion", ""), subject):
            return _oauth_error(
                "invalid_client", 70021, "No matching federated identity record found."
            )
        if not scope.endswith("/.default"):
            return _oauth_error("invalid_scope", 1002012, "The scope is invalid.")
        token = self._access_token(client_id, scope.removesuffix("/.default"))
        self.tokens_issued += 1
        answer = {"token_type": "Bearer", "expires_in": TOKEN_LIFETIME}
        answer.update(ext_expires_in=TOKEN_LIFETIME, access_token=token)
        return JSONResponse(answer)

    def _assertion_valid(self, assertion: str, subject: str) -> bool:
        try:
            claims = jwt.decode(
                assertion,
                self.federated.public_key,
                algorithms=["RS256"],
                audience=FEDERATION_AUDIENCE,
                issuer=self.federated.issuer,
                options={"require": ["exp", "iat", "sub", "iss", "aud"]},
            )
        except jwt.PyJWTError:
            return False
        return bool(claims.get("sub") == subject)

    def _access_token(self, client_id: str, resource: str) -> str:
        now = int(self._clock())
        claims = {
            "aud": resource,
            "iss": self.token_issuer,
            "iat": now,
            "nbf": now,
            "exp": now + TOKEN_LIFETIME,
            "tid": self.tenant_id,
            "appid": client_id,
            "oid": str(uuid.uuid5(uuid.NAMESPACE_URL, client_id)),
            "sub": str(uuid.uuid5(uuid.NAMESPACE_URL, client_id)),
            "ver": "1.0",
        }
        return jwt.encode(claims, self._key, algorithm="RS256", headers={"kid": self.kid})

    def verify_access_token(self, token: str, resource: str) -> Mapping[str, Any] | None:
        """The claims of a valid access token of this tenant for ``resource``, else None."""
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self._key.public_key(),
                algorithms=["RS256"],
                audience=resource,
                issuer=self.token_issuer,
                options={"require": ["exp", "iat", "aud", "iss"]},
            )
        except jwt.PyJWTError:
            return None
        return claims if claims.get("tid") == self.tenant_id else None

    async def _openid(self, request: Request) -> Response:
        tenant = request.path_params["tenant"]
        base = f"{self.url}/{tenant}"
        return JSONResponse(
            {
                "issuer": f"{self.url}/{tenant}/v2.0",
                "token_endpoint": f"{base}/oauth2/v2.0/token",
                "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                "jwks_uri": f"{base}/discovery/v2.0/keys",
                "response_types_supported": ["code", "id_token", "token"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "tenant_region_scope": "WW",
            }
        )

    async def _keys(self, request: Request) -> Response:
        return JSONResponse({"keys": [_rsa_jwk(self._key.public_key(), self.kid)]})

    async def _instance_discovery(self, request: Request) -> Response:
        host = request.url.netloc
        return JSONResponse(
            {
                "tenant_discovery_endpoint": (
                    f"{self.url}/{self.tenant_id}/v2.0/.well-known/openid-configuration"
                ),
                "api-version": "1.1",
                "metadata": [
                    {"preferred_network": host, "preferred_cache": host, "aliases": [host]}
                ],
            }
        )
