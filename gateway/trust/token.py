"""MAA attestation tokens: verification and typed claims (pure).

Accepts: the compact JWT MAA returned, the JWKS document from ``{issuer}/certs`` (already fetched
by the caller, e.g. the MAA client), the pinned issuer URL and the caller's ``now`` (Unix time).

Guarantees of :func:`verify_token`, each failure its own :class:`TokenError` subclass:

* ``alg`` is RS256; ``none`` (and an empty signature) raise :class:`UnsignedToken`, any other
  algorithm :class:`TokenAlgorithmNotAllowed`;
* the key is looked up by ``kid`` only among the JWKS entries that carry ``x5c`` (MAA's /certs
  has no ``n``/``e``); the public key comes from ``x5c[0]``. ``jku`` never chooses the key
  source: if present it must equal ``{issuer}/certs`` (:class:`TokenKeySourceMismatch`);
* no JWS extensions (``crit``, ``b64``: MAA uses none) (:class:`MalformedToken`);
* the signature verifies (PyJWT, algorithms pinned to RS256);
* ``iss`` equals the pinned issuer (trailing ``/`` ignored);
* ``exp``, ``nbf`` and ``iat`` are present and hold at ``now`` within ``leeway`` seconds;
* the claims parse into :class:`AttestationToken`: ``x-ms-attestation-type``,
  ``x-ms-compliance-status``, the ``x-ms-sevsnpvm-*`` claims, ``x-ms-runtime`` and, for
  AzureGuest (``azurevm``) tokens, ``x-ms-isolation-tee``.

Never does: fetch anything, follow ``jku``/``x5u``, or put token contents in an error message.
:func:`decode_unverified` exists for ``attest inspect-token`` and says so in its result.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from gateway.errors import (
    ConfigError,
    MalformedToken,
    SigningKeysInvalid,
    TokenAlgorithmNotAllowed,
    TokenClaimsInvalid,
    TokenExpired,
    TokenIssuedInFuture,
    TokenIssuerMismatch,
    TokenKeySourceMismatch,
    TokenKeyUnknown,
    TokenNotYetValid,
    TokenSignatureInvalid,
    UnsignedToken,
)

ALGORITHM = "RS256"
DEFAULT_LEEWAY = 30.0
MAX_LEEWAY = 300.0
MAX_TOKEN_SIZE = 256 * 1024
ATTESTATION_TYPES = frozenset({"sevsnpvm", "azurevm"})
SEVSNPVM = "x-ms-sevsnpvm-"


@dataclass(frozen=True)
class SevSnpVmClaims:
    """The ``x-ms-sevsnpvm-*`` claims: the SNP report as MAA read it."""

    authorkeydigest: str
    bootloader_svn: int
    family_id: str
    guestsvn: int
    hostdata: str
    idkeydigest: str
    image_id: str
    is_debuggable: bool
    launchmeasurement: str
    microcode_svn: int
    migration_allowed: bool
    reportdata: str
    reportid: str
    smt_allowed: bool
    snpfw_svn: int
    tee_svn: int
    vmpl: int

    @classmethod
    def from_claims(cls, claims: Mapping[str, Any]) -> SevSnpVmClaims | None:
        if not any(isinstance(k, str) and k.startswith(SEVSNPVM) for k in claims):
            return None
        text = {
            "authorkeydigest": "authorkeydigest",
            "family_id": "familyId",
            "hostdata": "hostdata",
            "idkeydigest": "idkeydigest",
            "image_id": "imageId",
            "launchmeasurement": "launchmeasurement",
            "reportdata": "reportdata",
            "reportid": "reportid",
        }
        numbers = ("bootloader-svn", "guestsvn", "microcode-svn", "snpfw-svn", "tee-svn", "vmpl")
        flags = ("is-debuggable", "migration-allowed", "smt-allowed")
        values: dict[str, Any] = {}
        for attr, name in text.items():
            values[attr] = _typed(claims, SEVSNPVM + name, str)
        for name in numbers:
            values[name.replace("-", "_")] = _typed(claims, SEVSNPVM + name, int)
        for name in flags:
            values[name.replace("-", "_")] = _typed(claims, SEVSNPVM + name, bool)
        return cls(**values)

    @property
    def report_data(self) -> bytes:
        try:
            return bytes.fromhex(self.reportdata)
        except ValueError as error:
            raise TokenClaimsInvalid() from error


def _typed(claims: Mapping[str, Any], name: str, kind: type) -> Any:
    value = claims.get(name)
    # bool is an int in Python; a JSON true is not a number here, nor 1 a boolean
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise TokenClaimsInvalid()
    return value


def _optional_object(claims: Mapping[str, Any], name: str) -> Mapping[str, Any] | None:
    value = claims.get(name)
    if value is not None and not isinstance(value, dict):
        raise TokenClaimsInvalid()
    return value


def _optional_str(claims: Mapping[str, Any], name: str) -> str | None:
    value = claims.get(name)
    if value is not None and not isinstance(value, str):
        raise TokenClaimsInvalid()
    return value


@dataclass(frozen=True)
class IsolationTeeClaims:
    """``x-ms-isolation-tee`` of an AzureGuest token: the SNP side of a CVM attestation."""

    attestation_type: str
    compliance_status: str | None
    runtime: Mapping[str, Any] | None
    sevsnpvm: SevSnpVmClaims | None

    @classmethod
    def from_claims(cls, claims: Mapping[str, Any]) -> IsolationTeeClaims:
        return cls(
            attestation_type=_typed(claims, "x-ms-attestation-type", str),
            compliance_status=_optional_str(claims, "x-ms-compliance-status"),
            runtime=_optional_object(claims, "x-ms-runtime"),
            sevsnpvm=SevSnpVmClaims.from_claims(claims),
        )


@dataclass(frozen=True)
class AttestationToken:
    """A verified (or, from :func:`decode_unverified`, merely decoded) MAA token."""

    raw: str = field(repr=False)
    header: Mapping[str, Any]
    claims: Mapping[str, Any] = field(repr=False)
    verified: bool
    issuer: str
    issued_at: int
    not_before: int
    expires_at: int
    attestation_type: str
    compliance_status: str | None
    nonce: str | None
    runtime: Mapping[str, Any] | None
    inittime: Mapping[str, Any] | None
    sevsnpvm: SevSnpVmClaims | None
    isolation_tee: IsolationTeeClaims | None

    @property
    def user_data(self) -> bytes | None:
        """``user-data`` of the runtime claims (top level, else the isolation TEE's), as bytes."""
        for runtime in (self.runtime, self.isolation_tee.runtime if self.isolation_tee else None):
            if runtime is not None and isinstance(runtime.get("user-data"), str):
                try:
                    return bytes.fromhex(runtime["user-data"])
                except ValueError as error:
                    raise TokenClaimsInvalid() from error
        return None

    @property
    def runtime_keys(self) -> list[Mapping[str, Any]]:
        keys = (self.runtime or {}).get("keys", [])
        return [key for key in keys if isinstance(key, dict)] if isinstance(keys, list) else []

    def to_json(self) -> dict[str, Any]:
        return {"verified": self.verified, "header": dict(self.header), "claims": dict(self.claims)}


# --- signing keys ----------------------------------------------------------------------------


def signing_keys_from_jwks(jwks: Mapping[str, Any]) -> dict[str, rsa.RSAPublicKey]:
    """kid → RSA key from each JWKS entry's ``x5c[0]``; entries without ``x5c`` are unusable."""
    keys = jwks.get("keys") if isinstance(jwks, Mapping) else None
    if not isinstance(keys, list):
        raise SigningKeysInvalid()
    found: dict[str, rsa.RSAPublicKey] = {}
    for entry in keys:
        if not isinstance(entry, dict) or "x5c" not in entry:
            continue
        kid, chain = entry.get("kid"), entry.get("x5c")
        if not isinstance(kid, str) or not isinstance(chain, list) or not chain:
            raise SigningKeysInvalid()
        if kid in found:
            raise SigningKeysInvalid("attestation service signing keys repeat a key id")
        found[kid] = _rsa_key_from_x5c(chain[0])
    if not found:
        raise SigningKeysInvalid()
    return found


def _rsa_key_from_x5c(value: object) -> rsa.RSAPublicKey:
    if not isinstance(value, str):
        raise SigningKeysInvalid()
    try:
        cert = x509.load_der_x509_certificate(base64.b64decode(value, validate=True))
    except (binascii.Error, ValueError, x509.InvalidVersion) as error:
        raise SigningKeysInvalid() from error
    key = cert.public_key()
    if not isinstance(key, rsa.RSAPublicKey) or key.key_size < 2048:
        raise SigningKeysInvalid("attestation service signing key is not RSA-2048 or larger")
    return key


def signing_jwk(cert: x509.Certificate, kid: str) -> dict[str, Any]:
    """A JWKS entry as MAA's ``/certs`` serves it: ``x5c`` only, no ``n``/``e``."""
    der = cert.public_bytes(serialization.Encoding.DER)
    return {
        "kid": kid,
        "kty": "RSA",
        "alg": ALGORITHM,
        "use": "sig",
        "x5c": [base64.b64encode(der).decode()],
    }


# --- verification ----------------------------------------------------------------------------


def _segments(token: object) -> list[str]:
    if not isinstance(token, str) or len(token) > MAX_TOKEN_SIZE or not token.isascii():
        raise MalformedToken()
    segments = token.split(".")
    if len(segments) not in (2, 3):
        raise MalformedToken()
    return segments


def _json_segment(segment: str) -> dict[str, Any]:
    try:
        document = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except (binascii.Error, ValueError, RecursionError) as error:
        raise MalformedToken() from error
    if not isinstance(document, dict):
        raise MalformedToken()
    return document


def _check_header(header: Mapping[str, Any], signature: str | None, issuer: str) -> str:
    alg = header.get("alg")
    if isinstance(alg, str) and alg.lower() == "none":
        raise UnsignedToken()
    if alg != ALGORITHM:
        raise TokenAlgorithmNotAllowed()
    if not signature:
        raise UnsignedToken()
    if "crit" in header or "b64" in header:  # JWS extensions MAA never uses
        raise MalformedToken()
    jku = header.get("jku")
    if jku is not None and (not isinstance(jku, str) or jku.rstrip("/") != issuer + "/certs"):
        raise TokenKeySourceMismatch()
    kid = header.get("kid")
    if not isinstance(kid, str):
        raise TokenKeyUnknown()
    return kid


def verify_token(
    token: str,
    *,
    jwks: Mapping[str, Any],
    issuer: str,
    now: float,
    leeway: float = DEFAULT_LEEWAY,
    attestation_types: frozenset[str] = ATTESTATION_TYPES,
) -> AttestationToken:
    """Verify an MAA token against the pinned issuer's signing keys; see the module docstring."""
    if not 0 <= leeway <= MAX_LEEWAY:
        raise ConfigError("token leeway must be between 0 and 300 seconds")
    issuer = issuer.rstrip("/")
    segments = _segments(token)
    header = _json_segment(segments[0])
    kid = _check_header(header, segments[2] if len(segments) == 3 else None, issuer)
    key = signing_keys_from_jwks(jwks).get(kid)
    if key is None:
        raise TokenKeyUnknown()
    claims = _decode_signed(token, key)
    if not isinstance(claims.get("iss"), str) or claims["iss"].rstrip("/") != issuer:
        raise TokenIssuerMismatch()
    _check_times(claims, now, leeway)
    parsed = _typed_token(token, header, claims, verified=True)
    if parsed.attestation_type not in attestation_types:
        raise TokenClaimsInvalid("attestation token type is not accepted")
    return parsed


def _decode_signed(token: str, key: rsa.RSAPublicKey) -> dict[str, Any]:
    # Times and issuer are checked by us against the caller's clock; PyJWT checks the signature.
    options: Any = {
        "verify_signature": True,
        "verify_exp": False,
        "verify_nbf": False,
        "verify_iat": False,
        "verify_aud": False,
        "verify_iss": False,
    }
    try:
        claims = jwt.decode(token, key, algorithms=[ALGORITHM], options=options)
    except jwt.InvalidSignatureError as error:
        raise TokenSignatureInvalid() from error
    except jwt.PyJWTError as error:
        raise MalformedToken() from error
    if not isinstance(claims, dict):
        raise MalformedToken()
    return claims


def _number(claims: Mapping[str, Any], name: str) -> float:
    value = claims.get(name)
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise TokenClaimsInvalid("attestation token lacks exp, nbf or iat")
    return float(value)


def _check_times(claims: Mapping[str, Any], now: float, leeway: float) -> None:
    exp, nbf, iat = (_number(claims, name) for name in ("exp", "nbf", "iat"))
    if now > exp + leeway:
        raise TokenExpired()
    if now + leeway < nbf:
        raise TokenNotYetValid()
    if iat > now + leeway:
        raise TokenIssuedInFuture()


def _typed_token(
    raw: str, header: Mapping[str, Any], claims: Mapping[str, Any], *, verified: bool
) -> AttestationToken:
    attestation_type = _typed(claims, "x-ms-attestation-type", str)
    isolation = _optional_object(claims, "x-ms-isolation-tee")
    sevsnpvm = SevSnpVmClaims.from_claims(claims)
    if attestation_type == "sevsnpvm" and sevsnpvm is None:
        raise TokenClaimsInvalid("SevSnpVm token lacks the x-ms-sevsnpvm claims")
    if attestation_type == "azurevm" and isolation is None:
        raise TokenClaimsInvalid("AzureGuest token lacks x-ms-isolation-tee")
    return AttestationToken(
        raw=raw,
        header=header,
        claims=claims,
        verified=verified,
        issuer=_typed(claims, "iss", str),
        issued_at=int(_number(claims, "iat")),
        not_before=int(_number(claims, "nbf")),
        expires_at=int(_number(claims, "exp")),
        attestation_type=attestation_type,
        compliance_status=_optional_str(claims, "x-ms-compliance-status"),
        nonce=_optional_str(claims, "nonce"),
        runtime=_optional_object(claims, "x-ms-runtime"),
        inittime=_optional_object(claims, "x-ms-inittime"),
        sevsnpvm=sevsnpvm,
        isolation_tee=None if isolation is None else IsolationTeeClaims.from_claims(isolation),
    )


def decode_unverified(token: str) -> AttestationToken:
    """Header and typed claims with NO signature, issuer or time check (``verified=False``)."""
    segments = _segments(token)
    header, claims = _json_segment(segments[0]), _json_segment(segments[1])
    return _typed_token(token, header, claims, verified=False)
