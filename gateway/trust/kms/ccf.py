"""The ``ccf`` backend: Azure's confidential KMS (a CCF application), as Confidential Whisper uses.

Accepts the KMS base URL (``https://...``), its pinned service certificate, an optional extra CA
bundle, timeouts and retry bounds. Wire protocol (microsoft/azure-transparent-kms):

* ``GET {kms}/app/listpubkeys``: ``[{"publicKey": <hex KeyConfig>, "receipt": <JSON text>}]``
  for the current key, or 202 while its receipt is not committed yet;
* ``POST {kms}/app/key?kid=N&encrypted=true`` with ``Authorization: Bearer <MAA token>``:
  ``{"kid": N, "key": <base64 RSA-OAEP-SHA256 ciphertext>, "receipt": <JSON text>}``, or 202
  while the receipt is pending. The plaintext is a CBOR COSE_Key P-384 private key
  (:mod:`gateway.trust.kms.cose`), wrapped to the RSA key in the token's runtime keys.

Guarantees, unlike the reference client and server:

* TLS is always verified, against the system roots, the CA bundle and the pinned service
  certificate (the KMS's TLS identity is endorsed by it);
* release is always requested with ``encrypted=true``, and an answer carrying the key in clear
  is refused (:class:`UnencryptedRelease`) and never parsed;
* every receipt is verified (:mod:`gateway.trust.receipts`): a published key is used only if
  its receipt's ``claims_digest`` is SHA-256 of its hex; a released key only if its public half,
  encoded as the KMS publishes it, is bound by the receipt that came with it;
* 202 is retried a bounded number of times (``pending_attempts``), 429/5xx and network failures
  with jittered backoff (:mod:`gateway.trust.rest`); a 4xx is :class:`KeyReleaseRefused` with
  the KMS's code and reason.

Never: logs or puts into an error the token, the wrapped or unwrapped key.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import re
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from gateway.errors import (
    ConfigError,
    KeyConfigError,
    KeyReleaseError,
    KeyUnwrapFailed,
    ReleasedKeyInvalid,
    ReleaseResponseInvalid,
    UnencryptedRelease,
)
from gateway.protocol.keys import AeadId, KdfId, KemId, KeyConfig, SymmetricSuite
from gateway.trust.kms import ReleasedKey, WrappingKey, now_utc, refused
from gateway.trust.kms.cose import decode_cose_key
from gateway.trust.receipts import parse_receipt, public_key_claims_digest, verify_receipt
from gateway.trust.rest import RestClient, RestResponse, RetryPolicy, ssl_context

# The only suite the KMS publishes (OhttpPublicKey.ts): served as is, so the gateway's key config
# is byte for byte the one the ledger receipt binds.
KMS_SUITES = (SymmetricSuite(KdfId.HKDF_SHA384, AeadId.AES_256_GCM),)
_HEX = re.compile(r"[0-9a-fA-F]+")


@dataclass(frozen=True)
class PublishedKey:
    """A public key config the KMS published, with its receipt verified."""

    config: KeyConfig
    public_key_hex: str

    @property
    def key_id(self) -> int:
        return self.config.key_id


def kms_public_key_hex(key_id: int, public_key: bytes) -> str:
    """The KMS's publication of a P-384 key: one RFC 9458 KeyConfig, in lowercase hex."""
    return KeyConfig(key_id, KemId.P384_SHA384, public_key, KMS_SUITES).encode().hex()


def load_service_certificate(path: Path) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError) as error:
        raise ConfigError("the KMS service certificate cannot be read") from error


def _kms_ssl_context(service_cert: x509.Certificate, ca_bundle: Path | None) -> ssl.SSLContext:
    context = ssl_context(ca_bundle)
    try:
        context.load_verify_locations(
            cadata=service_cert.public_bytes(serialization.Encoding.PEM).decode()
        )
    except ssl.SSLError as error:
        raise ConfigError("the KMS service certificate is not a usable trust anchor") from error
    return context


class CcfBackend:
    """Key release from Azure's confidential KMS; see the module docstring."""

    name = "ccf"

    def __init__(
        self,
        url: str,
        service_cert: x509.Certificate,
        *,
        ca_bundle: Path | None = None,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        pending_attempts: int = 5,
        pending_delay: float = 0.5,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme != "https" or not parts.hostname or parts.query or parts.fragment:
            raise ConfigError("the KMS URL must be an https:// URL without query")
        if pending_attempts < 1 or pending_delay < 0:
            raise ConfigError("invalid KMS pending-receipt retry bounds")
        self.url = url.rstrip("/")
        self.service_cert = service_cert
        self._pending_attempts = pending_attempts
        self._pending_delay = pending_delay
        self._rest = RestClient(
            error=KeyReleaseError,
            timeout=timeout,
            retry=retry,
            context=_kms_ssl_context(service_cert, ca_bundle),
        )

    async def aclose(self) -> None:
        await self._rest.close()

    async def _call(self, method: str, path: str, headers: dict[str, str] | None) -> Any:
        """The JSON of the first non-202 answer; a 4xx is the KMS's refusal."""
        for attempt in range(self._pending_attempts):
            response = await self._rest.request(method, self.url + path, headers=headers)
            if response.status != 202:
                return _json_or_refusal(response)
            if attempt + 1 < self._pending_attempts:
                await asyncio.sleep(self._pending_delay)
        raise KeyReleaseError("KMS receipt still pending after retries")

    async def list_public_keys(self) -> list[PublishedKey]:
        """The published key(s), each with its receipt verified against the service cert."""
        answer = await self._call("GET", "/app/listpubkeys", None)
        if not isinstance(answer, list) or not answer:
            raise ReleaseResponseInvalid("KMS public key list is malformed")
        return [self._published(entry) for entry in answer]

    def _published(self, entry: object) -> PublishedKey:
        if not isinstance(entry, dict) or not isinstance(entry.get("publicKey"), str):
            raise ReleaseResponseInvalid("KMS public key list is malformed")
        public_key_hex = entry["publicKey"]
        receipt = parse_receipt(entry.get("receipt"))
        verify_receipt(
            receipt,
            service_cert=self.service_cert,
            claims_digest=public_key_claims_digest(public_key_hex),
        )
        try:
            config = KeyConfig.decode(bytes.fromhex(public_key_hex))
        except (ValueError, KeyConfigError) as error:
            raise ReleaseResponseInvalid("KMS public key is not a key config") from error
        return PublishedKey(config, public_key_hex)

    async def release(self, token: str, wrapping_key: WrappingKey) -> list[ReleasedKey]:
        """Release every currently published key (the KMS publishes the latest)."""
        published = await self.list_public_keys()
        return [await self.release_key(token, wrapping_key, key.key_id) for key in published]

    async def release_key(self, token: str, wrapping_key: WrappingKey, key_id: int) -> ReleasedKey:
        """Release key ``key_id`` (e.g. one a request named that is not loaded yet)."""
        if not 0 <= key_id <= 255:
            raise ConfigError("KMS key ids are 0..255")
        headers = {"Authorization": f"Bearer {token}"}
        answer = await self._call("POST", f"/app/key?kid={key_id}&encrypted=true", headers)
        if not isinstance(answer, dict) or answer.get("kid") != key_id:
            raise ReleaseResponseInvalid("KMS released another key id than requested")
        wrapped = _wrapped_key(answer.get("key"))
        plaintext = await asyncio.to_thread(wrapping_key.unwrap, wrapped, hashes.SHA256())
        cose = decode_cose_key(plaintext)
        if cose.key_id != key_id:
            raise ReleasedKeyInvalid("released key names another key id")
        public_key = cose.private_key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        verify_receipt(
            parse_receipt(answer.get("receipt")),
            service_cert=self.service_cert,
            claims_digest=public_key_claims_digest(kms_public_key_hex(key_id, public_key)),
        )
        return ReleasedKey(key_id, cose.private_key, now_utc(), f"ccf kid {key_id}", KMS_SUITES)


def _json_or_refusal(response: RestResponse) -> Any:
    document = response.json()
    if response.status == 200:
        if document is None:
            raise ReleaseResponseInvalid("KMS answer is not JSON")
        return document
    error = document.get("error") if isinstance(document, dict) else None
    code, message = (
        (error.get("code"), error.get("message")) if isinstance(error, dict) else ("", "")
    )
    if 400 <= response.status < 500:
        raise refused("KMS refused the key release", code, message)
    raise KeyReleaseError("KMS answered unexpectedly")


def _wrapped_key(value: object) -> bytes:
    if not isinstance(value, str) or not value:
        raise ReleaseResponseInvalid("KMS answer has no key")
    if _HEX.fullmatch(value):
        # The reference KMS's encrypted=false answer: the COSE_Key in clear, as hex.
        raise UnencryptedRelease()
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as error:
        raise KeyUnwrapFailed("wrapped key is not base64") from error
