"""WAV (RIFF) parsing and conversion to the recogniser's input: 16 kHz mono 16-bit PCM.

Accepts: a RIFF/WAVE byte string with a ``fmt `` chunk before its ``data`` chunk, encoded as
integer PCM of 8, 16, 24 or 32 bits or as 32-bit IEEE float, plain or WAVE_FORMAT_EXTENSIBLE,
1 to 8 channels, 8 to 192 kHz. A ``data`` size beyond the end of the input (streamed WAVs write
0xFFFFFFFF) is clipped to what is present, in whole frames.

Guarantees: :func:`parse_wav` reads only headers and slices (cheap: safe on the event loop) and
either returns a :class:`WavAudio` or raises :class:`AudioInvalid`, never another exception.
:func:`to_recogniser_pcm` does the per-sample work in pure Python (a few seconds for 25 MiB), so
callers run it in a worker process. Mixdown averages channels; resampling is linear interpolation
upwards and a box filter (the mean over each output sample's input span) downwards, which is
crude but plenty for speech recognition.

Never: uses ``audioop`` (deprecated in 3.11, removed in 3.13) or numpy; never includes audio
bytes in an error message.
"""

from __future__ import annotations

import array
import itertools
import struct
import sys
from dataclasses import dataclass

from gateway.errors import AudioInvalid

TARGET_RATE = 16_000

_PCM = 0x0001
_IEEE_FLOAT = 0x0003
_EXTENSIBLE = 0xFFFE
# The GUID tail shared by every KSDATAFORMAT_SUBTYPE_*; the first two bytes carry the format tag.
_SUBFORMAT_TAIL = bytes.fromhex("000000001000800000aa00389b71")
_RATES = range(8_000, 192_001)
_CHANNELS = range(1, 9)
_INT_WIDTHS = (1, 2, 3, 4)


@dataclass(frozen=True, repr=False)
class WavAudio:
    """The decoded header and the raw sample bytes (whole frames only) of one WAV file."""

    rate: int
    channels: int
    width: int  # bytes per sample
    is_float: bool
    frames: bytes

    @property
    def frame_count(self) -> int:
        return len(self.frames) // (self.width * self.channels)

    @property
    def duration(self) -> float:
        return self.frame_count / self.rate

    def __repr__(self) -> str:
        kind = f"{8 * self.width}-bit {'float' if self.is_float else 'int'}"
        return f"WavAudio({self.rate} Hz, {self.channels} ch, {kind}, {self.duration:.2f} s)"


def parse_wav(data: bytes) -> WavAudio:
    """Parse a WAV file's headers; raise :class:`AudioInvalid` for anything unusable."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise AudioInvalid("audio is not a WAV (RIFF/WAVE) file; only WAV is accepted")
    fmt: tuple[int, int, int, bool] | None = None
    offset = 12
    while offset + 8 <= len(data):
        chunk_id = data[offset : offset + 4]
        (size,) = struct.unpack_from("<I", data, offset + 4)
        body = data[offset + 8 : offset + 8 + size]
        if chunk_id == b"fmt ":
            fmt = _parse_fmt(body)
        elif chunk_id == b"data":
            if fmt is None:
                raise AudioInvalid("WAV data chunk comes before its fmt chunk")
            rate, channels, width, is_float = fmt
            whole = len(body) - len(body) % (channels * width)
            return WavAudio(rate, channels, width, is_float, bytes(body[:whole]))
        offset += 8 + size + (size & 1)  # chunks are padded to an even length
    raise AudioInvalid("WAV file has no data chunk")


def _parse_fmt(body: bytes) -> tuple[int, int, int, bool]:
    if len(body) < 16:
        raise AudioInvalid("WAV fmt chunk is truncated")
    tag, channels, rate, _byte_rate, block_align, bits = struct.unpack_from("<HHIIHH", body)
    if tag == _EXTENSIBLE:
        if len(body) < 40 or body[26:40] != _SUBFORMAT_TAIL:
            raise AudioInvalid("WAV extensible format is not PCM or float")
        (tag,) = struct.unpack_from("<H", body, 24)
    if tag not in (_PCM, _IEEE_FLOAT):
        raise AudioInvalid("WAV encoding not supported: only PCM or 32-bit float")
    if channels not in _CHANNELS or rate not in _RATES:
        raise AudioInvalid("WAV channels or sample rate out of range (1-8 channels, 8-192 kHz)")
    width = bits // 8
    is_float = tag == _IEEE_FLOAT
    if bits % 8 or (width != 4 if is_float else width not in _INT_WIDTHS):
        raise AudioInvalid("WAV sample width not supported: 8, 16, 24 or 32 bits")
    if block_align != width * channels:
        raise AudioInvalid("WAV block alignment does not match channels and sample width")
    return rate, channels, width, is_float


def to_recogniser_pcm(audio: WavAudio) -> bytes:
    """16 kHz mono signed 16-bit little-endian PCM of ``audio``."""
    samples = _to_int16(audio)
    if audio.channels > 1:
        samples = _mixdown(samples, audio.channels)
    if audio.rate != TARGET_RATE:
        samples = _resample(samples, audio.rate, TARGET_RATE)
    if sys.byteorder == "big":
        samples.byteswap()
    return samples.tobytes()


def _to_int16(audio: WavAudio) -> array.array[int]:
    raw, width = audio.frames, audio.width
    if audio.is_float:
        floats = array.array("f", raw)
        if sys.byteorder == "big":
            floats.byteswap()
        return array.array("h", (round(max(-1.0, min(1.0, x)) * 32767) for x in floats))
    out = bytearray(len(raw) // width * 2)
    if width == 1:  # unsigned 8-bit: flip the sign bit and use it as the high byte
        out[1::2] = raw.translate(bytes((b ^ 0x80) for b in range(256)))
    else:  # keep the two most significant bytes of each little-endian sample
        out[0::2] = raw[width - 2 :: width]
        out[1::2] = raw[width - 1 :: width]
    samples = array.array("h", bytes(out))
    if sys.byteorder == "big":
        samples.byteswap()
    return samples


def _mixdown(samples: array.array[int], channels: int) -> array.array[int]:
    lanes = [samples[c::channels] for c in range(channels)]
    return array.array("h", (sum(frame) // channels for frame in zip(*lanes, strict=True)))


def _resample(samples: array.array[int], rate: int, target: int) -> array.array[int]:
    count = len(samples) * target // rate
    if count == 0:
        return array.array("h")
    step = rate / target
    if rate > target:
        sums = list(itertools.accumulate(samples, initial=0))
        spans = ((int(i * step), max(int(i * step) + 1, int((i + 1) * step))) for i in range(count))
        return array.array("h", ((sums[hi] - sums[lo]) // (hi - lo) for lo, hi in spans))
    last = len(samples) - 1
    out = array.array("h")
    for i in range(count):
        position = i * step
        left = int(position)
        right = min(left + 1, last)
        fraction = position - left
        out.append(round(samples[left] + (samples[right] - samples[left]) * fraction))
    return out
