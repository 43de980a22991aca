"""The ``akv`` backend: Azure Key Vault Premium / Managed HSM Secure Key Release.

Accepts the vault URL, the key name (and optionally a version), optionally a fixed RFC 9458 key
id to serve the released key under, the credential choice, the CA bundle and the JWS trust roots.
Calls
azure-keyvault-keys' ``KeyClient.release_key`` (async) with azure-identity:

* ``credential="workload-identity"`` (the default, as in AKS): ``WorkloadIdentityCredential``
  from AZURE_CLIENT_ID, AZURE_TENANT_ID, AZURE_FEDERATED_TOKEN_FILE and AZURE_AUTHORITY_HOST;
* ``credential="default"``: ``DefaultAzureCredential`` (managed identity and the rest), only
  when configured so.

Guarantees: one aiohttp session whose TLS is verified against the system roots plus the CA bundle
serves both the SDK and the credential; a fresh nonce is sent with every release and must come
back in the signed answer; the answer is authenticated and unwrapped by
:mod:`gateway.trust.kms.skr` (x5c chain to ``trust_roots``, certificate naming the vault host,
RS256 signature, ``enc`` as asked, wrapped to our wrapping key); only an EC P-256/P-384 PKCS#8
key is accepted. ``enc`` defaults to RSA_AES_KEY_WRAP_256. SDK and transport exceptions are
mapped here, once: a 4xx from the vault is :class:`KeyReleaseRefused` with its code and message.

Key ids (:func:`ohttp_key_id`): RFC 9458 rotation needs a new key id per key, and replicas must
agree on it without talking to each other, so the id is a pure function of the signed answer. A
fixed ``key_id`` wins; else the key version's ``ohttp-key-id`` tag (an integer 0..255, set by the
operator when creating the version); else the first byte of SHA-256 of the version id (the last
segment of the versioned ``kid``). Two versions collide with probability 1/256: the lifecycle then
replaces the key at once (``key_id_reused``, no grace period), as for any reused id; operators
who cannot accept that set the tag.

The SDK's challenge-resource check (the challenge's resource must be a parent domain of the vault
host) is kept for every real vault; it is relaxed only for a loopback vault host, which can only
be a local emulator. Never: logs or puts into an error the attestation token, access tokens, or
key material.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import re
import secrets
import ssl
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import certifi  # requests' CA bundle (azure-core needs requests), for an OS without one
from azure.core.credentials_async import AsyncTokenCredential
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.core.pipeline.transport import AioHttpTransport
from azure.identity.aio import DefaultAzureCredential, WorkloadIdentityCredential
from azure.keyvault.keys.aio import KeyClient
from cryptography import x509
from cryptography.utils import CryptographyDeprecationWarning

from gateway.errors import ConfigError, KeyReleaseError
from gateway.protocol.keys import SymmetricSuite
from gateway.trust.kms import ReleasedKey, WrappingKey, ec_key_from_pkcs8, now_utc, refused
from gateway.trust.kms.skr import ENC_HASHES, PREFERRED_ENC, unwrap_key_hsm, verify_release
from gateway.trust.rest import ssl_context

CREDENTIALS = ("workload-identity", "default")
_LOOPBACK_NAMES = frozenset({"localhost"})
_PEM_BLOCK = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.DOTALL)
KEY_ID_TAG = "ohttp-key-id"
_KEY_ID_TEXT = re.compile(r"0|[1-9][0-9]{0,2}")


def ohttp_key_id(key_url: str, tags: Mapping[str, str]) -> int:
    """The RFC 9458 key id of the released key version ``key_url`` (see the module docstring)."""
    tag = tags.get(KEY_ID_TAG)
    if tag is not None:
        if not _KEY_ID_TEXT.fullmatch(tag) or int(tag) > 255:
            raise KeyReleaseError("the key version's ohttp-key-id tag is not an integer 0..255")
        return int(tag)
    segments = urlsplit(key_url).path.split("/")
    if len(segments) != 4 or not segments[3]:
        raise KeyReleaseError("the released key's id names no key version")
    return hashlib.sha256(segments[3].encode()).digest()[0]


def is_loopback_host(host: str) -> bool:
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _pem_certificates(data: bytes, *, strict: bool) -> list[x509.Certificate]:
    """Each PEM certificate of ``data``; with ``strict`` off, ones cryptography refuses are
    skipped (an OS bundle may hold legacy roots, e.g. with serial 0, that cryptography warns
    about today and will refuse later: neither may stop the gateway)."""
    certificates = []
    for block in _PEM_BLOCK.findall(data):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", CryptographyDeprecationWarning)
            try:
                certificates.append(x509.load_pem_x509_certificate(block))
            except ValueError as error:
                if strict:
                    raise ConfigError("a CA bundle holds an unreadable certificate") from error
    return certificates


def load_trust_roots(ca_bundle: Path | None) -> list[x509.Certificate]:
    """The system's default roots plus ``ca_bundle``: what a release certificate may chain to."""
    system = [ssl.get_default_verify_paths().cafile, certifi.where()]
    roots: list[x509.Certificate] = []
    for path in system:
        if path is not None and Path(path).is_file():
            roots.extend(_pem_certificates(Path(path).read_bytes(), strict=False))
    if ca_bundle is not None:
        try:
            data = ca_bundle.read_bytes()
        except OSError as error:
            raise ConfigError("the CA bundle cannot be read") from error
        roots.extend(_pem_certificates(data, strict=True))
    return roots


def _credential(kind: str, transport: AioHttpTransport) -> AsyncTokenCredential:
    try:
        if kind == "workload-identity":
            return WorkloadIdentityCredential(transport=transport)
        if kind == "default":
            return DefaultAzureCredential(transport=transport)
    except ValueError as error:
        raise ConfigError("workload identity environment variables are missing") from error
    raise ConfigError("unknown Azure credential kind")


class AkvBackend:
    """Secure Key Release from one Key Vault / Managed HSM key; see the module docstring."""

    name = "akv"

    def __init__(
        self,
        vault_url: str,
        key_name: str,
        *,
        key_id: int | None = None,
        key_version: str | None = None,
        credential: str = "workload-identity",
        enc: str = PREFERRED_ENC,
        ca_bundle: Path | None = None,
        trust_roots: Sequence[x509.Certificate] | None = None,
        suites: tuple[SymmetricSuite, ...] = (),
        timeout: float = 30.0,
    ) -> None:
        parts = urlsplit(vault_url)
        if parts.scheme != "https" or not parts.hostname or parts.path not in ("", "/"):
            raise ConfigError("the vault URL must be https://<host> with no path")
        if enc not in ENC_HASHES:
            raise ConfigError("unknown Key Vault key wrapping algorithm")
        if key_id is not None and not 0 <= key_id <= 255:
            raise ConfigError("the released key's key id must be 0..255")
        self.vault_url = vault_url.rstrip("/")
        self.key_name, self.key_version, self.key_id = key_name, key_version, key_id
        self.enc, self.suites = enc, suites
        self._trust_roots = list(trust_roots) if trust_roots is not None else None
        self._ca_bundle = ca_bundle
        self._credential_kind = credential
        self._timeout = timeout
        self._session: aiohttp.ClientSession | None = None
        self._client: KeyClient | None = None
        self._azure_credential: AsyncTokenCredential | None = None
        if credential not in CREDENTIALS:
            raise ConfigError("unknown Azure credential kind")

    def _key_client(self) -> KeyClient:
        if self._client is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=ssl_context(self._ca_bundle)),
                timeout=aiohttp.ClientTimeout(total=self._timeout),
                trust_env=False,
            )
            transport = AioHttpTransport(session=self._session, session_owner=False)
            self._azure_credential = _credential(self._credential_kind, transport)
            host = urlsplit(self.vault_url).hostname or ""
            self._client = KeyClient(
                self.vault_url,
                self._azure_credential,
                transport=AioHttpTransport(session=self._session, session_owner=False),
                verify_challenge_resource=not is_loopback_host(host),
            )
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()
        if self._azure_credential is not None:
            await self._azure_credential.close()
        if self._session is not None:
            await self._session.close()
        self._client = self._azure_credential = self._session = None

    async def _release_jws(self, token: str, nonce: str) -> str:
        client = self._key_client()
        try:
            result = await client.release_key(
                self.key_name, token, version=self.key_version, algorithm=self.enc, nonce=nonce
            )
        except ClientAuthenticationError as error:
            raise KeyReleaseError("authentication to Key Vault failed") from error
        except HttpResponseError as error:
            if error.status_code is not None and 400 <= error.status_code < 500:
                inner: Any = error.error
                raise refused(
                    "Key Vault refused the key release",
                    getattr(inner, "code", None),
                    getattr(inner, "message", None),
                ) from error
            raise KeyReleaseError("Key Vault answered unexpectedly") from error
        except (ServiceRequestError, ServiceResponseError) as error:
            raise KeyReleaseError("Key Vault unreachable") from error
        except AzureError as error:
            raise KeyReleaseError("Key Vault key release failed") from error
        if not isinstance(result.value, str):
            raise KeyReleaseError("Key Vault answer has no value")
        return result.value

    async def release(self, token: str, wrapping_key: WrappingKey) -> list[ReleasedKey]:
        """Release the key under ``token``, wrapped to ``wrapping_key``, and unwrap it."""
        nonce = secrets.token_urlsafe(24)
        jws = await self._release_jws(token, nonce)
        if self._trust_roots is None:
            self._trust_roots = await asyncio.to_thread(load_trust_roots, self._ca_bundle)
        verified = verify_release(
            jws,
            vault_url=self.vault_url,
            key_name=self.key_name,
            nonce=nonce,
            enc=self.enc,
            trust_roots=self._trust_roots,
            now=now_utc(),
        )
        material = await asyncio.to_thread(unwrap_key_hsm, verified.key_hsm, wrapping_key, self.enc)
        private_key = ec_key_from_pkcs8(material)
        key_id = self.key_id
        if key_id is None:
            key_id = ohttp_key_id(verified.key_url, verified.tags)
        return [ReleasedKey(key_id, private_key, now_utc(), verified.key_url, self.suites)]
