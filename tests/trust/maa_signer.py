"""A test-only MAA signer: an RS256 key with a self-signed certificate, and token helpers.

The claims are MAA's shapes, taken from the example token in tests/trust/data.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from gateway.trust.token import signing_jwk

ISSUER = "https://sharedeus.eus.attest.azure.net"
NOW = 1_764_504_000  # 2025-11-30T12:00:00Z
EXAMPLE = Path(__file__).parent / "data" / "maa-sevsnpvm-example-token-unsigned.txt"


@dataclass
class MaaSigner:
    key: rsa.RSAPrivateKey
    cert: x509.Certificate
    kid: str

    @classmethod
    def generate(cls, kid: str = "maa-signing-key-1", issuer: str = ISSUER) -> MaaSigner:
        key = rsa.generate_private_key(65537, 2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)])
        start = datetime(2025, 1, 1, tzinfo=UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(start + timedelta(days=3650))
            .sign(key, hashes.SHA256())
        )
        return cls(key, cert, kid)

    def jwks(self) -> dict[str, Any]:
        return {"keys": [signing_jwk(self.cert, self.kid)]}

    def sign(self, claims: dict[str, Any], **header: Any) -> str:
        headers = {"kid": self.kid, "jku": ISSUER + "/certs", **header}
        return jwt.encode(claims, self.key, algorithm="RS256", headers=headers)


def example_claims(**overrides: Any) -> dict[str, Any]:
    """The example SevSnpVm token's claims, re-timed around NOW and re-issued by ISSUER."""
    payload = EXAMPLE.read_text().strip().split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims.update(iss=ISSUER, iat=NOW - 60, nbf=NOW - 60, exp=NOW - 60 + 28800)
    claims.update(overrides)
    return claims


def azure_guest_claims(**overrides: Any) -> dict[str, Any]:
    """An AzureGuest (azurevm) token: the SNP claims under x-ms-isolation-tee."""
    snp = {k: v for k, v in example_claims().items() if k.startswith("x-ms-sevsnpvm-")}
    runtime = {"keys": [{"kid": "HCLAkPub", "kty": "RSA"}], "user-data": "AB" * 64}
    claims = {
        "iss": ISSUER,
        "iat": NOW - 60,
        "nbf": NOW - 60,
        "exp": NOW - 60 + 28800,
        "x-ms-ver": "1.0",
        "x-ms-attestation-type": "azurevm",
        "x-ms-runtime": {"keys": [{"kid": "TpmEphemeralEncryptionKey", "kty": "RSA"}]},
        "x-ms-isolation-tee": {
            "x-ms-attestation-type": "sevsnpvm",
            "x-ms-compliance-status": "azure-compliant-cvm",
            "x-ms-runtime": runtime,
            **snp,
        },
    }
    claims.update(overrides)
    return claims
