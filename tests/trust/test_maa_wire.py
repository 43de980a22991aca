"""MAA request and answer bodies: round trips, the exact wire shape, refusals, and fuzzing."""

from __future__ import annotations

import base64
import json
import os

import pytest
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from gateway.errors import EvidenceError, VerificationError
from gateway.trust.maa_wire import (
    AzureGuestRequest,
    OsInfo,
    SealedToken,
    SevSnpVmRequest,
    SnpEvidence,
    TpmEvidence,
    b64url,
    client_payload_for,
    decode_cloud_error,
    decode_token_answer,
    nonce_from_client_payload,
    seal_token,
)
from tests.support.fuzzing import assert_parses_or_raises_ours, cases

RUNTIME = json.dumps({"keys": [], "user-data": "00" * 64}).encode()
EVIDENCE = SnpEvidence(report=bytes(range(256)) * 4 + bytes(160), vcek_cert_chain=b"PEM chain")
TPM = TpmEvidence(
    aik_cert=b"\x30aik-cert",
    aik_pub=b"\x01\x16aik",
    pcr_quote=b"\xffTCGquote",
    pcr_signature=b"sig" * 86,
    pcrs=tuple((i, bytes([i]) * 32) for i in range(8)),
    enc_key_pub=b"\x01\x16enc",
    enc_key_certify_info=b"\xffTCGcertify",
    enc_key_certify_info_signature=b"sig2" * 64,
)
GUEST = AzureGuestRequest(
    tpm=TPM,
    snp=EVIDENCE,
    runtime_data=RUNTIME,
    tcg_logs=b"\x00event log",
    client_payload=b'{"nonce":"abc"}',
    os=OsInfo(),
)


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def test_sev_snp_vm_request_has_the_documented_shape() -> None:
    request = SevSnpVmRequest(EVIDENCE, RUNTIME, init_time_data=b"{}", nonce="n-1")
    body = request.encode()
    assert set(body) == {"report", "runtimeData", "initTimeData", "nonce"}
    assert body["runtimeData"]["dataType"] == "JSON"
    assert _unb64url(body["runtimeData"]["data"]) == RUNTIME
    inner = json.loads(_unb64url(body["report"]))
    assert set(inner) == {"SnpReport", "VcekCertChain"}
    assert _unb64url(inner["SnpReport"]) == EVIDENCE.report
    assert "=" not in body["report"]
    assert SevSnpVmRequest.decode(json.dumps(body).encode()) == request


def test_sev_snp_vm_decoder_accepts_padded_base64url() -> None:
    body = SevSnpVmRequest(EVIDENCE, RUNTIME).encode()
    body["runtimeData"]["data"] = base64.urlsafe_b64encode(RUNTIME).decode()
    assert SevSnpVmRequest.decode(json.dumps(body).encode()).runtime_data == RUNTIME


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda b: b.update(runtimeData={"data": "e30", "dataType": "Binary"}), "JSON"),
        (lambda b: b.update(runtimeData={"data": "bm90IGpzb24", "dataType": "JSON"}), "JSON"),
        (lambda b: b.update(report="!!"), "base64url"),
        (lambda b: b.update(nonce=7), "nonce"),
        (lambda b: b.update(draftPolicyForAttestation="x"), "draft"),
        (lambda b: b.pop("runtimeData"), "runtimeData"),
    ],
)
def test_sev_snp_vm_decoder_refusals(change: object, message: str) -> None:
    body = SevSnpVmRequest(EVIDENCE, RUNTIME).encode()
    change(body)  # type: ignore[operator]
    with pytest.raises(EvidenceError, match=message):
        SevSnpVmRequest.decode(json.dumps(body).encode())


def test_azure_guest_request_round_trips_with_the_documented_shape() -> None:
    body = GUEST.encode()
    info = json.loads(_unb64url(body["AttestationInfo"]))
    assert info["AttestationProtocolVersion"] == "2.0"
    assert info["IsolationInfo"]["Type"] == "SevSnp"
    assert info["TpmInfo"]["PcrSet"] == list(range(8))
    assert base64.b64decode(info["TpmInfo"]["AikCert"]) == TPM.aik_cert
    assert base64.b64decode(info["OSType"]) == b"Linux"
    proof = json.loads(_unb64url(info["IsolationInfo"]["Evidence"]["Proof"]))
    assert _unb64url(proof["VcekCertChain"]) == b"PEM chain"
    assert AzureGuestRequest.decode(json.dumps(body).encode()) == GUEST


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("AttestationProtocolVersion",), "1.0", "AttestationProtocolVersion"),
        (("IsolationInfo", "Type"), "Tdx", "SevSnp"),
        (("TpmInfo", "PcrSet"), [0, 1], "PcrSet"),
        (("TpmInfo", "PCRs"), [{"Index": 99, "Digest": ""}], "out of range"),
        (("TpmInfo", "PCRs"), [{"Index": True, "Digest": ""}], "Index"),
        (("TpmInfo", "AikPub"), "***", "AikPub"),
        (("ClientPayload",), base64.b64encode(b"[1]").decode(), "ClientPayload"),
    ],
)
def test_azure_guest_decoder_refusals(path: tuple[str, ...], value: object, message: str) -> None:
    info = json.loads(_unb64url(GUEST.encode()["AttestationInfo"]))
    target = info
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    body = {"AttestationInfo": base64.urlsafe_b64encode(json.dumps(info).encode()).decode()}
    with pytest.raises(EvidenceError, match=message):
        AzureGuestRequest.decode(json.dumps(body).encode())


def test_sealed_token_opens_with_the_tpm_key_and_aad_transport_key() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    sealed_text = seal_token("a.b.c", lambda k: key.public_key().encrypt(k, padding.PKCS1v15()))
    envelope = json.loads(_unb64url(sealed_text))
    assert set(envelope) == {"EncryptedInnerKey", "EncryptionParams", "AuthenticationData", "Jwt"}
    sealed = SealedToken.decode(sealed_text)
    inner_key = key.decrypt(sealed.encrypted_inner_key, padding.PKCS1v15())
    assert sealed.open(inner_key) == "a.b.c"
    with pytest.raises(VerificationError, match="did not open"):
        sealed.open(os.urandom(32))
    tampered = SealedToken(
        sealed.encrypted_inner_key, sealed.iv, sealed.tag, b"x" + sealed.ciphertext
    )
    with pytest.raises(VerificationError, match="did not open"):
        tampered.open(inner_key)


def test_the_nonce_travels_in_the_client_payload() -> None:
    nonce = bytes(range(32))
    assert nonce_from_client_payload(client_payload_for(nonce)) == nonce
    assert nonce_from_client_payload(b"") == b""
    assert nonce_from_client_payload(b"{}") == b""
    for payload in (b'{"nonce": "ABCD"}', b'{"nonce": "abc"}', b'{"nonce": 5}', b"[]"):
        with pytest.raises(EvidenceError):
            nonce_from_client_payload(payload)
    with pytest.raises(EvidenceError):
        nonce_from_client_payload(client_payload_for(bytes(65)))


def test_answers_and_cloud_errors() -> None:
    assert decode_token_answer(b'{"token": "a.b.c"}') == "a.b.c"
    with pytest.raises(VerificationError):
        decode_token_answer(b'{"token": 1}')
    error = b'{"error": {"code": "InvalidParameter", "innererror": {"code": "ChipIdMismatch"}}}'
    assert decode_cloud_error(error) == ("InvalidParameter", "ChipIdMismatch")
    assert decode_cloud_error(b'{"error": {"code": "has spaces\\n"}}') == ("", "")
    assert decode_cloud_error(b"<html>") == ("", "")


def test_fuzz_decoders() -> None:
    sev = json.dumps(SevSnpVmRequest(EVIDENCE, RUNTIME, b"{}", "n").encode()).encode()
    guest = json.dumps(GUEST.encode()).encode()
    sealed = seal_token("a.b.c", lambda k: k).encode()
    info = _unb64url(GUEST.encode()["AttestationInfo"])
    proof = _unb64url(EVIDENCE.encode())

    def guest_info(data: bytes) -> object:
        return AzureGuestRequest.decode(json.dumps({"AttestationInfo": b64url(data)}).encode())

    decoders = [
        (guest_info, info),
        (lambda d: SnpEvidence.decode(b64url(d), "report"), proof),
        (SevSnpVmRequest.decode, sev),
        (AzureGuestRequest.decode, guest),
        (lambda d: SealedToken.decode(d.decode("latin-1")), sealed),
        (decode_cloud_error, b'{"error": {"code": "X", "innererror": {"code": "Y"}}}'),
        (decode_token_answer, b'{"token": "a.b.c"}'),
        (nonce_from_client_payload, client_payload_for(b"nonce")),
    ]
    for index, (decode, seed) in enumerate(decoders):
        for data in cases([seed], count=1500, seed=index):
            assert_parses_or_raises_ours(decode, data)
