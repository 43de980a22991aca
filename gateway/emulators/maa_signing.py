"""The MAA emulator's token signer: an RS256 key, its self-signed certificate and its JWKS.

Accepts the issuer URL (the emulator's own ``https://127.0.0.1:PORT``, no trailing slash, as MAA's
``iss`` has none) and optionally a PEM file to keep the key in. Guarantees, like MAA:

* tokens are RS256 JWTs with header ``{"alg","jku","kid","typ"}``, ``jku`` = ``{issuer}/certs``;
* ``/certs`` is a JWKS whose keys carry ``x5c`` only (no ``n``/``e``), so verifiers must build
  the key from the certificate, as they must for the real service;
* the certificate is self-signed RSA with CN = the issuer URL;
* ``kid`` is the base64 SHA-256 of the public key (SubjectPublicKeyInfo), so it stays the same
  across restarts when the key is kept in a file, and tokens issued before a restart verify.

Never: signs with anything but RS256, or exposes the private key (repr hides it).
"""

from __future__ import annotations

import base64
import datetime
import hashlib
from pathlib import Path
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from gateway.emulators.tls import write_private
from gateway.errors import ConfigError

CERT_VALIDITY = datetime.timedelta(days=365)


class TokenSigner:
    """Signs MAA-shaped tokens and publishes the matching JWKS and OpenID metadata."""

    def __init__(self, issuer: str, key_path: Path | None = None) -> None:
        self.issuer = issuer.rstrip("/")
        self._key = _load_or_create_key(key_path)
        self.certificate = _self_signed(self._key, self.issuer)
        spki = self._key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.kid = base64.b64encode(hashlib.sha256(spki).digest()).decode()
        der = self.certificate.public_bytes(serialization.Encoding.DER)
        self._x5c = base64.b64encode(der).decode()

    def __repr__(self) -> str:
        return f"TokenSigner(issuer={self.issuer!r}, kid={self.kid!r})"

    def sign(self, claims: dict[str, Any]) -> str:
        headers = {"jku": f"{self.issuer}/certs", "kid": self.kid, "typ": "JWT"}
        return jwt.encode(claims, self._key, algorithm="RS256", headers=headers)

    def jwks(self) -> dict[str, Any]:
        key = {"alg": "RS256", "kid": self.kid, "kty": "RSA", "use": "sig", "x5c": [self._x5c]}
        return {"keys": [key]}

    def openid_metadata(self) -> dict[str, Any]:
        return {
            "issuer": self.issuer,
            "jwks_uri": f"{self.issuer}/certs",
            "revocation_endpoint": f"{self.issuer}/revoke",
            "response_types_supported": ["token", "none"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "claims_supported": [
                "x-ms-attestation-type",
                "x-ms-compliance-status",
                "x-ms-policy-hash",
                "x-ms-runtime",
                "x-ms-inittime",
                "x-ms-isolation-tee",
                "x-ms-ver",
                "nonce",
            ],
        }


def _load_or_create_key(path: Path | None) -> rsa.RSAPrivateKey:
    if path is not None and path.is_file():
        try:
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except (ValueError, TypeError) as error:
            raise ConfigError("the MAA emulator signing key file is unreadable") from error
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ConfigError("the MAA emulator signing key is not an RSA key")
        return key
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if path is not None:
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        write_private(path, pem)
    return key


def _self_signed(key: rsa.RSAPrivateKey, issuer: str) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)])
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + CERT_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
