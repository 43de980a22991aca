"""RSA public keys as JWKs (RFC 7517/7518) with RFC 7638 thumbprints (pure).

Accepts cryptography RSA public keys, or JWK dicts of ``kty`` RSA. Guarantees: JSON members are
base64url without padding; the thumbprint is over the required members in lexicographic order.
Malformed JWKs raise :class:`EvidenceError`. Never does:
handle private members (``d``, ``p``, ...): they are never emitted and are ignored on input.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa

from gateway.errors import EvidenceError


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as error:
        raise EvidenceError("base64url value is malformed") from error


def _uint(value: int) -> str:
    return b64url(value.to_bytes((value.bit_length() + 7) // 8 or 1, "big"))


def rsa_thumbprint(key: rsa.RSAPublicKey) -> str:
    numbers = key.public_numbers()
    canonical = json.dumps(
        {"e": _uint(numbers.e), "kty": "RSA", "n": _uint(numbers.n)},
        separators=(",", ":"),
        sort_keys=True,
    )
    return b64url(hashlib.sha256(canonical.encode("ascii")).digest())


def rsa_public_jwk(
    key: rsa.RSAPublicKey, *, kid: str | None = None, key_ops: tuple[str, ...] = ("encrypt",)
) -> dict[str, Any]:
    numbers = key.public_numbers()
    return {
        "kid": kid or rsa_thumbprint(key),
        "key_ops": list(key_ops),
        "kty": "RSA",
        "e": _uint(numbers.e),
        "n": _uint(numbers.n),
    }


def rsa_public_key_from_jwk(jwk: Mapping[str, Any]) -> rsa.RSAPublicKey:
    n, e = jwk.get("n"), jwk.get("e")
    if jwk.get("kty") != "RSA" or not isinstance(n, str) or not isinstance(e, str):
        raise EvidenceError("JWK is not an RSA public key")
    try:
        return rsa.RSAPublicNumbers(
            int.from_bytes(b64url_decode(e), "big"), int.from_bytes(b64url_decode(n), "big")
        ).public_key()
    except ValueError as error:
        raise EvidenceError("JWK is not an RSA public key") from error
