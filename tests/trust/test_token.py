from __future__ import annotations

import base64
import json
from typing import Any

import jwt
import pytest

from gateway.errors import (
    ConfigError,
    MalformedToken,
    SigningKeysInvalid,
    TokenAlgorithmNotAllowed,
    TokenClaimsInvalid,
    TokenError,
    TokenExpired,
    TokenIssuedInFuture,
    TokenIssuerMismatch,
    TokenKeySourceMismatch,
    TokenKeyUnknown,
    TokenNotYetValid,
    TokenSignatureInvalid,
    UnsignedToken,
)
from gateway.trust.token import decode_unverified, signing_jwk, verify_token
from tests.trust.maa_signer import ISSUER, NOW, MaaSigner, azure_guest_claims, example_claims


@pytest.fixture(scope="module")
def signer() -> MaaSigner:
    return MaaSigner.generate()


@pytest.fixture(scope="module")
def stranger() -> MaaSigner:
    return MaaSigner.generate()  # same kid, a key that is not in /certs


def verify(token: str, signer: MaaSigner, **kwargs: Any) -> Any:
    options: dict[str, Any] = {"jwks": signer.jwks(), "issuer": ISSUER, "now": NOW}
    options.update(kwargs)
    return verify_token(token, **options)


def test_sevsnpvm_token_verifies_with_typed_claims(signer: MaaSigner) -> None:
    token = verify(signer.sign(example_claims()), signer)
    assert token.verified
    assert token.attestation_type == "sevsnpvm"
    assert token.compliance_status == "azure-compliant-cvm"
    assert token.nonce == "noncesevsnp987"
    assert token.expires_at - token.issued_at == 28800
    snp = token.sevsnpvm
    assert snp is not None
    assert snp.vmpl == 0
    assert snp.is_debuggable is False
    assert snp.smt_allowed is True
    assert snp.microcode_svn == 40
    assert snp.family_id == "01000000000000000000000000000000"
    assert snp.report_data.hex().startswith("99dd4593")
    assert token.runtime_keys[0]["kid"] == "HCLTransferKey"
    assert token.isolation_tee is None
    assert "eyJ" not in repr(token)  # the bearer token stays out of repr


def test_azure_guest_token_has_isolation_tee(signer: MaaSigner) -> None:
    token = verify(signer.sign(azure_guest_claims()), signer)
    assert token.attestation_type == "azurevm"
    tee = token.isolation_tee
    assert tee is not None
    assert tee.attestation_type == "sevsnpvm"
    assert tee.compliance_status == "azure-compliant-cvm"
    assert tee.sevsnpvm is not None
    assert tee.sevsnpvm.vmpl == 0
    assert token.user_data == bytes([0xAB]) * 64
    assert token.runtime_keys[0]["kid"] == "TpmEphemeralEncryptionKey"


def test_the_unsigned_example_token_is_refused(signer: MaaSigner, example_token: str) -> None:
    with pytest.raises(UnsignedToken):
        verify(example_token, signer)
    with pytest.raises(UnsignedToken):
        verify(example_token + ".", signer)  # an empty signature segment is no better
    inspected = decode_unverified(example_token)
    assert not inspected.verified
    assert inspected.issuer == "https://tenanttests.us"
    assert inspected.sevsnpvm is not None
    assert inspected.sevsnpvm.guestsvn == 1


def _forge(header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"") -> str:
    def part(obj: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    sig = base64.urlsafe_b64encode(signature).rstrip(b"=").decode()
    return f"{part(header)}.{part(claims)}.{sig}"


@pytest.mark.parametrize("alg", ["none", "None", "NONE"])
def test_alg_none_is_refused(signer: MaaSigner, alg: str) -> None:
    token = _forge({"alg": alg, "kid": signer.kid}, example_claims())
    with pytest.raises(UnsignedToken):
        verify(token, signer)


def test_alg_hs256_is_refused(signer: MaaSigner) -> None:
    # the classic confusion: HMAC keyed with bytes the verifier might hold
    secret = signing_jwk(signer.cert, signer.kid)["x5c"][0].encode()
    token = jwt.encode(example_claims(), secret, algorithm="HS256", headers={"kid": signer.kid})
    with pytest.raises(TokenAlgorithmNotAllowed):
        verify(token, signer)


@pytest.mark.parametrize("alg", ["RS384", "RS512", "PS256", "ES256", "EdDSA", "rs256", None, 7])
def test_other_algorithms_are_refused(signer: MaaSigner, alg: object) -> None:
    token = _forge({"alg": alg, "kid": signer.kid}, example_claims(), b"sig")
    with pytest.raises(TokenAlgorithmNotAllowed):
        verify(token, signer)


def test_unknown_kid_is_refused(signer: MaaSigner) -> None:
    with pytest.raises(TokenKeyUnknown):
        verify(signer.sign(example_claims(), kid="another-key"), signer)
    token = jwt.encode(example_claims(), signer.key, algorithm="RS256")  # no kid at all
    with pytest.raises(TokenKeyUnknown):
        verify(token, signer)


def test_token_signed_by_a_key_not_in_certs_is_refused(
    signer: MaaSigner, stranger: MaaSigner
) -> None:
    with pytest.raises(TokenSignatureInvalid):
        verify(stranger.sign(example_claims()), signer)


def test_tampered_payload_is_refused(signer: MaaSigner) -> None:
    header, _, signature = signer.sign(example_claims()).split(".")
    forged = example_claims(**{"x-ms-sevsnpvm-is-debuggable": True})
    payload = base64.urlsafe_b64encode(json.dumps(forged).encode()).rstrip(b"=").decode()
    with pytest.raises(TokenSignatureInvalid):
        verify(f"{header}.{payload}.{signature}", signer)


def test_expired_token_is_refused(signer: MaaSigner) -> None:
    token = signer.sign(example_claims(exp=NOW - 31))
    with pytest.raises(TokenExpired):
        verify(token, signer)
    verify(token, signer, leeway=60)  # within a configured leeway it passes
    verify(signer.sign(example_claims(exp=NOW - 29)), signer)


def test_future_nbf_is_refused(signer: MaaSigner) -> None:
    token = signer.sign(example_claims(nbf=NOW + 31))
    with pytest.raises(TokenNotYetValid):
        verify(token, signer)
    verify(token, signer, leeway=60)


def test_future_iat_is_refused(signer: MaaSigner) -> None:
    with pytest.raises(TokenIssuedInFuture):
        verify(signer.sign(example_claims(iat=NOW + 3600, nbf=NOW)), signer)


@pytest.mark.parametrize("name", ["exp", "nbf", "iat"])
def test_missing_times_are_refused(signer: MaaSigner, name: str) -> None:
    claims = example_claims()
    del claims[name]
    with pytest.raises(TokenClaimsInvalid):
        verify(signer.sign(claims), signer)


@pytest.mark.parametrize("leeway", [-1, 301])
def test_leeway_is_bounded(signer: MaaSigner, leeway: float) -> None:
    with pytest.raises(ConfigError):
        verify(signer.sign(example_claims()), signer, leeway=leeway)


def test_wrong_issuer_is_refused(signer: MaaSigner) -> None:
    token = signer.sign(example_claims(iss="https://evil.attest.azure.net"), jku=None)
    with pytest.raises(TokenIssuerMismatch):
        verify(token, signer)
    with pytest.raises(TokenIssuerMismatch):
        verify(signer.sign(example_claims(), jku=None), signer, issuer="https://other.example")
    verify(signer.sign(example_claims()), signer, issuer=ISSUER + "/")  # trailing slash is equal


def test_jku_never_chooses_the_key_source(signer: MaaSigner) -> None:
    with pytest.raises(TokenKeySourceMismatch):
        verify(signer.sign(example_claims(), jku="https://evil.example/certs"), signer)
    verify(signer.sign(example_claims(), jku=None), signer)  # absent is fine: we use the pin


def test_jwks_without_x5c_has_no_usable_keys(signer: MaaSigner) -> None:
    n_e_only = {"keys": [{"kid": signer.kid, "kty": "RSA", "n": "AQAB", "e": "AQAB"}]}
    with pytest.raises(SigningKeysInvalid):
        verify(signer.sign(example_claims()), signer, jwks=n_e_only)


@pytest.mark.parametrize(
    "jwks",
    [
        {},
        {"keys": {}},
        {"keys": [{"kid": 1, "x5c": ["AA=="]}]},
        {"keys": [{"kid": "k", "x5c": []}]},
        {"keys": [{"kid": "k", "x5c": ["!!"]}]},
        {"keys": [{"kid": "k", "x5c": ["AAAA"]}]},
        {"keys": [{"kid": "k", "x5c": [5]}]},
    ],
)
def test_malformed_jwks(signer: MaaSigner, jwks: dict[str, Any]) -> None:
    with pytest.raises(SigningKeysInvalid):
        verify(signer.sign(example_claims()), signer, jwks=jwks)


def test_duplicate_kids_are_refused(signer: MaaSigner, stranger: MaaSigner) -> None:
    jwks = {"keys": signer.jwks()["keys"] + stranger.jwks()["keys"]}
    with pytest.raises(SigningKeysInvalid):
        verify(signer.sign(example_claims()), signer, jwks=jwks)


def test_the_right_key_is_picked_by_kid(signer: MaaSigner, stranger: MaaSigner) -> None:
    other = MaaSigner(stranger.key, stranger.cert, "maa-signing-key-2")
    jwks = {"keys": signer.jwks()["keys"] + other.jwks()["keys"]}
    verify(other.sign(example_claims()), signer, jwks=jwks)


@pytest.mark.parametrize(
    "overrides",
    [
        {"x-ms-attestation-type": "sgx"},
        {"x-ms-attestation-type": 5},
        {"x-ms-sevsnpvm-vmpl": "0"},
        {"x-ms-sevsnpvm-vmpl": True},
        {"x-ms-sevsnpvm-is-debuggable": 0},
        {"x-ms-sevsnpvm-launchmeasurement": None},
        {"x-ms-runtime": []},
        {"x-ms-compliance-status": 1},
        {"nonce": 5},
        {"exp": "soon"},
    ],
)
def test_mistyped_claims_are_refused(signer: MaaSigner, overrides: dict[str, Any]) -> None:
    with pytest.raises(TokenClaimsInvalid):
        verify(signer.sign(example_claims(**overrides)), signer)


def test_type_specific_claims_are_required(signer: MaaSigner) -> None:
    bare = {k: v for k, v in example_claims().items() if not k.startswith("x-ms-sevsnpvm-")}
    with pytest.raises(TokenClaimsInvalid):
        verify(signer.sign(bare), signer)
    guest = azure_guest_claims()
    del guest["x-ms-isolation-tee"]
    with pytest.raises(TokenClaimsInvalid):
        verify(signer.sign(guest), signer)


@pytest.mark.parametrize(
    "token",
    [
        "",
        "abc",
        "a.b.c.d",
        "é.b.c",
        "!!!.b.c",
        "e30.e30.c" + "x" * 300_000,
        _forge({"alg": "RS256", "kid": "maa-signing-key-1"}, {}, b"sig").replace(".", ".!", 1),
    ],
)
def test_malformed_tokens(signer: MaaSigner, token: str) -> None:
    with pytest.raises(MalformedToken):
        verify(token, signer)


@pytest.mark.parametrize("extension", [{"crit": ["exp"]}, {"b64": False}])
def test_jws_extensions_are_refused(signer: MaaSigner, extension: dict[str, Any]) -> None:
    with pytest.raises(MalformedToken):
        verify(signer.sign(example_claims(), **extension), signer)


def test_header_that_is_not_an_object(signer: MaaSigner) -> None:
    token = base64.urlsafe_b64encode(b"[1]").decode().rstrip("=") + ".e30.c2ln"
    with pytest.raises(MalformedToken):
        verify(token, signer)


def test_every_token_error_is_a_token_error(signer: MaaSigner, example_token: str) -> None:
    with pytest.raises(TokenError):
        verify(example_token, signer)
