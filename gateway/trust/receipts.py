"""CCF ledger receipts, as Azure's confidential KMS returns them (pure).

Accepts a receipt (the JSON object, or its text as the KMS embeds it), the pinned service
certificate, and the claims digest the caller expects. A receipt is::

    {"cert": "<PEM node certificate>", "node_id": "<hex>",
     "leaf_components": {"write_set_digest": "<hex 32>", "commit_evidence": "ce:...",
                         "claims_digest": "<hex 32>"},
     "proof": [{"left": "<hex 32>"} | {"right": "<hex 32>"}, ...],
     "signature": "<base64 DER ECDSA>",
     "service_endorsements": ["<PEM>", ...]}            (optional: recovered services)

Guarantees of :func:`verify_receipt`, each failure its own :class:`ReceiptError` subclass:

* the leaf is SHA-256(write_set_digest || SHA-256(commit_evidence) || claims_digest), folded
  with each proof sibling on its side into the Merkle root;
* the node's ECDSA signature over the root (prehashed SHA-256) verifies
  (:class:`ReceiptSignatureInvalid`);
* the node certificate is signed by the pinned service certificate, directly or through the
  ``service_endorsements`` chain (:class:`ReceiptEndorsementInvalid`);
* ``claims_digest`` equals the expected digest (:class:`ReceiptClaimsMismatch`); for a KMS public
  key that is :func:`public_key_claims_digest`, SHA-256 of the key's hex text, which the KMS sets
  when it writes the key: the receipt then proves the ledger holds this exact key.

Unlike Microsoft's reference client, every check is fatal. Never: fetches anything.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import itertools
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, utils

from gateway.errors import (
    MalformedReceipt,
    ReceiptClaimsMismatch,
    ReceiptEndorsementInvalid,
    ReceiptSignatureInvalid,
)

DIGEST_SIZE = 32
MAX_PROOF_LENGTH = 64  # a tree of 2**64 transactions; anything longer is not a CCF receipt
MAX_RECEIPT_SIZE = 64 * 1024


@dataclass(frozen=True)
class Receipt:
    """A parsed receipt; nothing in it is trusted until :func:`verify_receipt` returns."""

    cert: x509.Certificate
    node_key: ec.EllipticCurvePublicKey
    node_id: str
    signature: bytes
    write_set_digest: bytes
    commit_evidence: str
    claims_digest: bytes
    proof: tuple[tuple[bool, bytes], ...]  # (sibling is on the left, sibling digest)
    endorsements: tuple[x509.Certificate, ...] = ()

    @property
    def leaf(self) -> bytes:
        evidence = hashlib.sha256(self.commit_evidence.encode()).digest()
        return hashlib.sha256(self.write_set_digest + evidence + self.claims_digest).digest()

    @property
    def root(self) -> bytes:
        current = self.leaf
        for left, sibling in self.proof:
            pair = sibling + current if left else current + sibling
            current = hashlib.sha256(pair).digest()
        return current


def public_key_claims_digest(public_key_hex: str) -> bytes:
    """What the KMS binds a key with: SHA-256 of the public key's hex text (UTF-8)."""
    return hashlib.sha256(public_key_hex.encode("utf-8")).digest()


def _digest(value: object) -> bytes:
    if not isinstance(value, str) or len(value) != 2 * DIGEST_SIZE:
        raise MalformedReceipt("receipt digest is not 32 bytes of hex")
    try:
        return bytes.fromhex(value)
    except ValueError as error:
        raise MalformedReceipt("receipt digest is not 32 bytes of hex") from error


def _certificate(value: object) -> x509.Certificate:
    if not isinstance(value, str):
        raise MalformedReceipt("receipt certificate is missing")
    try:
        return x509.load_pem_x509_certificate(value.encode())
    except (ValueError, UnicodeEncodeError, x509.InvalidVersion) as error:
        raise MalformedReceipt("receipt certificate is malformed") from error


def _proof(value: object) -> tuple[tuple[bool, bytes], ...]:
    if not isinstance(value, list) or len(value) > MAX_PROOF_LENGTH:
        raise MalformedReceipt("receipt proof is malformed")
    steps = []
    for step in value:
        if not isinstance(step, dict) or len(step) != 1:
            raise MalformedReceipt("receipt proof is malformed")
        ((side, digest),) = step.items()
        if side not in ("left", "right"):
            raise MalformedReceipt("receipt proof is malformed")
        steps.append((side == "left", _digest(digest)))
    return tuple(steps)


def _object(data: object) -> Mapping[str, Any]:
    if isinstance(data, str | bytes):
        if len(data) > MAX_RECEIPT_SIZE:
            raise MalformedReceipt("receipt is too large")
        try:
            data = json.loads(data)
        except (ValueError, UnicodeDecodeError) as error:
            raise MalformedReceipt() from error
    if not isinstance(data, dict):
        raise MalformedReceipt()
    return data


def parse_receipt(data: object) -> Receipt:
    """A receipt from its JSON object or text; any shape error is :class:`MalformedReceipt`."""
    receipt = _object(data)
    leaf = receipt.get("leaf_components")
    if not isinstance(leaf, dict):
        raise MalformedReceipt("receipt has no leaf components")
    evidence, node_id = leaf.get("commit_evidence"), receipt.get("node_id")
    if not isinstance(evidence, str) or not isinstance(node_id, str):
        raise MalformedReceipt()
    signature = receipt.get("signature")
    if not isinstance(signature, str):
        raise MalformedReceipt("receipt has no signature")
    try:
        raw_signature = base64.b64decode(signature, validate=True)
    except (binascii.Error, ValueError) as error:
        raise MalformedReceipt("receipt signature is not base64") from error
    endorsements = receipt.get("service_endorsements", [])
    if not isinstance(endorsements, list):
        raise MalformedReceipt()
    cert = _certificate(receipt.get("cert"))
    try:
        node_key = cert.public_key()
    except (ValueError, UnsupportedAlgorithm) as error:
        raise MalformedReceipt("receipt node key is malformed") from error
    if not isinstance(node_key, ec.EllipticCurvePublicKey):
        raise MalformedReceipt("receipt node key is not an EC key")
    return Receipt(
        cert=cert,
        node_key=node_key,
        node_id=node_id,
        signature=raw_signature,
        write_set_digest=_digest(leaf.get("write_set_digest")),
        commit_evidence=evidence,
        claims_digest=_digest(leaf.get("claims_digest")),
        proof=_proof(receipt.get("proof")),
        endorsements=tuple(_certificate(e) for e in endorsements),
    )


def _check_endorsement(receipt: Receipt, service_cert: x509.Certificate) -> None:
    chain = (receipt.cert, *receipt.endorsements, service_cert)
    for subject, issuer in itertools.pairwise(chain):
        try:
            subject.verify_directly_issued_by(issuer)
        except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm) as error:
            raise ReceiptEndorsementInvalid() from error


def verify_receipt(
    receipt: Receipt, *, service_cert: x509.Certificate, claims_digest: bytes
) -> None:
    """Check a receipt against the pinned service certificate; see the module docstring."""
    if receipt.claims_digest != claims_digest:
        raise ReceiptClaimsMismatch()
    try:
        receipt.node_key.verify(
            receipt.signature, receipt.root, ec.ECDSA(utils.Prehashed(hashes.SHA256()))
        )
    except InvalidSignature as error:
        raise ReceiptSignatureInvalid() from error
    _check_endorsement(receipt, service_cert)
