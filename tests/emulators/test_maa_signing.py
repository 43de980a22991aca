"""The MAA emulator's signer: RS256 tokens, an x5c-only JWKS, and a key that survives restarts."""

from __future__ import annotations

import base64
import stat
import time
from pathlib import Path

import jwt
import pytest
from cryptography import x509

from gateway.emulators.maa_signing import TokenSigner
from gateway.errors import ConfigError
from gateway.trust.token import signing_keys_from_jwks

ISSUER = "https://127.0.0.1:4443"


def _claims() -> dict[str, object]:
    now = int(time.time())
    return {
        "iss": ISSUER,
        "iat": now,
        "nbf": now,
        "exp": now + 60,
        "x-ms-attestation-type": "sevsnpvm",
        "x-ms-sevsnpvm-is-debuggable": False,
    }


def test_tokens_are_rs256_with_jku_and_kid_and_certs_has_x5c_only() -> None:
    signer = TokenSigner(ISSUER + "/")
    assert signer.issuer == ISSUER
    token = signer.sign(_claims())
    assert jwt.get_unverified_header(token) == {
        "alg": "RS256",
        "jku": f"{ISSUER}/certs",
        "kid": signer.kid,
        "typ": "JWT",
    }
    (key,) = signer.jwks()["keys"]
    assert "n" not in key
    assert "e" not in key
    cert = x509.load_der_x509_certificate(base64.b64decode(key["x5c"][0]))
    assert cert.subject.rfc4514_string() == f"CN={ISSUER}"
    assert jwt.decode(token, cert.public_key(), algorithms=["RS256"])["iss"] == ISSUER  # type: ignore[arg-type]
    assert "PRIVATE" not in repr(signer)


def test_a_kept_key_keeps_the_kid_so_old_tokens_verify_after_a_restart(tmp_path: Path) -> None:
    key_path = tmp_path / "maa-signing-key.pem"
    before = TokenSigner(ISSUER, key_path=key_path)
    token = before.sign(_claims())
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    after = TokenSigner(ISSUER, key_path=key_path)
    assert after.kid == before.kid
    key = signing_keys_from_jwks(after.jwks())[jwt.get_unverified_header(token)["kid"]]
    assert jwt.decode(token, key, algorithms=["RS256"])["iss"] == ISSUER
    other = TokenSigner(ISSUER)
    assert other.kid != before.kid


def test_an_unusable_key_file_is_a_config_error(tmp_path: Path) -> None:
    key_path = tmp_path / "maa-signing-key.pem"
    key_path.write_bytes(b"not a key")
    with pytest.raises(ConfigError):
        TokenSigner(ISSUER, key_path=key_path)
