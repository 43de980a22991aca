"""gateway.demo.wav: header parsing, each conversion path, each refusal, the fuzz invariant."""

from __future__ import annotations

import struct

import pytest

from gateway.demo.backend import SAMPLE_AUDIO
from gateway.demo.wav import WavAudio, parse_wav, to_recogniser_pcm
from gateway.errors import AudioInvalid
from tests.demo.wavs import IEEE_FLOAT, chunk, fmt_chunk, int16, riff, wav
from tests.support.fuzzing import assert_parses_or_raises_ours, cases


def convert(data: bytes) -> bytes:
    return to_recogniser_pcm(parse_wav(data))


def test_the_bundled_sample_is_16k_mono_16_bit_and_passes_through_unchanged() -> None:
    data = SAMPLE_AUDIO.read_bytes()
    audio = parse_wav(data)
    assert (audio.rate, audio.channels, audio.width, audio.is_float) == (16_000, 1, 2, False)
    assert 2.0 < audio.duration < 4.0
    assert convert(data) == audio.frames
    assert repr(audio) == "WavAudio(16000 Hz, 1 ch, 16-bit int, 2.96 s)"


@pytest.mark.parametrize(
    ("frames", "bits", "expected"),
    [
        (bytes([0x80, 0xFF, 0x00]), 8, (0, 32512, -32768)),  # unsigned, offset by 128
        (bytes.fromhex("563412ffffff"), 24, (0x1234, -1)),  # keep the top 16 bits
        (bytes.fromhex("7856341200000080"), 32, (0x1234, -32768)),
    ],
    ids=["8-bit", "24-bit", "32-bit"],
)
def test_integer_widths_keep_the_16_most_significant_bits(
    frames: bytes, bits: int, expected: tuple[int, ...]
) -> None:
    assert convert(wav(frames, bits=bits)) == int16(*expected)


@pytest.mark.parametrize("extensible", [False, True], ids=["plain", "extensible"])
def test_float_samples_are_clipped_and_scaled(extensible: bool) -> None:
    frames = struct.pack("<5f", 0.5, -0.25, 1.5, -2.0, float("nan"))
    data = wav(frames, bits=32, tag=IEEE_FLOAT, extensible=extensible)
    assert convert(data) == int16(16384, -8192, 32767, -32767, 32767)


def test_channels_are_averaged() -> None:
    stereo = int16(100, 300, -3, 0, 32767, 32767)
    assert convert(wav(stereo, channels=2)) == int16(200, -2, 32767)
    three = int16(3, 6, 9)
    assert convert(wav(three, channels=3)) == int16(6)


def test_downsampling_averages_each_output_span() -> None:
    assert convert(wav(int16(10, 20, -30, -50, 7), rate=32_000)) == int16(15, -40)
    # 48 kHz -> 16 kHz: three input samples per output sample.
    assert convert(wav(int16(3, 6, 9, 1, 1, 1), rate=48_000)) == int16(6, 1)


def test_upsampling_interpolates_linearly() -> None:
    assert convert(wav(int16(0, 100), rate=8_000)) == int16(0, 50, 100, 100)


def test_24_bit_stereo_48k_extensible() -> None:
    frame = bytes.fromhex("000010000030")  # left 0x1000, right 0x3000 in the top bits
    data = wav(frame * 480, rate=48_000, channels=2, bits=24, extensible=True)
    assert convert(data) == int16(0x2000) * 160


def test_data_size_past_the_end_is_clipped_to_whole_frames() -> None:
    # Streamed WAVs declare 0xFFFFFFFF; the odd trailing byte is half a frame.
    data = riff(fmt_chunk(16_000, 1, 16), b"data\xff\xff\xff\xff" + int16(1, 2) + b"\x07")
    assert parse_wav(data).frames == int16(1, 2)


def test_other_chunks_are_skipped_with_their_padding() -> None:
    data = riff(chunk(b"LIST", b"odd"), fmt_chunk(16_000, 1, 16), chunk(b"data", int16(5)))
    assert parse_wav(data) == WavAudio(16_000, 1, 2, False, int16(5))


def test_no_samples_converts_to_nothing() -> None:
    assert convert(wav(b"", rate=44_100)) == b""


FMT = fmt_chunk(16_000, 1, 16)
DATA = chunk(b"data", int16(1, 2))
# A plain fmt body with the EXTENSIBLE tag, cbSize 22, valid bits 16 and no channel mask.
EXTENSIBLE_HEAD = b"\xfe\xff" + FMT[10:24] + struct.pack("<HHI", 22, 16, 0)


def with_fmt_fields(**fields: int) -> bytes:
    values = {"tag": 1, "channels": 1, "rate": 16_000, "block_align": 2, "bits": 16} | fields
    body = struct.pack(
        "<HHIIHH",
        values["tag"],
        values["channels"],
        values["rate"],
        values["rate"] * values["block_align"],
        values["block_align"],
        values["bits"],
    )
    return riff(chunk(b"fmt ", body), DATA)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "not a WAV"),
        (b"ID3\x04\x00\x00\x00\x00\x00\x00", "not a WAV"),
        (b"RIFF\x00\x00\x00\x00AVI ", "not a WAV"),
        (riff(FMT), "no data chunk"),
        (riff(), "no data chunk"),
        (riff(DATA, FMT), "before its fmt"),
        (riff(chunk(b"fmt ", b"\x01\x00\x01\x00"), DATA), "truncated"),
        (with_fmt_fields(tag=0x0055), "encoding not supported"),  # MPEG layer 3
        (with_fmt_fields(tag=3, bits=64, block_align=8), "sample width"),  # float64
        (with_fmt_fields(channels=0), "channels or sample rate"),
        (with_fmt_fields(channels=9, block_align=18), "channels or sample rate"),
        (with_fmt_fields(rate=4_000), "channels or sample rate"),
        (with_fmt_fields(rate=384_000), "channels or sample rate"),
        (with_fmt_fields(bits=12), "sample width"),
        (with_fmt_fields(bits=40, block_align=5), "sample width"),
        (with_fmt_fields(block_align=4), "block alignment"),
        (riff(fmt_chunk(16_000, 1, 16, tag=0x0055, extensible=True), DATA), "not supported"),
        (riff(chunk(b"fmt ", EXTENSIBLE_HEAD + b"\0" * 12), DATA), "extensible"),  # short
        (riff(chunk(b"fmt ", EXTENSIBLE_HEAD + b"\x01\0" + b"\xff" * 14), DATA), "extensible"),
    ],
)
def test_unusable_audio_is_refused_with_a_clear_message(data: bytes, message: str) -> None:
    with pytest.raises(AudioInvalid, match=message) as raised:
        parse_wav(data)
    assert raised.value.status == 400


def fuzz_seeds() -> list[bytes]:
    sample = SAMPLE_AUDIO.read_bytes()[:300]  # the real header and a few frames
    return [
        sample,
        wav(int16(1, -2, 3, -4), rate=8_000, channels=2),
        wav(bytes(range(12)), rate=44_100, bits=24, extensible=True),
        wav(struct.pack("<3f", 0.1, -0.2, 0.3), rate=48_000, bits=32, tag=IEEE_FLOAT),
        wav(bytes(9), rate=22_050, bits=8, channels=3),
        riff(chunk(b"LIST", b"odd"), FMT, DATA),
    ]


def test_fuzz_parse_and_convert_raise_only_our_errors() -> None:
    for data in cases(fuzz_seeds(), count=3_000, seed=20261130):
        assert_parses_or_raises_ours(convert, data)
