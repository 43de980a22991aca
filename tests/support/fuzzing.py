"""A small, seeded mutation fuzzer for the protocol decoders.

The invariant (after h11's fuzz/afl-server.py): every decoder, fed any bytes whole or one byte at a
time, either parses or raises our own :class:`GatewayError`, and never anything else. The mutator
is deterministic for a given seed, so a failing case is reproduced by its seed and index.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Sequence

from gateway.errors import GatewayError

INTERESTING_BYTES = (0x00, 0x01, 0x3F, 0x40, 0x7F, 0x80, 0xBF, 0xC0, 0xFF)


def mutate(data: bytes, rng: random.Random) -> bytes:
    """One random structural mutation of ``data``."""
    buf = bytearray(data)
    choice = rng.randrange(8)
    if choice == 0 and buf:  # flip one bit
        i = rng.randrange(len(buf))
        buf[i] ^= 1 << rng.randrange(8)
    elif choice == 1 and buf:  # replace a byte with a boundary value
        buf[rng.randrange(len(buf))] = rng.choice(INTERESTING_BYTES)
    elif choice == 2:  # truncate
        del buf[rng.randrange(len(buf) + 1) :]
    elif choice == 3 and buf:  # delete a span
        i = rng.randrange(len(buf))
        del buf[i : i + rng.randrange(1, 9)]
    elif choice == 4:  # insert random bytes
        i = rng.randrange(len(buf) + 1)
        buf[i:i] = rng.randbytes(rng.randrange(1, 9))
    elif choice == 5 and buf:  # duplicate a span
        i = rng.randrange(len(buf))
        buf[i:i] = buf[i : i + rng.randrange(1, 17)]
    elif choice == 6:  # append zeros or junk
        buf += bytes(rng.randrange(1, 5)) if rng.random() < 0.5 else rng.randbytes(3)
    else:  # fully random
        buf = bytearray(rng.randbytes(rng.randrange(0, 64)))
    return bytes(buf)


def cases(seeds: Sequence[bytes], count: int, seed: int) -> Iterator[bytes]:
    """``count`` inputs: the seeds themselves, then stacked mutations of them."""
    rng = random.Random(seed)
    yield from seeds
    for _ in range(max(0, count - len(seeds))):
        data = rng.choice(seeds)
        for _ in range(rng.randrange(1, 4)):
            data = mutate(data, rng)
        yield data


def assert_parses_or_raises_ours(decode: Callable[[bytes], object], data: bytes) -> None:
    """The fuzz invariant for one input: a result, or a GatewayError, nothing else."""
    try:
        decode(data)
    except GatewayError:
        pass
    except Exception as error:  # the point is to catch any foreign exception
        raise AssertionError(f"{type(error).__name__} for input {data.hex()}") from error
