"""Decapsulation in two phases: the key agreement computed first (elsewhere), then the rest.

The gateway computes a P-384 DH(skR, pkE) away from its event loop and hands it to the sans-I/O
decapsulation. These tests hold that path to the one-call path: the same plaintexts for every KEM,
plain and chunked, whatever the slicing; the same errors; and no way to use an agreement made for
another request.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.errors import (
    ConfigError,
    DecryptionFailed,
    MalformedRequestHeader,
    SuiteNotAllowed,
    UnknownKeyId,
)
from gateway.protocol import chunked, ohttp
from gateway.protocol.chunked import ChunkedRequestDecapsulator, ChunkedRequestEncapsulator
from gateway.protocol.keys import KemId
from tests.support.ohttp_keys import derived_keys, ring_of

KEYS = derived_keys(1)
RING = ring_of(KEYS)


def _plain(kem: KemId, inner: bytes = b"inner request") -> bytes:
    config = KEYS[kem].config
    return ohttp.encapsulate_request(config, config.suites[0], inner)[0]


def _chunked(kem: KemId, inner: bytes) -> bytes:
    config = KEYS[kem].config
    sender = ChunkedRequestEncapsulator(config, config.suites[0])
    return sender.start() + sender.encapsulate_chunk(inner) + sender.finish(b"!")


@pytest.mark.parametrize("kem", list(KemId), ids=lambda kem: kem.name)
def test_an_agreement_made_first_opens_what_the_one_call_path_opens(kem: KemId) -> None:
    body = _plain(kem)
    found = ohttp.agreement_input(RING, body, ohttp.REQUEST_LABEL)
    assert found is not None
    assert found.key is KEYS[kem]
    assert found.enc == body[7 : 7 + len(found.enc)]
    agreed = found.agree()
    assert ohttp.decapsulate_request(RING, body, agreed)[0] == b"inner request"
    assert ohttp.decapsulate_request(RING, body)[0] == b"inner request"


def test_agreement_input_waits_for_hdr_and_enc_and_checks_the_header_first() -> None:
    body = _plain(KemId.P384_SHA384)
    for cut in range(7 + 97):  # P-384: a 7-byte header, a 97-byte enc
        assert ohttp.agreement_input(RING, body[:cut], ohttp.REQUEST_LABEL) is None
    assert ohttp.agreement_input(RING, body[: 7 + 97], ohttp.REQUEST_LABEL) is not None
    with pytest.raises(UnknownKeyId):
        ohttp.agreement_input(RING, b"\xee" + body[1:7], ohttp.REQUEST_LABEL)
    wrong_kem = body[:1] + KemId.X25519_SHA256.to_bytes(2, "big") + body[3:]
    with pytest.raises(SuiteNotAllowed):
        ohttp.agreement_input(RING, wrong_kem, ohttp.REQUEST_LABEL)
    with pytest.raises(MalformedRequestHeader):
        ohttp.agreement_input(RING, body[:1] + b"\x99\x99" + body[3:], ohttp.REQUEST_LABEL)


def test_an_agreement_for_another_request_is_refused() -> None:
    first, second = _plain(KemId.P384_SHA384), _plain(KemId.P384_SHA384)
    found = ohttp.agreement_input(RING, first, ohttp.REQUEST_LABEL)
    assert found is not None
    with pytest.raises(ConfigError):
        ohttp.decapsulate_request(RING, second, found.agree())


def test_a_wrong_or_all_zero_dh_does_not_open() -> None:
    body = _plain(KemId.P384_SHA384)
    found = ohttp.agreement_input(RING, body, ohttp.REQUEST_LABEL)
    assert found is not None
    right = found.agree()
    for dh in (bytes(len(right.dh)), bytes([right.dh[0] ^ 1]) + right.dh[1:]):
        with pytest.raises(DecryptionFailed):
            ohttp.decapsulate_request(RING, body, ohttp.Agreement(right.enc, dh))


def test_an_agreement_never_prints_its_secret() -> None:
    found = ohttp.agreement_input(RING, _plain(KemId.P384_SHA384), ohttp.REQUEST_LABEL)
    assert found is not None
    agreed = found.agree()
    assert agreed.dh.hex() not in repr(agreed)
    assert "redacted" in repr(agreed)
    assert repr(found) == f"AgreementInput(key_id={found.key.key_id})"


@given(st.lists(st.integers(min_value=1, max_value=64), max_size=20))
def test_chunked_streams_open_with_an_agreement_made_first_for_any_slicing(
    cuts: list[int],
) -> None:
    body = _chunked(KemId.P384_SHA384, b"audio" * 50)
    prefix = 7 + 97
    found = ohttp.agreement_input(RING, body[:prefix], chunked.REQUEST_LABEL)
    assert found is not None
    gateway = ChunkedRequestDecapsulator(RING)
    gateway.use_agreement(found.agree())
    opened: list[bytes] = []
    position = 0
    for size in cuts:
        opened += gateway.feed(body[position : position + size])
        position += size
    opened += gateway.feed(body[position:])
    opened += gateway.finish()
    assert b"".join(opened) == b"audio" * 50 + b"!"
    assert gateway.done


def test_the_agreement_depends_on_enc_and_key_only_not_on_the_label() -> None:
    """The label changes the HPKE info, which enters after the DH: an agreement found through
    either label opens the stream, and the label still decides the keys."""
    body = _chunked(KemId.P384_SHA384, b"x")
    found = ohttp.agreement_input(RING, body, ohttp.REQUEST_LABEL)
    assert found is not None
    gateway = ChunkedRequestDecapsulator(RING)
    gateway.use_agreement(found.agree())
    assert b"".join(gateway.feed(body) + gateway.finish()) == b"x!"
