"""Verify-then-encrypt, against a real dev gateway: every tampered attestation document is refused
with its own error, and nothing is sent (the tap in front of the gateway sees no POST).

The documents are made like the gateway makes them (simulated SNP evidence → the MAA emulator's
token → the key binding), then tampered one way each. Re-signed tokens are signed with the
emulator's own key unless the case is about the signer, so each refusal comes from the check it
names, not from a broken signature.
"""

from __future__ import annotations

import asyncio
import copy
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import jwt
import pytest

from gateway.client.policy import AttestationPolicy
from gateway.client.session import ClientSettings, Head, OhttpClient
from gateway.errors import (
    AttestationTypeNotAllowed,
    ClaimsMissing,
    ComplianceStatusNotAllowed,
    DebuggableGuest,
    GatewayError,
    HostDataNotAllowed,
    KeyBindingMismatch,
    KeyConfigsChanged,
    LaunchMeasurementNotAllowed,
    MalformedToken,
    ReportSignatureInvalid,
    SimulatedEvidenceNotAllowed,
    SvnBelowMinimum,
    TokenExpired,
    TokenIssuerMismatch,
    TokenKeyUnknown,
    TokenSignatureInvalid,
    TokenTooOld,
    UnsignedToken,
)
from gateway.protocol.keys import AeadId, GatewayKey, KdfId, KemId, KeyRing, SymmetricSuite
from gateway.trust.evidence.simulated import AZURE_GUEST_POLICY, ReportFields
from gateway.trust.snp import POLICY_DEBUG
from tests.support.attested_gateway import AttestationWorld, GatewayTap, other_signer

Document = dict[str, Any]
HEAD = Head(b"GET", b"/v1/models")


def _claims(document: Document) -> dict[str, Any]:
    return jwt.decode(document["token"], options={"verify_signature": False})


def _other_keys() -> bytes:
    suite = SymmetricSuite(KdfId.HKDF_SHA256, AeadId.AES_128_GCM)
    return KeyRing([GatewayKey.generate(7, KemId.X25519_SHA256, (suite,))]).encoded_configs


def _binding(world: AttestationWorld, doc: Document, keys: bytes) -> Document:
    # The document claims other key configs (with their correct hash); the token does not bind them.
    import base64
    import hashlib

    other = _other_keys()
    tampered = copy.deepcopy(doc)
    tampered["binding"]["key_configs"] = base64.b64encode(other).decode()
    tampered["binding"]["key_configs_sha256"] = hashlib.sha256(other).hexdigest()
    return tampered


def _measurement(world: AttestationWorld, doc: Document, keys: bytes) -> Document:
    return world.document(keys, fields=ReportFields(measurement=bytes.fromhex("6b" * 48)))


def _debug(world: AttestationWorld, doc: Document, keys: bytes) -> Document:
    return world.document(keys, fields=ReportFields(policy=AZURE_GUEST_POLICY | POLICY_DEBUG))


def _issuer(world: AttestationWorld, doc: Document, keys: bytes) -> Document:
    return world.resign(doc, {"iss": "https://attacker.example"})


def _expired(world: AttestationWorld, doc: Document, keys: bytes) -> Document:
    now = int(time.time())
    return world.resign(doc, {"iat": now - 7200, "nbf": now - 7200, "exp": now - 3600})


def _signature(world: AttestationWorld, doc: Document, keys: bytes) -> Document:
    header, payload, signature = doc["token"].split(".")
    flipped = ("A" if signature[10] != "A" else "B").join((signature[:10], signature[11:]))
    return {**doc, "token": ".".join((header, payload, flipped))}


def _wrong_signer(world: AttestationWorld, doc: Document, keys: bytes) -> Document:
    return world.resign(doc, {}, signer=other_signer(world))


def _swapped(world: AttestationWorld, doc: Document, keys: bytes) -> Document:
    # A genuine, consistent document, but for other key configs than the gateway serves.
    return world.document(_other_keys())


def _truncated(world: AttestationWorld, doc: Document, keys: bytes) -> Document:
    return {**doc, "token": doc["token"][: len(doc["token"]) // 2]}


def _downgraded_tcb(world: AttestationWorld, doc: Document, keys: bytes) -> Document:
    return world.resign(doc, {"x-ms-sevsnpvm-bootloader-svn": 0})


def _attestation_type(world: AttestationWorld, doc: Document, keys: bytes) -> Document:
    # A CVM (AzureGuest) token where the policy requires the confidential-container SevSnpVm type.
    claims = _claims(doc)
    tee = {k: v for k, v in claims.items() if k.startswith("x-ms-sevsnpvm-")}
    tee |= {"x-ms-attestation-type": "sevsnpvm", "x-ms-compliance-status": "azure-compliant-cvm"}
    tee["x-ms-runtime"] = claims["x-ms-runtime"]
    changes: dict[str, Any] = {k: None for k in tee if k.startswith("x-ms-sevsnpvm-")}
    changes |= {"x-ms-attestation-type": "azurevm", "x-ms-isolation-tee": tee}
    return world.resign(doc, changes)


def _missing_claims(world: AttestationWorld, doc: Document, keys: bytes) -> Document:
    return world.resign(doc, {"x-ms-runtime": None})


def _compliance(world: AttestationWorld, doc: Document, keys: bytes) -> Document:
    return world.resign(doc, {"x-ms-compliance-status": "azure-noncompliant"})


def _old_token(world: AttestationWorld, doc: Document, keys: bytes) -> Document:
    return world.resign(doc, {"iat": int(time.time()) - 7200})


def _simulated(world: AttestationWorld, doc: Document, keys: bytes) -> Document:
    return {**doc, "dev_mode": True, "evidence_provider": "simulated"}


def _host_data(world: AttestationWorld, doc: Document, keys: bytes) -> Document:
    return world.document(keys, fields=ReportFields(host_data=b"\x01" * 32))


def _report_signature(world: AttestationWorld, doc: Document, keys: bytes) -> Document:
    import base64

    report = bytearray(base64.b64decode(doc["evidence"]["report"]))
    report[0x90] ^= 0x01  # inside MEASUREMENT: signed, and not compared before the signature
    tampered = copy.deepcopy(doc)
    tampered["evidence"]["report"] = base64.b64encode(bytes(report)).decode()
    return tampered


def _missing_section(world: AttestationWorld, doc: Document, keys: bytes) -> Document:
    return {k: v for k, v in doc.items() if k != "evidence"}


Tamper = Callable[[AttestationWorld, Document, bytes], Document]
CASES: list[tuple[str, Tamper, type[GatewayError], str]] = [
    ("binding", _binding, KeyBindingMismatch, "key configs"),
    ("measurement", _measurement, LaunchMeasurementNotAllowed, "measurement"),
    ("debug", _debug, DebuggableGuest, "debuggable"),
    ("issuer", _issuer, TokenIssuerMismatch, "issuer"),
    ("expiry", _expired, TokenExpired, "expired"),
    ("signature", _signature, TokenSignatureInvalid, "signature"),
    ("wrong MAA signer", _wrong_signer, TokenKeyUnknown, "signing keys"),
    ("key configs swapped", _swapped, KeyConfigsChanged, "not the attested"),
    ("truncated token", _truncated, UnsignedToken, "unsigned"),
    ("downgraded TCB", _downgraded_tcb, SvnBelowMinimum, "SVN"),
    ("wrong attestation type", _attestation_type, AttestationTypeNotAllowed, "type"),
    ("missing claims section", _missing_claims, ClaimsMissing, "runtime claims"),
    ("compliance status", _compliance, ComplianceStatusNotAllowed, "Compliance"),
    ("token age", _old_token, TokenTooOld, "older"),
    ("simulated evidence", _simulated, SimulatedEvidenceNotAllowed, "--allow-simulated"),
    ("host data", _host_data, HostDataNotAllowed, "Host data"),
    ("report signature", _report_signature, ReportSignatureInvalid, "signature"),
    ("document section", _missing_section, ClaimsMissing, "evidence section"),
]


def _attempt(tap: GatewayTap, gateway_url: str, policy: AttestationPolicy) -> None:
    settings = ClientSettings(gateway=gateway_url, relay=tap.url, policy=policy)

    async def go() -> None:
        async with OhttpClient(settings) as client:
            await client.send(HEAD, b"")

    asyncio.run(go())


def test_the_untampered_document_verifies_and_the_request_goes_through(
    world: AttestationWorld, tap: GatewayTap, good_document: Document, gateway: Any
) -> None:
    tap.document = good_document
    settings = ClientSettings(gateway=gateway.url, relay=tap.url, policy=world.policy())

    async def go() -> int:
        async with OhttpClient(settings) as client:
            verified = await client.verified()
            assert not verified.simulated
            return (await client.send(HEAD, b"")).status

    assert asyncio.run(go()) == 403  # /v1/models is not on the gateway's path allowlist
    assert [seen.method for seen in tap.seen].count("POST") == 1


@pytest.mark.parametrize(("case", "tamper", "error", "words"), CASES, ids=[c[0] for c in CASES])
def test_tampered_document_is_refused_and_nothing_is_sent(
    world: AttestationWorld,
    tap: GatewayTap,
    good_document: Document,
    gateway_keys: bytes,
    gateway: Any,
    case: str,
    tamper: Tamper,
    error: type[GatewayError],
    words: str,
) -> None:
    tap.document = tamper(world, good_document, gateway_keys)
    with pytest.raises(GatewayError) as raised:
        _attempt(tap, gateway.url, world.policy())
    assert type(raised.value) is error, (case, raised.value)
    assert words.lower() in raised.value.message.lower()
    assert not [seen for seen in tap.seen if seen.method == "POST"]


def test_a_policy_file_never_accepts_simulated_evidence(world: AttestationWorld) -> None:
    # The flag exists only on the command line; a policy file with it is a configuration error.
    from gateway.errors import ConfigError

    with pytest.raises(ConfigError):
        AttestationPolicy.from_json({"maa_issuer": world.maa_url, "allow_simulated": True})
    with pytest.raises(ConfigError):
        AttestationPolicy.from_json({"maa_issuer": world.maa_url, "debug": True})
    assert not replace(world.policy()).allow_simulated


def test_a_malformed_token_is_refused(
    world: AttestationWorld, tap: GatewayTap, good_document: Document, gateway: Any
) -> None:
    tap.document = {**good_document, "token": "not a token"}
    with pytest.raises(MalformedToken):
        _attempt(tap, gateway.url, world.policy())
