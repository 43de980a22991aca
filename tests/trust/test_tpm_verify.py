"""The pure TPM verifier: structures made by a real swtpm, and by hand for the odd cases."""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from gateway.errors import (
    CertifiedKeyMismatch,
    QuotePcrMismatch,
    TpmNonceMismatch,
    TpmSignatureInvalid,
    TpmStructureInvalid,
)
from gateway.trust import tpm_verify as tv
from gateway.trust.evidence.azure_vtpm import (
    AzureVtpmConfig,
    AzureVtpmEvidence,
    AzureVtpmProvider,
    _certificate,
)
from tests.support import swtpm
from tests.support.fuzzing import assert_parses_or_raises_ours, cases

NONCE = b"\x5a" * 32
PCRS = tuple(range(8))


@pytest.fixture(scope="module")
def evidence(golden: swtpm.Golden) -> AzureVtpmEvidence:
    with swtpm.Swtpm(golden.state) as tpm:
        config = AzureVtpmConfig(tcti=tpm.tcti, event_log_path=Path("/nonexistent"))
        return AzureVtpmProvider(config).collect(swtpm.GOLDEN_USER_DATA, NONCE)


# --- hand-made structures: a "TPM" in Python, for cases a real TPM never produces -------------

SOFT_AIK = rsa.generate_private_key(65537, 2048)
AIK_ATTRIBUTES = (
    tv.FIXED_TPM | tv.FIXED_PARENT | tv.SENSITIVE_DATA_ORIGIN | tv.RESTRICTED | tv.SIGN_ENCRYPT
)
KEY_ATTRIBUTES = tv.FIXED_TPM | tv.FIXED_PARENT | tv.SENSITIVE_DATA_ORIGIN | tv.DECRYPT


def tpm2b(data: bytes) -> bytes:
    return struct.pack(">H", len(data)) + data


def public(key: rsa.RSAPublicKey, attributes: int, policy: bytes = b"", scheme: int = 0) -> bytes:
    scheme_bytes = struct.pack(">H", tv.TPM_ALG_NULL)
    if scheme:
        scheme_bytes = struct.pack(">HH", scheme, tv.TPM_ALG_SHA256)
    n = key.public_numbers().n.to_bytes(256, "big")
    area = (
        struct.pack(">HHI", tv.TPM_ALG_RSA, tv.TPM_ALG_SHA256, attributes)
        + tpm2b(policy)
        + struct.pack(">H", tv.TPM_ALG_NULL)
        + scheme_bytes
        + struct.pack(">HI", 2048, 0)
        + tpm2b(n)
    )
    return tpm2b(area)


def attest(kind: int, extra: bytes, body: bytes, magic: int = tv.TPM_GENERATED_VALUE) -> bytes:
    header = struct.pack(">IH", magic, kind) + tpm2b(b"\x00\x0b" + bytes(32)) + tpm2b(extra)
    return header + struct.pack(">QIIBQ", 1, 2, 3, 1, 4) + body


def quote_body(pcrs: tuple[int, ...], values: dict[int, bytes]) -> bytes:
    selection = tv.marshal_pcr_selection([tv.PcrSelection(tv.TPM_ALG_SHA256, pcrs)])
    return selection + tpm2b(tv.pcr_digest(values, pcrs))


def sign(message: bytes, pss: bool = False) -> bytes:
    pad: padding.AsymmetricPadding = padding.PKCS1v15()
    if pss:
        pad = padding.PSS(padding.MGF1(hashes.SHA256()), 32)
    return SOFT_AIK.sign(message, pad, hashes.SHA256())


VALUES = {i: hashlib.sha256(bytes([i])).digest() for i in range(24)}
AIK = tv.parse_public(public(SOFT_AIK.public_key(), AIK_ATTRIBUTES, scheme=tv.TPM_ALG_RSASSA))


def test_a_hand_made_quote_verifies() -> None:
    quote = attest(tv.TPM_ST_ATTEST_QUOTE, NONCE, quote_body(PCRS, VALUES))
    parsed = tv.verify_quote(quote, sign(quote), AIK, nonce=NONCE, pcrs=PCRS, pcr_values=VALUES)
    assert (parsed.clock, parsed.reset_count, parsed.restart_count, parsed.safe) == (1, 2, 3, True)


def test_an_rsapss_aik_is_supported() -> None:
    aik = tv.parse_public(public(SOFT_AIK.public_key(), AIK_ATTRIBUTES, scheme=tv.TPM_ALG_RSAPSS))
    quote = attest(tv.TPM_ST_ATTEST_QUOTE, NONCE, quote_body(PCRS, VALUES))
    tv.verify_quote(quote, sign(quote, pss=True), aik, nonce=NONCE, pcrs=PCRS, pcr_values=VALUES)
    with pytest.raises(TpmSignatureInvalid):
        tv.verify_quote(quote, sign(quote), aik, nonce=NONCE, pcrs=PCRS, pcr_values=VALUES)


GOOD_QUOTE_BODY = quote_body(PCRS, VALUES)
BAD_QUOTES = {
    "magic": (attest(tv.TPM_ST_ATTEST_QUOTE, NONCE, GOOD_QUOTE_BODY, magic=0), "magic"),
    "nonce": (attest(tv.TPM_ST_ATTEST_QUOTE, b"other", GOOD_QUOTE_BODY), "nonce"),
    "pcrs": (attest(tv.TPM_ST_ATTEST_QUOTE, NONCE, quote_body((0, 1, 2), VALUES)), "other PCRs"),
    "trailing": (attest(tv.TPM_ST_ATTEST_QUOTE, NONCE, GOOD_QUOTE_BODY + b"\0"), "trailing"),
    "certify": (attest(tv.TPM_ST_ATTEST_CERTIFY, NONCE, tpm2b(b"") * 2), "not a quote"),
    "other-type": (attest(0x8014, NONCE, b""), "neither"),
}
ERRORS = {
    "magic": TpmStructureInvalid,
    "nonce": TpmNonceMismatch,
    "pcrs": QuotePcrMismatch,
    "trailing": TpmStructureInvalid,
    "certify": TpmStructureInvalid,
    "other-type": TpmStructureInvalid,
}


@pytest.mark.parametrize("case", sorted(BAD_QUOTES))
def test_bad_quotes_are_refused(case: str) -> None:
    quote, message = BAD_QUOTES[case]
    with pytest.raises(ERRORS[case], match=message):
        tv.verify_quote(quote, sign(quote), AIK, nonce=NONCE, pcrs=PCRS, pcr_values=VALUES)


def test_a_quote_signed_by_another_key_is_refused() -> None:
    quote = attest(tv.TPM_ST_ATTEST_QUOTE, NONCE, quote_body(PCRS, VALUES))
    other = tv.parse_public(public(rsa.generate_private_key(65537, 2048).public_key(), 0))
    with pytest.raises(TpmSignatureInvalid):
        tv.verify_quote(quote, sign(quote), other, nonce=NONCE, pcrs=PCRS, pcr_values=VALUES)


def test_a_missing_pcr_value_is_refused() -> None:
    quote = attest(tv.TPM_ST_ATTEST_QUOTE, NONCE, quote_body(PCRS, VALUES))
    values = {i: VALUES[i] for i in range(7)}
    with pytest.raises(QuotePcrMismatch, match="no value"):
        tv.verify_quote(quote, sign(quote), AIK, nonce=NONCE, pcrs=PCRS, pcr_values=values)


def _certify_case(attributes: int, policy: bytes) -> tuple[bytes, bytes, tv.TpmPublic]:
    key = tv.parse_public(public(SOFT_AIK.public_key(), attributes, policy))
    info = attest(tv.TPM_ST_ATTEST_CERTIFY, NONCE, tpm2b(key.name) + tpm2b(b""))
    return info, sign(info), key


def test_a_hand_made_certification_verifies() -> None:
    policy = tv.policy_pcr_digest(PCRS, VALUES)
    info, signature, key = _certify_case(KEY_ATTRIBUTES, policy)
    tv.verify_certify(info, signature, AIK, key, nonce=NONCE, expected_policy=policy)


@pytest.mark.parametrize(
    ("attributes", "policy", "message"),
    [
        (KEY_ATTRIBUTES | tv.USER_WITH_AUTH, b"", "policy-bound TPM decryption key"),
        (KEY_ATTRIBUTES & ~tv.FIXED_TPM, b"", "policy-bound TPM decryption key"),
        (KEY_ATTRIBUTES | tv.SIGN_ENCRYPT, b"", "policy-bound TPM decryption key"),
        (KEY_ATTRIBUTES, bytes(32), "another PCR policy"),
    ],
)
def test_certified_keys_that_are_not_policy_bound_are_refused(
    attributes: int, policy: bytes, message: str
) -> None:
    info, signature, key = _certify_case(attributes, policy)
    with pytest.raises(CertifiedKeyMismatch, match=message):
        tv.verify_certify(
            info,
            signature,
            AIK,
            key,
            nonce=NONCE,
            expected_policy=tv.policy_pcr_digest(PCRS, VALUES),
        )


def test_an_aik_that_is_not_a_restricted_signing_key_is_refused() -> None:
    tv.check_attestation_key(AIK)
    unrestricted = tv.parse_public(public(SOFT_AIK.public_key(), AIK_ATTRIBUTES & ~tv.RESTRICTED))
    with pytest.raises(CertifiedKeyMismatch, match="restricted"):
        tv.check_attestation_key(unrestricted)


def test_the_aik_jwk_binding() -> None:
    claims = swtpm.runtime_claims(SOFT_AIK.public_key(), bytes(64))
    jwk = json.loads(claims)["keys"][0]
    tv.aik_matches_jwk(AIK, jwk)
    for field, value in (("n", jwk["e"]), ("e", "AQAC"), ("kty", "EC")):
        with pytest.raises(CertifiedKeyMismatch, match="HCLAkPub"):
            tv.aik_matches_jwk(AIK, jwk | {field: value})


def test_a_non_rsa_public_area_is_refused() -> None:
    ecc = tpm2b(struct.pack(">HH", 0x0023, tv.TPM_ALG_SHA256) + bytes(40))
    with pytest.raises(TpmStructureInvalid, match="not an RSA key"):
        tv.parse_public(ecc)


def test_the_aik_certificate_must_match(evidence: AzureVtpmEvidence) -> None:
    with pytest.raises(CertifiedKeyMismatch, match="another key"):
        tv.aik_matches_certificate(AIK, evidence.aik_certificate)
    with pytest.raises(TpmStructureInvalid, match=r"not DER X\.509"):
        tv.aik_matches_certificate(AIK, b"\x30\x03\x02\x01\x00")


# --- real structures from swtpm ---------------------------------------------------------------


def test_tampered_swtpm_quotes_are_refused(evidence: AzureVtpmEvidence) -> None:
    aik = tv.parse_public(evidence.aik_public)
    kw = {"nonce": NONCE, "pcrs": PCRS, "pcr_values": evidence.pcr_values}
    tv.verify_quote(evidence.quote, evidence.quote_signature, aik, **kw)  # type: ignore[arg-type]
    for i in range(0, len(evidence.quote), 7):
        flipped = bytearray(evidence.quote)
        flipped[i] ^= 0x01
        with pytest.raises(TpmSignatureInvalid):
            tv.verify_quote(bytes(flipped), evidence.quote_signature, aik, **kw)  # type: ignore[arg-type]
    with pytest.raises(TpmNonceMismatch):
        tv.verify_quote(evidence.quote, evidence.quote_signature, aik, **kw | {"nonce": b"x"})  # type: ignore[arg-type]


def test_signatures_in_tpmt_form_parse(evidence: AzureVtpmEvidence) -> None:
    sig = evidence.quote_signature
    parsed = tv.parse_signature(
        struct.pack(">HH", tv.TPM_ALG_RSASSA, tv.TPM_ALG_SHA256) + tpm2b(sig)
    )
    assert (parsed.sig_alg, parsed.hash_alg, parsed.signature) == (0x14, 0x0B, sig)
    with pytest.raises(TpmStructureInvalid, match="not RSASSA"):
        tv.parse_signature(struct.pack(">HH", 0x0018, tv.TPM_ALG_SHA256) + tpm2b(sig))


# --- the fuzz invariant for every decoder in the azure-vtpm path --------------------------------


def test_decoders_raise_only_our_errors(evidence: AzureVtpmEvidence) -> None:
    signature = struct.pack(">HH", tv.TPM_ALG_RSASSA, tv.TPM_ALG_SHA256)
    signature += tpm2b(evidence.quote_signature)
    decoders = [
        (tv.parse_attest, [evidence.quote, evidence.certify_info]),
        (tv.parse_public, [evidence.aik_public, evidence.encryption_key_public]),
        (tv.parse_signature, [signature]),
        (_certificate, [evidence.aik_certificate]),
    ]
    for seed, (decode, seeds) in enumerate(decoders):
        for data in cases(seeds, 1500, seed=seed):
            assert_parses_or_raises_ours(decode, data)


def test_quote_verification_raises_only_our_errors(evidence: AzureVtpmEvidence) -> None:
    aik = tv.parse_public(evidence.aik_public)

    def verify(quote: bytes) -> object:
        return tv.verify_quote(
            quote,
            evidence.quote_signature,
            aik,
            nonce=NONCE,
            pcrs=PCRS,
            pcr_values=evidence.pcr_values,
        )

    for data in cases([evidence.quote], 300, seed=7):
        assert_parses_or_raises_ours(verify, data)
