"""Binary HTTP decoder throughput: a 25 MiB body, both framings, fed in 16 KiB and 1 MiB slices.

Run: ``python -m bench.bhttp_bench`` (prints MB/s per case). The incremental decoder must stay
linear in the input; tests/protocol/test_bhttp_bench.py guards a floor well below these figures.
"""

from __future__ import annotations

import time

from gateway.protocol.bhttp import (
    BodyChunk,
    Framing,
    Request,
    RequestDecoder,
    RequestEncoder,
    encode_request,
)

BODY_SIZE = 25 * 1024 * 1024
SLICES = (16 * 1024, 1024 * 1024)
HEAD = (b"POST", b"https", b"whisper.local", b"/v1/audio/transcriptions", [(b"a", b"b")])


def known_length_message(body: bytes) -> bytes:
    request = Request(*HEAD[:4], headers=tuple(HEAD[4]), content=body)
    return encode_request(request, Framing.KNOWN_LENGTH)


def streamed_message(body: bytes, chunk: int = 16 * 1024) -> bytes:
    """Indeterminate length, as a streaming client sends it: one chunk per 16 KiB read."""
    encoder = RequestEncoder()
    parts = [encoder.head(*HEAD)]
    parts += [encoder.body(body[i : i + chunk]) for i in range(0, len(body), chunk)]
    return b"".join([*parts, encoder.end()])


def decode_in_slices(wire: bytes, size: int) -> tuple[int, float]:
    """(content bytes seen, seconds) for decoding ``wire`` fed in ``size``-byte slices."""
    view = memoryview(wire)
    start = time.perf_counter()
    decoder = RequestDecoder()
    received = 0
    for offset in range(0, len(wire), size):
        for event in decoder.feed(view[offset : offset + size]):
            if isinstance(event, BodyChunk):
                received += len(event.data)
    decoder.finish()
    return received, time.perf_counter() - start


def run(body_size: int = BODY_SIZE) -> list[tuple[str, int, float]]:
    """(framing, slice size, MB/s) for each case."""
    body = bytes(range(256)) * (body_size // 256)
    results = []
    for name, wire in (
        ("known-length", known_length_message(body)),
        ("indeterminate", streamed_message(body)),
    ):
        for size in SLICES:
            received, seconds = decode_in_slices(wire, size)
            assert received == len(body)
            results.append((name, size, len(body) / seconds / 1e6))
    return results


def main() -> None:
    for name, size, rate in run():
        print(f"bhttp decode {name:14} 25 MiB in {size // 1024:5} KiB slices: {rate:8.0f} MB/s")


if __name__ == "__main__":
    main()
