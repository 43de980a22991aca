"""DSSE envelopes (github.com/secure-systems-lab/dsse, protocol v1) signed with ECDSA P-256.

Accepts a payload type and payload bytes to sign, and envelope bytes to verify. Guarantees that a
signature covers PAE(payloadType, payload), the pre-authentication encoding
``"DSSEv1" SP LEN(type) SP type SP LEN(body) SP body``, so neither the type nor the body can be
swapped; signatures are DER ECDSA over SHA-256 (what sigstore and in-toto verifiers accept); the key
id is the SHA-256 of the public key's SubjectPublicKeyInfo. Any malformed envelope raises
:class:`EnvelopeMalformed`, a signature that does not verify :class:`SignatureInvalid`; messages are
fixed strings and never echo envelope content. Never accepts another curve or hash.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tools.sbom.errors import EnvelopeMalformed, KeyUnusable, SignatureInvalid

_MAX_ENVELOPE_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class Signature:
    keyid: str
    sig: bytes


@dataclass(frozen=True)
class Envelope:
    payload_type: str
    payload: bytes
    signatures: tuple[Signature, ...]

    def to_json(self) -> bytes:
        document = {
            "payload": base64.b64encode(self.payload).decode("ascii"),
            "payloadType": self.payload_type,
            "signatures": [
                {"keyid": s.keyid, "sig": base64.b64encode(s.sig).decode("ascii")}
                for s in self.signatures
            ],
        }
        return json.dumps(document, indent=2).encode("utf-8") + b"\n"


def pae(payload_type: str, payload: bytes) -> bytes:
    """The DSSE v1 pre-authentication encoding."""
    kind = payload_type.encode("utf-8")
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


def keyid(public_key: ec.EllipticCurvePublicKey) -> str:
    spki = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(spki).hexdigest()


def load_private_key(pem: bytes) -> ec.EllipticCurvePrivateKey:
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise KeyUnusable("the signing key is not an unencrypted PEM private key") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise KeyUnusable("the signing key is not an ECDSA P-256 key")
    return key


def load_public_key(pem: bytes) -> ec.EllipticCurvePublicKey:
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, TypeError) as exc:
        raise KeyUnusable("the verification key is not a PEM public key") from exc
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise KeyUnusable("the verification key is not an ECDSA P-256 key")
    return key


def sign(payload_type: str, payload: bytes, key: ec.EllipticCurvePrivateKey) -> Envelope:
    sig = key.sign(pae(payload_type, payload), ec.ECDSA(hashes.SHA256()))
    return Envelope(payload_type, payload, (Signature(keyid(key.public_key()), sig),))


def verify(envelope: Envelope, public_key: ec.EllipticCurvePublicKey) -> None:
    """Passes when a signature with the key's id verifies; raises SignatureInvalid otherwise."""
    wanted = keyid(public_key)
    message = pae(envelope.payload_type, envelope.payload)
    for signature in envelope.signatures:
        # An empty keyid is allowed by DSSE ("hint only"); a different one is another signer.
        if signature.keyid not in ("", wanted):
            continue
        try:
            public_key.verify(signature.sig, message, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            continue
        return
    raise SignatureInvalid("no signature of the envelope verifies with the given key")


def _b64(text: object) -> bytes:
    if not isinstance(text, str):
        raise EnvelopeMalformed("a base64 field is not a string")
    try:
        # DSSE accepts standard and URL-safe base64; normalise to standard and decode strictly.
        normalised = text.replace("-", "+").replace("_", "/")
        return base64.b64decode(normalised + "=" * (-len(normalised) % 4), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise EnvelopeMalformed("a base64 field does not decode") from exc


def decode(data: bytes) -> Envelope:
    """Parses envelope JSON bytes; raises EnvelopeMalformed on anything else."""
    if len(data) > _MAX_ENVELOPE_BYTES:
        raise EnvelopeMalformed("the envelope is too large")
    try:
        document = json.loads(data)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, bad UTF-8, huge ints
        raise EnvelopeMalformed("the envelope is not JSON") from exc
    if not isinstance(document, dict):
        raise EnvelopeMalformed("the envelope is not a JSON object")
    payload_type = document.get("payloadType")
    if not isinstance(payload_type, str) or not payload_type:
        raise EnvelopeMalformed("the envelope has no payloadType")
    raw_signatures = document.get("signatures")
    if not isinstance(raw_signatures, list) or not raw_signatures:
        raise EnvelopeMalformed("the envelope has no signatures")
    signatures = []
    for item in raw_signatures:
        if not isinstance(item, dict):
            raise EnvelopeMalformed("a signature is not a JSON object")
        kid = item.get("keyid", "")
        if not isinstance(kid, str):
            raise EnvelopeMalformed("a signature keyid is not a string")
        signatures.append(Signature(kid, _b64(item.get("sig"))))
    return Envelope(payload_type, _b64(document.get("payload")), tuple(signatures))
