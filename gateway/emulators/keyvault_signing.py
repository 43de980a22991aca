"""The Key Vault emulator's release signer: a throwaway root, a leaf naming the vault, RS256 JWS.

Accepts the vault host (as clients reach it: ``127.0.0.1`` for the emulator) or, to test a
client's host check, any other name. Guarantees: the leaf certificate is an RSA-2048 TLS server
certificate (EKU serverAuth, SAN = that host, DNS or IP) issued by a fresh root, so a client
that trusts the root and checks the name accepts it exactly when the name is right; JWS headers
carry ``alg`` RS256, ``kid`` (SHA-1 of the leaf, hex, as Key Vault's), ``x5t``, ``x5t#S256``,
``typ`` and ``x5c`` = [leaf, root] in standard base64 DER. Never: signs with another algorithm,
or shows its keys in ``repr``.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from gateway.emulators.certs import certificate_builder, common_name


def _san(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def _key_usage(*, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=not ca,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


class ReleaseSigner:
    """Signs release answers for one vault host."""

    def __init__(self, vault_host: str) -> None:
        root_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        root_name = common_name("ohttp-gateway Key Vault emulator root")
        self.root = (
            certificate_builder(root_name, root_name, root_key.public_key(), root_key.public_key())
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_key_usage(ca=True), critical=True)
            .sign(root_key, hashes.SHA256())
        )
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.leaf = (
            certificate_builder(
                common_name(vault_host), root_name, self._key.public_key(), root_key.public_key()
            )
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(ca=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.SubjectAlternativeName([_san(vault_host)]), critical=False)
            .sign(root_key, hashes.SHA256())
        )
        self.vault_host = vault_host

    def __repr__(self) -> str:
        return f"ReleaseSigner(vault_host={self.vault_host!r})"

    def root_pem(self) -> bytes:
        return self.root.public_bytes(serialization.Encoding.PEM)

    def _headers(self) -> dict[str, Any]:
        der = self.leaf.public_bytes(serialization.Encoding.DER)
        b64u = base64.urlsafe_b64encode
        chain = [der, self.root.public_bytes(serialization.Encoding.DER)]
        return {
            "kid": hashlib.sha1(der, usedforsecurity=False).hexdigest(),
            "x5t": b64u(hashlib.sha1(der, usedforsecurity=False).digest()).rstrip(b"=").decode(),
            "x5t#S256": b64u(hashlib.sha256(der).digest()).rstrip(b"=").decode(),
            "typ": "JWT",
            "x5c": [base64.b64encode(cert).decode() for cert in chain],
        }

    def sign(self, payload: dict[str, Any]) -> str:
        body = json.dumps(payload, separators=(",", ":")).encode()
        return jwt.PyJWS().encode(body, self._key, algorithm="RS256", headers=self._headers())
