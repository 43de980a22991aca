"""The gateway's attestation document, parsed strictly (docs/attestation-document.md, version 1).

Accepts the bytes ``GET /.well-known/ohttp-gateway/attestation`` answered. Guarantees: a
:class:`AttestationDocument` only if every section the contract names is present and well typed,
base64 and hex decode, and ``binding.key_configs_sha256`` is the SHA-256 of ``binding.key_configs``;
otherwise :class:`AttestationDocumentInvalid` (or :class:`ClaimsMissing` for an absent section),
whose fixed message names the section. Never does: trust anything it parsed (that is
:mod:`gateway.client.verify`'s job), or put document contents into an error.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from dataclasses import dataclass, field
from typing import Any

from gateway.errors import AttestationDocumentInvalid, ClaimsMissing

VERSION = 1
MAX_DOCUMENT_SIZE = 512 * 1024
EVIDENCE_KINDS = frozenset({"snp", "azure-hcl"})
SECTIONS = ("maa", "evidence", "binding")


@dataclass(frozen=True)
class AttestationDocument:
    dev_mode: bool
    evidence_provider: str
    maa_issuer: str
    maa_route: str
    token: str = field(repr=False)
    evidence_kind: str
    report: bytes = field(repr=False)
    certificates: bytes = field(repr=False)
    runtime_data: bytes = field(repr=False)
    key_configs: bytes = field(repr=False)
    nonce: bytes = field(repr=False)
    user_data: bytes = field(repr=False)
    issued_at: int
    expires_at: int

    @property
    def simulated(self) -> bool:
        return self.dev_mode or self.evidence_provider == "simulated"


def parse_document(data: bytes) -> AttestationDocument:
    if len(data) > MAX_DOCUMENT_SIZE:
        raise AttestationDocumentInvalid("attestation document is too large")
    try:
        document = json.loads(data)
    except (ValueError, RecursionError) as error:
        raise AttestationDocumentInvalid("attestation document is not JSON") from error
    if not isinstance(document, dict) or document.get("version") != VERSION:
        raise AttestationDocumentInvalid("attestation document is not version 1")
    for name in SECTIONS:
        if not isinstance(document.get(name), dict):
            raise ClaimsMissing(f"attestation document lacks its {name} section")
    maa, evidence, binding = (document[name] for name in SECTIONS)
    kind = _text(evidence, "kind", "evidence")
    if kind not in EVIDENCE_KINDS:
        raise AttestationDocumentInvalid("attestation document names an unknown evidence kind")
    key_configs = _b64(binding, "key_configs", "binding")
    digest = _hex(binding, "key_configs_sha256", "binding")
    if not hmac.compare_digest(digest, hashlib.sha256(key_configs).digest()):
        raise AttestationDocumentInvalid("attestation document binding hash is not its key configs")
    return AttestationDocument(
        dev_mode=_flag(document, "dev_mode"),
        evidence_provider=_text(document, "evidence_provider", "top level"),
        maa_issuer=_text(maa, "issuer", "maa").rstrip("/"),
        maa_route=_text(maa, "route", "maa"),
        token=_text(document, "token", "token"),
        evidence_kind=kind,
        report=_b64(evidence, "report", "evidence"),
        certificates=_text(evidence, "certificates", "evidence").encode("ascii", "replace"),
        runtime_data=_b64(evidence, "runtime_data", "evidence"),
        key_configs=key_configs,
        nonce=_b64(binding, "nonce", "binding"),
        user_data=_hex(binding, "user_data", "binding"),
        issued_at=_int(document, "issued_at"),
        expires_at=_int(document, "expires_at"),
    )


def _text(section: dict[str, Any], name: str, where: str) -> str:
    value = section.get(name)
    if not isinstance(value, str) or not value:
        raise AttestationDocumentInvalid(f"attestation document {where} lacks {name}")
    return value


def _b64(section: dict[str, Any], name: str, where: str) -> bytes:
    try:
        return base64.b64decode(_text(section, name, where), validate=True)
    except binascii.Error as error:
        raise AttestationDocumentInvalid(
            f"attestation document {where} {name} is not base64"
        ) from (error)


def _hex(section: dict[str, Any], name: str, where: str) -> bytes:
    try:
        return bytes.fromhex(_text(section, name, where))
    except ValueError as error:
        raise AttestationDocumentInvalid(f"attestation document {where} {name} is not hex") from (
            error
        )


def _flag(section: dict[str, Any], name: str) -> bool:
    value = section.get(name)
    if not isinstance(value, bool):
        raise AttestationDocumentInvalid(f"attestation document lacks {name}")
    return value


def _int(section: dict[str, Any], name: str) -> int:
    value = section.get(name)
    if not isinstance(value, int) or isinstance(value, bool):
        raise AttestationDocumentInvalid(f"attestation document lacks {name}")
    return value
