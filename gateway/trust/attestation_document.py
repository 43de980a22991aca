"""The attestation document clients fetch before they encrypt (docs/attestation-document.md).

Accepts one :class:`Attestation`: the evidence the gateway collected, the MAA token it got for
it (already verified by the gateway against the pinned issuer) and the exact bytes it bound. Builds
the version-1 JSON document of the contract, byte for byte what
``GET /.well-known/ohttp-gateway/attestation`` serves. Guarantees: ``binding.key_configs`` are the
bytes whose SHA-256 is the first half of ``binding.user_data``, which is the user-data inside the
evidence's runtime data and the token's runtime claims; ``certificates`` is the PEM chain VCEK,
ASK, ARK the evidence was sent to MAA with. Never: includes a private key, the wrapping key's
private half, or anything not already public in the evidence and token.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from gateway.trust.evidence import Evidence, EvidenceKind
from gateway.trust.kms import WrappingKey
from gateway.trust.token import AttestationToken

VERSION = 1
CONSTRUCTION = "user-data = SHA-256(application/ohttp-keys) || SHA-256(nonce)"
_KINDS = {EvidenceKind.SEV_SNP: "snp", EvidenceKind.AZURE_HCL: "azure-hcl"}


@dataclass(frozen=True)
class Attestation:
    """One completed attestation: evidence → MAA token, binding ``key_configs`` and ``nonce``.

    ``wrapping_key`` is the RSA key named in the token's runtime keys, which a KMS wraps released
    keys to (its private half stays with the provider or the TPM).
    """

    provider: str
    route: str
    token: AttestationToken = field(repr=False)
    evidence: Evidence = field(repr=False)
    cert_chain: bytes = field(repr=False)
    key_configs: bytes = field(repr=False)
    nonce: bytes = field(repr=False)
    wrapping_key: WrappingKey = field(repr=False)

    @property
    def expires_at(self) -> int:
        return self.token.expires_at

    @property
    def issued_at(self) -> int:
        return self.token.issued_at


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def document_for(attestation: Attestation, *, dev_mode: bool) -> dict[str, Any]:
    """The document as a JSON-ready dict (see docs/attestation-document.md)."""
    evidence = attestation.evidence
    return {
        "version": VERSION,
        "dev_mode": dev_mode,
        "evidence_provider": attestation.provider,
        "maa": {"issuer": attestation.token.issuer, "route": attestation.route},
        "token": attestation.token.raw,
        "evidence": {
            "kind": _KINDS[evidence.kind],
            "report": _b64(evidence.report),
            "certificates": attestation.cert_chain.decode("ascii"),
            "runtime_data": _b64(evidence.runtime_data),
        },
        "binding": {
            "construction": CONSTRUCTION,
            "key_configs": _b64(attestation.key_configs),
            "key_configs_sha256": hashlib.sha256(attestation.key_configs).hexdigest(),
            "nonce": _b64(attestation.nonce),
            "user_data": evidence.user_data.hex().upper(),
        },
        "issued_at": attestation.issued_at,
        "expires_at": attestation.expires_at,
    }


def encode_document(attestation: Attestation, *, dev_mode: bool) -> bytes:
    return json.dumps(document_for(attestation, dev_mode=dev_mode), separators=(",", ":")).encode()
