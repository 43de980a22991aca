"""MAA request and response bodies, both directions, as pure functions over bytes.

One module defines the wire shapes so that the client (:mod:`gateway.trust.maa`) and the MAA
emulator cannot drift apart. Shapes, from Azure's REST spec and Microsoft's own clients
(see shared/research/attestation-and-key-release.md §2.2 and §3.1):

* ``SevSnpVm`` (api-version 2022-08-01)::

    {"report": b64url(JSON {"SnpReport": b64url(report), "VcekCertChain": b64url(PEM)}),
     "runtimeData": {"data": b64url(bytes), "dataType": "JSON"},
     "initTimeData": {"data": b64url(bytes), "dataType": "JSON"},   # optional
     "nonce": "..."}                                                 # optional

* ``AzureGuest`` (api-version 2020-10-01): ``{"AttestationInfo": b64url(JSON {...})}`` with the
  OS fields, ``TcgLogs``, ``ClientPayload``, ``TpmInfo`` (standard base64 fields) and
  ``IsolationInfo {"Type": "SevSnp", "Evidence": {"Proof": b64url(JSON {SnpReport,
  VcekCertChain}), "RunTimeData": b64url(HCL runtime claims)}}``.
* The attestation nonce of ``AzureGuest`` (the TPM quote's and certification's qualifying data)
  travels in ``ClientPayload`` as ``{"nonce": hex}``, which MAA echoes as
  ``x-ms-runtime.client-payload``; the protocol has no other place for a verifier's challenge.
* The sealed ``AzureGuest`` answer: ``{"token": b64url(JSON {"EncryptedInnerKey",
  "EncryptionParams": {"Iv"}, "AuthenticationData", "Jwt"})}`` (standard base64 values): the JWT
  under AES-GCM with AAD ``"Transport Key"``, the tag apart, the AES key encrypted to the TPM
  ephemeral key.

Decoders accept padded or unpadded base64url and raise only :class:`EvidenceError` (requests) or
:class:`VerificationError` (a sealed answer that does not open). Never: logs, or copies payload
bytes into an error message.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from gateway.errors import EvidenceError, VerificationError

PROTOCOL_VERSION = "2.0"
TRANSPORT_KEY_AAD = b"Transport Key"
GCM_TAG_BYTES = 16
GCM_IV_BYTES = 12
INNER_KEY_BYTES = 32
_B64URL = re.compile(r"[A-Za-z0-9_-]*={0,2}")


# --- base64 -----------------------------------------------------------------------------------


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def from_b64url(text: object, what: str) -> bytes:
    if not isinstance(text, str) or not _B64URL.fullmatch(text):
        raise EvidenceError(f"{what} is not base64url")
    stripped = text.rstrip("=")
    if len(stripped) % 4 == 1:
        raise EvidenceError(f"{what} is not base64url")
    return base64.urlsafe_b64decode(stripped + "=" * (-len(stripped) % 4))


def from_b64(text: object, what: str) -> bytes:
    if not isinstance(text, str):
        raise EvidenceError(f"{what} is not base64")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as error:
        raise EvidenceError(f"{what} is not base64") from error


def _json_object(data: bytes, what: str) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except (ValueError, UnicodeDecodeError) as error:
        raise EvidenceError(f"{what} is not JSON") from error
    if not isinstance(value, dict):
        raise EvidenceError(f"{what} is not a JSON object")
    return value


def _member(document: dict[str, Any], name: str, kind: type, what: str) -> Any:
    value = document.get(name)
    if not isinstance(value, kind) or isinstance(value, bool) != (kind is bool):
        raise EvidenceError(f"{what} lacks a valid {name}")
    return value


# --- evidence shared by both routes ---------------------------------------------------------


@dataclass(frozen=True)
class SnpEvidence:
    """An SNP attestation report and the PEM chain VCEK, ASK, ARK that vouches for it."""

    report: bytes = field(repr=False)
    vcek_cert_chain: bytes = field(repr=False)

    def encode(self) -> str:
        proof = {"SnpReport": b64url(self.report), "VcekCertChain": b64url(self.vcek_cert_chain)}
        return b64url(json.dumps(proof).encode())

    @classmethod
    def decode(cls, text: object, what: str) -> SnpEvidence:
        document = _json_object(from_b64url(text, what), what)
        return cls(
            report=from_b64url(document.get("SnpReport"), "SnpReport"),
            vcek_cert_chain=from_b64url(document.get("VcekCertChain"), "VcekCertChain"),
        )


# --- SevSnpVm --------------------------------------------------------------------------------


@dataclass(frozen=True)
class SevSnpVmRequest:
    """The body of ``POST /attest/SevSnpVm``."""

    evidence: SnpEvidence
    runtime_data: bytes = field(repr=False)
    init_time_data: bytes | None = field(default=None, repr=False)
    nonce: str | None = None

    def encode(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "report": self.evidence.encode(),
            "runtimeData": {"data": b64url(self.runtime_data), "dataType": "JSON"},
        }
        if self.init_time_data is not None:
            body["initTimeData"] = {"data": b64url(self.init_time_data), "dataType": "JSON"}
        if self.nonce is not None:
            body["nonce"] = self.nonce
        return body

    @classmethod
    def decode(cls, body: bytes) -> SevSnpVmRequest:
        document = _json_object(body, "request")
        if "draftPolicyForAttestation" in document:
            raise EvidenceError("draft policies are not supported")
        nonce = document.get("nonce")
        if nonce is not None and not isinstance(nonce, str):
            raise EvidenceError("nonce is not a string")
        init_time = document.get("initTimeData")
        return cls(
            evidence=SnpEvidence.decode(document.get("report"), "report"),
            runtime_data=_typed_data(document.get("runtimeData"), "runtimeData"),
            init_time_data=None if init_time is None else _typed_data(init_time, "initTimeData"),
            nonce=nonce,
        )


def _typed_data(value: object, what: str) -> bytes:
    if not isinstance(value, dict):
        raise EvidenceError(f"{what} is not an object")
    # MAA parses JSON data into claims; SNP evidence with binary data is not supported by it.
    if value.get("dataType") != "JSON":
        raise EvidenceError(f"{what} dataType must be JSON")
    data = from_b64url(value.get("data"), what)
    _json_object(data, what)
    return data


# --- AzureGuest ------------------------------------------------------------------------------


@dataclass(frozen=True)
class TpmEvidence:
    """What the vTPM contributes to ``AzureGuest``: TPM wire structures, as the TPM made them.

    ``aik_pub`` and ``enc_key_pub`` are marshalled TPM2B_PUBLIC; ``pcr_quote`` and
    ``enc_key_certify_info`` are marshalled TPMS_ATTEST; the signatures are the raw RSASSA
    signature bytes by the AIK (as Microsoft's clients send them); ``pcrs`` maps each quoted PCR
    index to its SHA-256 value, in ``PcrSet`` order.
    """

    aik_cert: bytes = field(repr=False)
    aik_pub: bytes = field(repr=False)
    pcr_quote: bytes = field(repr=False)
    pcr_signature: bytes = field(repr=False)
    pcrs: tuple[tuple[int, bytes], ...] = field(repr=False)
    enc_key_pub: bytes = field(repr=False)
    enc_key_certify_info: bytes = field(repr=False)
    enc_key_certify_info_signature: bytes = field(repr=False)

    def encode(self) -> dict[str, Any]:
        return {
            "AikCert": b64(self.aik_cert),
            "AikPub": b64(self.aik_pub),
            "PcrQuote": b64(self.pcr_quote),
            "PcrSignature": b64(self.pcr_signature),
            "EncKeyPub": b64(self.enc_key_pub),
            "EncKeyCertifyInfo": b64(self.enc_key_certify_info),
            "EncKeyCertifyInfoSignature": b64(self.enc_key_certify_info_signature),
            "PcrSet": [index for index, _ in self.pcrs],
            "PCRs": [{"Index": index, "Digest": b64(digest)} for index, digest in self.pcrs],
        }

    @classmethod
    def decode(cls, document: object) -> TpmEvidence:
        if not isinstance(document, dict):
            raise EvidenceError("TpmInfo is not an object")

        def field_(name: str) -> bytes:
            return from_b64(document.get(name), name)

        return cls(
            aik_cert=field_("AikCert"),
            aik_pub=field_("AikPub"),
            pcr_quote=field_("PcrQuote"),
            pcr_signature=field_("PcrSignature"),
            pcrs=_decode_pcrs(document),
            enc_key_pub=field_("EncKeyPub"),
            enc_key_certify_info=field_("EncKeyCertifyInfo"),
            enc_key_certify_info_signature=field_("EncKeyCertifyInfoSignature"),
        )


def _decode_pcrs(document: dict[str, Any]) -> tuple[tuple[int, bytes], ...]:
    pcr_set = _member(document, "PcrSet", list, "TpmInfo")
    entries = _member(document, "PCRs", list, "TpmInfo")
    pcrs = []
    for entry in entries:
        if not isinstance(entry, dict):
            raise EvidenceError("a PCR entry is not an object")
        index = _member(entry, "Index", int, "a PCR entry")
        if not 0 <= index < 24:
            raise EvidenceError("a PCR index is out of range")
        pcrs.append((index, from_b64(entry.get("Digest"), "PCR digest")))
    if [index for index, _ in pcrs] != pcr_set or len(set(pcr_set)) != len(pcr_set):
        raise EvidenceError("PcrSet does not match the PCRs")
    return tuple(pcrs)


@dataclass(frozen=True)
class OsInfo:
    """The guest OS description MAA expects; informational, echoed as claims."""

    os_type: str = "Linux"
    distro: str = "Debian"
    version_major: str = "12"
    version_minor: str = "0"
    build: str = "ohttp-gateway"


@dataclass(frozen=True)
class AzureGuestRequest:
    """The body of ``POST /attest/AzureGuest``."""

    tpm: TpmEvidence
    snp: SnpEvidence
    runtime_data: bytes = field(repr=False)
    tcg_logs: bytes = field(default=b"", repr=False)
    client_payload: bytes = field(default=b"", repr=False)
    os: OsInfo = OsInfo()

    def encode(self) -> dict[str, Any]:
        info = {
            "AttestationProtocolVersion": PROTOCOL_VERSION,
            "OSType": b64(self.os.os_type.encode()),
            "OSDistro": b64(self.os.distro.encode()),
            "OSVersionMajor": self.os.version_major,
            "OSVersionMinor": self.os.version_minor,
            "OSBuild": b64(self.os.build.encode()),
            "TcgLogs": b64(self.tcg_logs),
            "ClientPayload": b64(self.client_payload),
            "TpmInfo": self.tpm.encode(),
            "IsolationInfo": {
                "Type": "SevSnp",
                "Evidence": {
                    "Proof": self.snp.encode(),
                    "RunTimeData": b64url(self.runtime_data),
                },
            },
        }
        return {"AttestationInfo": b64url(json.dumps(info).encode())}

    @classmethod
    def decode(cls, body: bytes) -> AzureGuestRequest:
        outer = _json_object(body, "request")
        info = _json_object(from_b64url(outer.get("AttestationInfo"), "AttestationInfo"), "info")
        if info.get("AttestationProtocolVersion") != PROTOCOL_VERSION:
            raise EvidenceError("unsupported AttestationProtocolVersion")
        isolation = _member(info, "IsolationInfo", dict, "AttestationInfo")
        if isolation.get("Type") != "SevSnp":
            raise EvidenceError("only SevSnp isolation is supported")
        evidence = _member(isolation, "Evidence", dict, "IsolationInfo")
        client_payload = from_b64(info.get("ClientPayload", ""), "ClientPayload")
        if client_payload:
            _json_object(client_payload, "ClientPayload")
        return cls(
            tpm=TpmEvidence.decode(info.get("TpmInfo")),
            snp=SnpEvidence.decode(evidence.get("Proof"), "Proof"),
            runtime_data=from_b64url(evidence.get("RunTimeData"), "RunTimeData"),
            tcg_logs=from_b64(info.get("TcgLogs", ""), "TcgLogs"),
            client_payload=client_payload,
            os=OsInfo(
                os_type=_b64_text(info, "OSType"),
                distro=_b64_text(info, "OSDistro"),
                version_major=_member(info, "OSVersionMajor", str, "AttestationInfo"),
                version_minor=_member(info, "OSVersionMinor", str, "AttestationInfo"),
                build=_b64_text(info, "OSBuild"),
            ),
        )


def client_payload_for(nonce: bytes) -> bytes:
    """The ``ClientPayload`` that carries the quote's qualifying data."""
    return json.dumps({"nonce": nonce.hex()}, separators=(",", ":")).encode()


def nonce_from_client_payload(client_payload: bytes) -> bytes:
    """The qualifying data a ``ClientPayload`` announces; empty when it names none."""
    if not client_payload:
        return b""
    nonce = _json_object(client_payload, "ClientPayload").get("nonce", "")
    if not isinstance(nonce, str) or not re.fullmatch(r"(?:[0-9a-f]{2}){0,64}", nonce):
        raise EvidenceError("ClientPayload nonce is not lowercase hex of at most 64 bytes")
    return bytes.fromhex(nonce)


def _b64_text(document: dict[str, Any], name: str) -> str:
    try:
        return from_b64(document.get(name), name).decode()
    except UnicodeDecodeError as error:
        raise EvidenceError(f"{name} is not text") from error


# --- the sealed AzureGuest answer -------------------------------------------------------------


def seal_token(jwt: str, encrypt_inner_key: Callable[[bytes], bytes]) -> str:
    """The ``token`` value MAA returns for AzureGuest: ``jwt`` sealed to the TPM key."""
    inner_key = os.urandom(INNER_KEY_BYTES)
    iv = os.urandom(GCM_IV_BYTES)
    sealed = AESGCM(inner_key).encrypt(iv, jwt.encode(), TRANSPORT_KEY_AAD)
    envelope = {
        "EncryptedInnerKey": b64(encrypt_inner_key(inner_key)),
        "EncryptionParams": {"Iv": b64(iv)},
        "AuthenticationData": b64(sealed[-GCM_TAG_BYTES:]),
        "Jwt": b64(sealed[:-GCM_TAG_BYTES]),
    }
    return b64url(json.dumps(envelope).encode())


@dataclass(frozen=True)
class SealedToken:
    """A decoded sealed answer, before the TPM opens the inner key."""

    encrypted_inner_key: bytes = field(repr=False)
    iv: bytes = field(repr=False)
    tag: bytes = field(repr=False)
    ciphertext: bytes = field(repr=False)

    @classmethod
    def decode(cls, token: object) -> SealedToken:
        try:
            document = _json_object(from_b64url(token, "sealed token"), "sealed token")
            params = _member(document, "EncryptionParams", dict, "sealed token")
            sealed = cls(
                encrypted_inner_key=from_b64(document.get("EncryptedInnerKey"), "inner key"),
                iv=from_b64(params.get("Iv"), "Iv"),
                tag=from_b64(document.get("AuthenticationData"), "AuthenticationData"),
                ciphertext=from_b64(document.get("Jwt"), "Jwt"),
            )
        except EvidenceError as error:
            raise VerificationError("the sealed attestation token is malformed") from error
        if len(sealed.iv) != GCM_IV_BYTES or len(sealed.tag) != GCM_TAG_BYTES:
            raise VerificationError("the sealed attestation token is malformed")
        return sealed

    def open(self, inner_key: bytes) -> str:
        if len(inner_key) not in (16, 24, 32):
            raise VerificationError("the sealed attestation token did not open")
        try:
            plain = AESGCM(inner_key).decrypt(
                self.iv, self.ciphertext + self.tag, TRANSPORT_KEY_AAD
            )
            return plain.decode("ascii")
        except (InvalidTag, UnicodeDecodeError) as error:
            raise VerificationError("the sealed attestation token did not open") from error


# --- answers ---------------------------------------------------------------------------------


def decode_token_answer(body: bytes) -> str:
    """The ``token`` string of a 200 answer; its contents are checked by the caller."""
    try:
        document = _json_object(body, "answer")
        return str(_member(document, "token", str, "answer"))
    except EvidenceError as error:
        raise VerificationError("the attestation answer has no token") from error


def decode_cloud_error(body: bytes) -> tuple[str, str]:
    """``(code, innererror code)`` of a CloudError body; labels that are not identifiers are
    dropped, so what comes back is safe to log."""
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return "", ""
    error = document.get("error") if isinstance(document, dict) else None
    if not isinstance(error, dict):
        return "", ""
    inner = error.get("innererror")
    return _label(error.get("code")), _label(inner.get("code") if isinstance(inner, dict) else None)


def _label(value: object) -> str:
    if isinstance(value, str) and re.fullmatch(r"[A-Za-z][A-Za-z0-9_.-]{0,63}", value):
        return value
    return ""
