"""Builds WAV files for tests, written from the RIFF layout independently of gateway.demo.wav."""

from __future__ import annotations

import struct

PCM, IEEE_FLOAT, EXTENSIBLE = 0x0001, 0x0003, 0xFFFE
SUBFORMAT_TAIL = bytes.fromhex("000000001000800000aa00389b71")


def fmt_chunk(
    rate: int, channels: int, bits: int, tag: int = PCM, extensible: bool = False
) -> bytes:
    block_align = channels * bits // 8
    fields = struct.pack("<HIIHH", channels, rate, rate * block_align, block_align, bits)
    if not extensible:
        return chunk(b"fmt ", struct.pack("<H", tag) + fields)
    extension = struct.pack("<HHIH", 22, bits, 0, tag) + SUBFORMAT_TAIL
    return chunk(b"fmt ", struct.pack("<H", EXTENSIBLE) + fields + extension)


def chunk(chunk_id: bytes, body: bytes, declared: int | None = None) -> bytes:
    size = len(body) if declared is None else declared
    return chunk_id + struct.pack("<I", size) + body + b"\0" * (len(body) & 1)


def riff(*chunks: bytes) -> bytes:
    body = b"WAVE" + b"".join(chunks)
    return b"RIFF" + struct.pack("<I", len(body)) + body


def wav(
    frames: bytes,
    rate: int = 16_000,
    channels: int = 1,
    bits: int = 16,
    tag: int = PCM,
    extensible: bool = False,
) -> bytes:
    return riff(fmt_chunk(rate, channels, bits, tag, extensible), chunk(b"data", frames))


def int16(*samples: int) -> bytes:
    return struct.pack(f"<{len(samples)}h", *samples)
