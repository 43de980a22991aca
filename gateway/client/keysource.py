"""Where the client gets what it verifies: key configs, the attestation document, the MAA JWKS.

Accepts an aiohttp session and URLs. :func:`fetch_key_configs` GETs ``application/ohttp-keys``
from ``{base}/.well-known/ohttp-gateway`` (``base`` is the relay, which forwards the GET to its
one gateway, or the gateway itself); :func:`fetch_document` GETs the attestation document;
:func:`fetch_jwks` GETs ``{issuer}/certs`` with TLS verified against the system roots and the
policy's CA bundle; :func:`kms_key_configs` asks Azure's confidential KMS ``/app/listpubkeys``
and keeps a key only if its ledger receipt verifies (:class:`CcfBackend` does the checking).

Guarantees: bodies are read with a size bound; a key list that does not decode is refused whole
(RFC 9458 §3.2: no partial recovery); failures are typed (:class:`ClientConnectionFailed`,
:class:`OuterResponseRefused`, :class:`AttestationDocumentUnavailable`,
:class:`SigningKeysInvalid`).
Never does: follow redirects, or send anything but a bare GET.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp

from gateway.errors import (
    AttestationDocumentUnavailable,
    ClientConnectionFailed,
    GatewayError,
    OuterResponseRefused,
    SigningKeysInvalid,
)
from gateway.protocol.keys import KeyConfig, decode_key_configs, encode_key_configs
from gateway.trust.kms.ccf import CcfBackend, load_service_certificate
from gateway.trust.rest import RestClient, ssl_context

KEYS_PATH = "/.well-known/ohttp-gateway"
DOCUMENT_PATH = "/.well-known/ohttp-gateway/attestation"
MAX_KEYS_SIZE = 64 * 1024
MAX_DOCUMENT_SIZE = 512 * 1024


async def get_bounded(
    session: aiohttp.ClientSession, url: str, limit: int, error: type[GatewayError]
) -> bytes:
    try:
        async with session.get(url, allow_redirects=False) as answer:
            body = await answer.content.read(limit + 1)
            status = answer.status
    except (aiohttp.ClientError, TimeoutError) as failure:
        raise ClientConnectionFailed("relay or gateway unreachable") from failure
    if status != 200:
        raise error("relay or gateway refused the GET")
    if len(body) > limit:
        raise error("answer too large")
    return body


async def fetch_key_configs(session: aiohttp.ClientSession, base: str) -> bytes:
    body = await get_bounded(session, base + KEYS_PATH, MAX_KEYS_SIZE, OuterResponseRefused)
    decode_key_configs(body)  # refuses a malformed list whole
    return body


async def fetch_document(session: aiohttp.ClientSession, base: str) -> bytes:
    return await get_bounded(
        session, base + DOCUMENT_PATH, MAX_DOCUMENT_SIZE, AttestationDocumentUnavailable
    )


async def fetch_jwks(issuer: str, ca_bundle: Path | None) -> dict[str, Any]:
    async with RestClient(error=SigningKeysInvalid, context=ssl_context(ca_bundle)) as rest:
        answer = await rest.request("GET", issuer.rstrip("/") + "/certs")
    document = answer.json() if answer.status == 200 else None
    if not isinstance(document, dict):
        raise SigningKeysInvalid("attestation service signing keys could not be fetched")
    return document


async def kms_key_configs(url: str, service_cert: Path, ca_bundle: Path | None) -> bytes:
    """The KMS's published key configs, each bound by a verified receipt, as ohttp-keys bytes."""
    backend = CcfBackend(url, load_service_certificate(service_cert), ca_bundle=ca_bundle)
    try:
        published = await backend.list_public_keys()
    finally:
        await backend.aclose()
    configs: list[KeyConfig] = [key.config for key in published]
    return encode_key_configs(configs)


def describe(configs: bytes) -> list[dict[str, Any]]:
    """A JSON-ready summary of key configs (public data only)."""
    return [
        {
            "key_id": config.key_id,
            "kem": config.kem_id.name,
            "suites": [f"{s.kdf_id.name}/{s.aead_id.name}" for s in config.suites],
            "public_key": config.public_key.hex(),
        }
        for config in decode_key_configs(configs)
    ]


def dumps(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True)
