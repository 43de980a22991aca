"""The standard-library HKDF-Expand of the response keys agrees with cryptography's HKDFExpand."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

from gateway.protocol._hpke import hkdf_expand

HASHES = {"sha256": hashes.SHA256(), "sha384": hashes.SHA384(), "sha512": hashes.SHA512()}


@pytest.mark.parametrize("digest", sorted(HASHES))
@pytest.mark.parametrize("length", [1, 12, 16, 32, 48, 64, 65, 100, 255])
def test_hkdf_expand_matches_cryptography(digest: str, length: int) -> None:
    prk = bytes(range(64))[: HASHES[digest].digest_size]
    expected = HKDFExpand(HASHES[digest], length, b"nonce").derive(prk)
    assert hkdf_expand(digest, prk, b"nonce", length) == expected
