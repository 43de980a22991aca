"""CCF receipt verification: real receipts from the emulator's ledger for every leaf of trees of
1..9 transactions, then each tampering refused with its own error, and the fuzz invariant."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from gateway.emulators.ccf_ledger import Ledger
from gateway.errors import (
    MalformedReceipt,
    ReceiptClaimsMismatch,
    ReceiptEndorsementInvalid,
    ReceiptSignatureInvalid,
)
from gateway.trust.receipts import parse_receipt, public_key_claims_digest, verify_receipt
from tests.support.fuzzing import assert_parses_or_raises_ours, cases


@pytest.fixture(scope="module")
def ledger(tmp_path_factory: pytest.TempPathFactory) -> Ledger:
    return Ledger(Path(tmp_path_factory.mktemp("ledger")))


def _digest(i: int) -> bytes:
    return public_key_claims_digest(f"{i:02x}" * 53)


def test_every_leaf_of_every_tree_size_verifies(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path)
    for size in range(1, 10):
        ledger.append(_digest(size))
        for index in range(size):
            receipt = parse_receipt(json.dumps(ledger.receipt(index)))
            verify_receipt(
                receipt, service_cert=ledger.service_cert, claims_digest=_digest(index + 1)
            )


def test_claims_digest_is_sha256_of_the_public_key_hex() -> None:
    assert public_key_claims_digest("ab01") == hashlib.sha256(b"ab01").digest()


def _verify(ledger: Ledger, document: dict[str, Any], digest: bytes) -> None:
    verify_receipt(parse_receipt(document), service_cert=ledger.service_cert, claims_digest=digest)


def _fresh(ledger: Ledger) -> tuple[dict[str, Any], bytes]:
    ledger.append(_digest(100))
    index = ledger.append(_digest(101))
    ledger.append(_digest(102))
    return ledger.receipt(index), _digest(101)


def _flip_hex(value: str) -> str:
    raw = bytearray(bytes.fromhex(value))
    raw[0] ^= 1
    return raw.hex()


@pytest.mark.parametrize(
    ("tamper", "error"),
    [
        ("claims digest", ReceiptClaimsMismatch),
        ("write set digest", ReceiptSignatureInvalid),
        ("commit evidence", ReceiptSignatureInvalid),
        ("proof sibling", ReceiptSignatureInvalid),
        ("proof side", ReceiptSignatureInvalid),
        ("signature", ReceiptSignatureInvalid),
        ("foreign node cert", ReceiptSignatureInvalid),
    ],
)
def test_tampering_is_refused(
    ledger: Ledger, tmp_path: Path, tamper: str, error: type[Exception]
) -> None:
    document, digest = _fresh(ledger)
    _verify(ledger, document, digest)
    bad = copy.deepcopy(document)
    leaf = bad["leaf_components"]
    if tamper == "claims digest":
        leaf["claims_digest"] = _flip_hex(leaf["claims_digest"])
    elif tamper == "write set digest":
        leaf["write_set_digest"] = _flip_hex(leaf["write_set_digest"])
    elif tamper == "commit evidence":
        leaf["commit_evidence"] += "0"
    elif tamper == "proof sibling":
        ((side, value),) = bad["proof"][0].items()
        bad["proof"][0] = {side: _flip_hex(value)}
    elif tamper == "proof side":
        ((side, value),) = bad["proof"][0].items()
        bad["proof"][0] = {"left" if side == "right" else "right": value}
    elif tamper == "signature":
        raw = bytearray(base64.b64decode(bad["signature"]))
        raw[10] ^= 1
        bad["signature"] = base64.b64encode(bytes(raw)).decode()
    else:
        stranger = Ledger(tmp_path)
        bad["cert"] = stranger.receipt(stranger.append(digest))["cert"]
    with pytest.raises(error):
        _verify(ledger, bad, digest)


def test_receipt_of_another_service_is_refused(ledger: Ledger, tmp_path: Path) -> None:
    document, digest = _fresh(ledger)
    stranger = Ledger(tmp_path)
    with pytest.raises(ReceiptEndorsementInvalid):
        verify_receipt(
            parse_receipt(document), service_cert=stranger.service_cert, claims_digest=digest
        )


@pytest.mark.parametrize(
    "document",
    [None, [], "not json", {"leaf_components": {}}, {"proof": "x"}],
)
def test_malformed_receipts(document: object) -> None:
    with pytest.raises(MalformedReceipt):
        parse_receipt(json.dumps(document) if document != "not json" else "{")


def test_fuzz_parse_and_verify(ledger: Ledger) -> None:
    document, digest = _fresh(ledger)
    seed = json.dumps(document).encode()

    def decode(data: bytes) -> None:
        verify_receipt(parse_receipt(data), service_cert=ledger.service_cert, claims_digest=digest)

    for data in cases([seed], 1500, seed=0x7EC):
        assert_parses_or_raises_ours(decode, data)
