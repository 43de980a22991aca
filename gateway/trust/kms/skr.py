"""Key Vault / Managed HSM Secure Key Release responses (pure): the JWS and ``key_hsm``.

Accepts the compact JWS that ``POST {vault}/keys/{name}[/{version}]/release`` answers with, the
vault host, the trust roots, the caller's clock, and a :class:`WrappingKey`. Guarantees of
:func:`verify_release`, each failure its own :class:`ReleaseResponseInvalid` subclass:

* the header is RS256 with an ``x5c`` chain; the leaf certificate names the vault host (DNS SAN,
  one-label wildcards allowed; an IP SAN for an IP host) (:class:`VaultHostMismatch`), and chains
  to a trust root as a TLS server certificate valid at ``now`` (:class:`ReleaseCertificateInvalid`);
* the signature verifies with the leaf key (:class:`ReleaseSignatureInvalid`);
* the payload echoes our nonce and ``enc``, and releases a key of the vault host and key name;
  the key version's ``tags`` (absent or null: none) are text;
* ``key_hsm`` was wrapped to our wrapping key's ``kid`` with the ``enc`` we asked for.

:func:`unwrap_key_hsm` then opens ``key_hsm``: RSA-OAEP of the transfer key (SHA-1, SHA-256 or
SHA-384 by ``enc``, via the wrapping key's ``decrypt``, i.e. the TPM on the vTPM route), then AES
key wrap with padding (RFC 5649) of the key material. :func:`wrap_key_hsm` is the inverse, for the
Key Vault emulator. Never: fetches anything, or puts payload or key bytes into an error.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import ipaddress
import json
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import jwt
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.keywrap import (
    InvalidUnwrap,
    aes_key_unwrap_with_padding,
    aes_key_wrap_with_padding,
)
from cryptography.x509 import verification

from gateway.errors import (
    KeyReleaseError,
    KeyUnwrapFailed,
    ReleaseCertificateInvalid,
    ReleaseResponseInvalid,
    ReleaseSignatureInvalid,
    VaultHostMismatch,
)
from gateway.trust.kms import WrappingKey

ENC_HASHES: Mapping[str, type[hashes.HashAlgorithm]] = {
    "CKM_RSA_AES_KEY_WRAP": hashes.SHA1,
    "RSA_AES_KEY_WRAP_256": hashes.SHA256,
    "RSA_AES_KEY_WRAP_384": hashes.SHA384,
}
# Microsoft's own CVM sample moved to _256 to drop SHA-1 (research §5.3).
PREFERRED_ENC = "RSA_AES_KEY_WRAP_256"
MAX_JWS_SIZE = 256 * 1024
_TRANSFER_KEY_SIZES = (16, 24, 32)


@dataclass(frozen=True)
class ReleasedKeyHsm:
    """A verified release: the versioned key URL, its still-wrapped ``key_hsm`` and the key
    version's tags (signed with the rest of the answer)."""

    key_url: str
    key_type: str
    key_hsm: str
    tags: Mapping[str, str] = field(default_factory=dict)


def b64url_decode(text: object, error: type[KeyReleaseError] = ReleaseResponseInvalid) -> bytes:
    if not isinstance(text, str):
        raise error()
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as cause:
        raise error() from cause


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _object(value: object, name: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ReleaseResponseInvalid(f"key release response lacks {name}")
    return value


def _json_segment(segment: str) -> dict[str, Any]:
    try:
        value = json.loads(b64url_decode(segment))
    except (ValueError, UnicodeDecodeError) as error:
        raise ReleaseResponseInvalid() from error
    return _object(value, "a JSON object")


def _certificates(header: Mapping[str, Any]) -> list[x509.Certificate]:
    chain = header.get("x5c")
    if not isinstance(chain, list) or not chain or not all(isinstance(c, str) for c in chain):
        raise ReleaseCertificateInvalid("key release response has no x5c chain")
    try:
        return [x509.load_der_x509_certificate(base64.b64decode(c, validate=True)) for c in chain]
    except (binascii.Error, ValueError, x509.InvalidVersion) as error:
        raise ReleaseCertificateInvalid("key release x5c certificate is malformed") from error


def _names_host(cert: x509.Certificate, host: str) -> bool:
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return any(_dns_matches(name, host) for name in sans.get_values_for_type(x509.DNSName))
    return address in sans.get_values_for_type(x509.IPAddress)


def _dns_matches(pattern: str, host: str) -> bool:
    pattern, host = pattern.lower().rstrip("."), host.lower().rstrip(".")
    if pattern.startswith("*."):
        # RFC 6125 §6.4.3: the wildcard stands for exactly one leftmost label.
        label, _, rest = host.partition(".")
        return bool(label) and rest == pattern[2:]
    return pattern == host


def _subject(host: str) -> x509.DNSName | x509.IPAddress:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def verify_certificate(
    chain: Sequence[x509.Certificate],
    *,
    vault_host: str,
    trust_roots: Sequence[x509.Certificate],
    now: datetime.datetime,
) -> x509.Certificate:
    """The leaf, once it names ``vault_host`` and chains to ``trust_roots`` at ``now``."""
    leaf = chain[0]
    if not _names_host(leaf, vault_host):
        raise VaultHostMismatch()
    if not trust_roots:
        raise ReleaseCertificateInvalid("no trust roots for the key release certificate")
    verifier = (
        verification.PolicyBuilder()
        .store(verification.Store(list(trust_roots)))
        .time(now)
        .build_server_verifier(_subject(vault_host))
    )
    try:
        verifier.verify(leaf, list(chain[1:]))
    except (verification.VerificationError, ValueError, UnsupportedAlgorithm) as error:
        raise ReleaseCertificateInvalid() from error
    return leaf


def _verify_signature(jws: str, leaf: x509.Certificate) -> dict[str, Any]:
    try:
        public_key = leaf.public_key()
    except (ValueError, UnsupportedAlgorithm) as error:
        raise ReleaseCertificateInvalid("key release certificate key is malformed") from error
    if not isinstance(public_key, rsa.RSAPublicKey):
        raise ReleaseSignatureInvalid("key release certificate key is not RSA")
    try:
        payload = jwt.PyJWS().decode(jws, public_key, algorithms=["RS256"])
    except jwt.InvalidSignatureError as error:
        raise ReleaseSignatureInvalid() from error
    except jwt.PyJWTError as error:
        raise ReleaseResponseInvalid() from error
    try:
        return _object(json.loads(payload), "a JSON payload")
    except (ValueError, UnicodeDecodeError) as error:
        raise ReleaseResponseInvalid() from error


def verify_release(
    jws: object,
    *,
    vault_url: str,
    key_name: str,
    nonce: str,
    enc: str,
    trust_roots: Sequence[x509.Certificate],
    now: datetime.datetime,
) -> ReleasedKeyHsm:
    """Authenticate a release JWS; see the module docstring for what is checked."""
    if not isinstance(jws, str) or len(jws) > MAX_JWS_SIZE or jws.count(".") != 2:
        raise ReleaseResponseInvalid("key release response is not a compact JWS")
    header = _json_segment(jws.split(".", 1)[0])
    if header.get("alg") != "RS256":
        raise ReleaseSignatureInvalid("key release response is not signed with RS256")
    vault_host = urlsplit(vault_url).hostname or ""
    leaf = verify_certificate(
        _certificates(header), vault_host=vault_host, trust_roots=trust_roots, now=now
    )
    payload = _verify_signature(jws, leaf)
    return _released_key(payload, vault_host=vault_host, key_name=key_name, nonce=nonce, enc=enc)


def _released_key(
    payload: Mapping[str, Any], *, vault_host: str, key_name: str, nonce: str, enc: str
) -> ReleasedKeyHsm:
    request = _object(payload.get("request"), "the request")
    if request.get("nonce") != nonce:
        raise ReleaseResponseInvalid("key release response does not echo our nonce")
    if request.get("enc", "CKM_RSA_AES_KEY_WRAP") != enc:
        raise ReleaseResponseInvalid("key release response used another algorithm")
    bundle = _object(_object(payload.get("response"), "response").get("key"), "key")
    key = _object(bundle.get("key"), "key")
    tags = {} if bundle.get("tags") is None else _object(bundle["tags"], "the tags")
    if not all(isinstance(value, str) for value in tags.values()):
        raise ReleaseResponseInvalid("key release response has a non-text tag")
    key_url, key_type, key_hsm = key.get("kid"), key.get("kty"), key.get("key_hsm")
    if not isinstance(key_url, str) or not isinstance(key_type, str):
        raise ReleaseResponseInvalid("key release response lacks the key id")
    parts = urlsplit(key_url)
    segments = parts.path.split("/")
    if parts.hostname != vault_host or segments[1:3] != ["keys", key_name]:
        raise ReleaseResponseInvalid("key release response names another vault or key")
    if not isinstance(key_hsm, str):
        raise ReleaseResponseInvalid("key release response lacks key_hsm")
    return ReleasedKeyHsm(key_url, key_type, key_hsm, tags)


def unwrap_key_hsm(key_hsm: str, wrapping_key: WrappingKey, enc: str) -> bytes:
    """The key material inside ``key_hsm`` (PKCS#8 for EC/RSA keys)."""
    try:
        blob = json.loads(b64url_decode(key_hsm))
    except (ValueError, UnicodeDecodeError) as error:
        raise ReleaseResponseInvalid("key_hsm is malformed") from error
    header = _object(_object(blob, "key_hsm").get("header"), "the key_hsm header")
    if header.get("kid") != wrapping_key.kid:
        raise ReleaseResponseInvalid("key_hsm is wrapped to another key")
    if header.get("enc") != enc or enc not in ENC_HASHES:
        raise ReleaseResponseInvalid("key_hsm uses another wrapping algorithm")
    ciphertext = b64url_decode(blob.get("ciphertext"), KeyUnwrapFailed)
    size = wrapping_key.modulus_bytes
    transfer_key = wrapping_key.unwrap(ciphertext[:size], ENC_HASHES[enc]())
    if len(transfer_key) not in _TRANSFER_KEY_SIZES:
        raise KeyUnwrapFailed("transfer key has an invalid length")
    try:
        return aes_key_unwrap_with_padding(transfer_key, ciphertext[size:])
    except (InvalidUnwrap, ValueError) as error:
        raise KeyUnwrapFailed() from error


def wrap_key_hsm(material: bytes, public_key: rsa.RSAPublicKey, kid: str, enc: str) -> str:
    """``key_hsm`` as Key Vault builds it: RSA-OAEP(transfer key) || AES-KWP(material)."""
    algorithm = ENC_HASHES[enc]()
    transfer_key = secrets.token_bytes(32)
    oaep = padding.OAEP(mgf=padding.MGF1(algorithm), algorithm=algorithm, label=None)
    ciphertext = public_key.encrypt(transfer_key, oaep)
    ciphertext += aes_key_wrap_with_padding(transfer_key, material)
    blob = {
        "schema_version": "1.0",
        "header": {"kid": kid, "alg": "dir", "enc": enc},
        "ciphertext": b64url(ciphertext),
    }
    return b64url(json.dumps(blob).encode())
