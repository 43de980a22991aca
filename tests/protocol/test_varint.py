from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.errors import ProtocolError
from gateway.protocol.varint import (
    MAX_VARINT,
    decode_leb128,
    decode_varint,
    encode_leb128,
    encode_varint,
)


@pytest.mark.parametrize(
    ("value", "encoded"),
    [  # RFC 9000 Appendix A.1 examples, plus each length's boundaries
        (37, "25"),
        (15293, "7bbd"),
        (494878333, "9d7f3e7d"),
        (151288809941952652, "c2197c5eff14e88c"),
        (63, "3f"),
        (64, "4040"),
        (16383, "7fff"),
        (16384, "80004000"),
    ],
)
def test_varint_examples(value: int, encoded: str) -> None:
    assert encode_varint(value).hex() == encoded
    assert decode_varint(bytes.fromhex(encoded)) == (value, len(encoded) // 2)


def test_non_minimal_varints_are_accepted() -> None:
    # RFC 9000 A.1: 0x4025 is a two-byte encoding of 37.
    assert decode_varint(bytes.fromhex("4025")) == (37, 2)
    assert decode_varint(bytes.fromhex("c000000000000025")) == (37, 8)


def test_incomplete_varint_asks_for_more() -> None:
    assert decode_varint(b"") is None
    assert decode_varint(bytes.fromhex("c2197c")) is None
    assert decode_varint(b"\x00", 1) is None


@pytest.mark.parametrize("value", [-1, MAX_VARINT + 1])
def test_varint_out_of_range(value: int) -> None:
    with pytest.raises(ProtocolError):
        encode_varint(value)


@given(st.integers(min_value=0, max_value=MAX_VARINT))
def test_varint_round_trip(value: int) -> None:
    encoded = encode_varint(value)
    assert decode_varint(encoded) == (value, len(encoded))


@given(st.integers(min_value=0, max_value=(1 << 64) - 1))
def test_leb128_round_trip(value: int) -> None:
    encoded = encode_leb128(value)
    assert decode_leb128(encoded) == (value, len(encoded))
    assert decode_leb128(encoded[:-1]) is None


def test_leb128_examples() -> None:
    assert encode_leb128(0) == b"\x00"
    assert encode_leb128(624485).hex() == "e58e26"
    assert decode_leb128(bytes.fromhex("e58e26")) == (624485, 3)


@pytest.mark.parametrize("value", [-1, 1 << 64])
def test_leb128_out_of_range(value: int) -> None:
    with pytest.raises(ProtocolError):
        encode_leb128(value)


def test_leb128_overlong_is_refused() -> None:
    with pytest.raises(ProtocolError):
        decode_leb128(b"\x80" * 10 + b"\x00")
    with pytest.raises(ProtocolError):
        decode_leb128(b"\xff" * 9 + b"\x7f")  # 10 bytes, but more than 64 bits
