"""Variable-length integers: QUIC varints (RFC 9000 §16) and unsigned LEB128.

QUIC varints frame Binary HTTP (RFC 9292) and chunked OHTTP; LEB128 frames the Azure-profile
response chunks. Decoders accept non-minimal encodings, as RFC 9292 §3 requires, and never read
past the end of the buffer: they return ``None`` when more bytes are needed.
"""

from __future__ import annotations

from gateway.errors import ProtocolError

MAX_VARINT = (1 << 62) - 1


def encode_varint(value: int) -> bytes:
    """The minimal QUIC encoding of ``value`` (0 ≤ value < 2^62)."""
    if value < 0 or value > MAX_VARINT:
        raise ProtocolError("varint out of range")
    if value < 1 << 6:
        return value.to_bytes(1, "big")
    if value < 1 << 14:
        return (value | 0x4000).to_bytes(2, "big")
    if value < 1 << 30:
        return (value | 0x8000_0000).to_bytes(4, "big")
    return (value | 0xC000_0000_0000_0000).to_bytes(8, "big")


def decode_varint(data: bytes | bytearray | memoryview, offset: int = 0) -> tuple[int, int] | None:
    """Decode the varint at ``offset``: ``(value, next_offset)``, or ``None`` if incomplete."""
    if offset >= len(data):
        return None
    first = data[offset]
    if first < 0x40:  # one byte: most lengths in a Binary HTTP message
        return first, offset + 1
    length = 1 << (first >> 6)
    end = offset + length
    if end > len(data):
        return None
    value = first & 0x3F
    for index in range(offset + 1, end):
        value = (value << 8) | data[index]
    return value, end


def varint_length(first_byte: int) -> int:
    """How many bytes the varint starting with ``first_byte`` occupies."""
    return 1 << (first_byte >> 6)


MAX_LEB128_BYTES = 10  # enough for any 64-bit value


def encode_leb128(value: int) -> bytes:
    """Unsigned LEB128 encoding of ``value`` (0 ≤ value < 2^64)."""
    if value < 0 or value >= 1 << 64:
        raise ProtocolError("LEB128 value out of range")
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def decode_leb128(data: bytes | bytearray | memoryview, offset: int = 0) -> tuple[int, int] | None:
    """Decode the LEB128 value at ``offset``: ``(value, next_offset)``, or ``None`` if incomplete.

    Raises :class:`ProtocolError` for an encoding longer than any 64-bit value needs.
    """
    value = 0
    shift = 0
    index = offset
    while index < len(data):
        byte = data[index]
        value |= (byte & 0x7F) << shift
        index += 1
        if not byte & 0x80:
            if value >= 1 << 64:
                raise ProtocolError("LEB128 value out of range")
            return value, index
        shift += 7
        if index - offset >= MAX_LEB128_BYTES:
            raise ProtocolError("LEB128 value too long")
    return None
