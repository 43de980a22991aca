"""The P-384 private key Azure's confidential KMS releases: a CBOR COSE_Key-like map (pure).

Accepts the unwrapped plaintext: a CBOR map with exactly the labels ``-1`` (curve, 2 = P-384),
``-2`` (x), ``-3`` (y), ``-4`` (d), each coordinate 48 bytes, and ``4`` (the key id, 0..255), as
Microsoft's KMS writes it (``4`` is its label for the kid, not COSE's ``key_ops``). Guarantees:
any other shape, an unknown label, a ``d`` out of range, or ``x``/``y`` that are not the public
key of ``d`` raise :class:`ReleasedKeyInvalid`; only what :func:`decode_cose_key` returns is used.
:func:`encode_cose_key` is the inverse, for the KMS emulator.

cbor2 rather than a hand-rolled reader: CBOR has many encodings of the same map (definite or
indefinite lengths, non-minimal heads); Microsoft's KMS hand-builds its bytes and is only valid
CBOR for kid < 24, so a tolerant, well-tested decoder is what interoperates.

Never: puts key bytes into an error.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cbor2
from cryptography.hazmat.primitives.asymmetric import ec

from gateway.errors import ReleasedKeyInvalid

CURVE_P384 = 2
COORDINATE_SIZE = 48
MAX_COSE_KEY_SIZE = 1024
LABEL_CURVE, LABEL_X, LABEL_Y, LABEL_D, LABEL_KID = -1, -2, -3, -4, 4
_LABELS = frozenset({LABEL_CURVE, LABEL_X, LABEL_Y, LABEL_D, LABEL_KID})


@dataclass(frozen=True)
class CoseKey:
    key_id: int
    private_key: ec.EllipticCurvePrivateKey = field(repr=False)


def _coordinate(value: object) -> int:
    if not isinstance(value, bytes) or len(value) != COORDINATE_SIZE:
        raise ReleasedKeyInvalid("released key coordinate is not 48 bytes")
    return int.from_bytes(value, "big")


def decode_cose_key(data: bytes) -> CoseKey:
    """The P-384 private key and key id in ``data``; see the module docstring."""
    if len(data) > MAX_COSE_KEY_SIZE:
        raise ReleasedKeyInvalid("released key is too large")
    try:
        key = cbor2.loads(data)
    except (cbor2.CBORDecodeError, ValueError, TypeError, OverflowError, RecursionError) as error:
        raise ReleasedKeyInvalid("released key is not CBOR") from error
    if not isinstance(key, dict) or set(key) != _LABELS:
        raise ReleasedKeyInvalid("released key is not a P-384 COSE_Key")
    kid, curve = key[LABEL_KID], key[LABEL_CURVE]
    if type(kid) is not int or not 0 <= kid <= 255 or type(curve) is not int or curve != 2:
        raise ReleasedKeyInvalid("released key is not a P-384 COSE_Key")
    x, y, d = (_coordinate(key[label]) for label in (LABEL_X, LABEL_Y, LABEL_D))
    try:
        private_key = ec.derive_private_key(d, ec.SECP384R1())
    except ValueError as error:
        raise ReleasedKeyInvalid("released private scalar is out of range") from error
    public = private_key.public_key().public_numbers()
    if (public.x, public.y) != (x, y):
        raise ReleasedKeyInvalid("released public key does not match the private key")
    return CoseKey(kid, private_key)


def encode_cose_key(private_key: ec.EllipticCurvePrivateKey, key_id: int) -> bytes:
    """The KMS's encoding of a P-384 private key (labels in its order: d, x, y, curve, kid)."""
    numbers = private_key.private_numbers()
    public = numbers.public_numbers

    def coordinate(value: int) -> bytes:
        return value.to_bytes(COORDINATE_SIZE, "big")

    return cbor2.dumps(
        {
            LABEL_D: coordinate(numbers.private_value),
            LABEL_X: coordinate(public.x),
            LABEL_Y: coordinate(public.y),
            LABEL_CURVE: CURVE_P384,
            LABEL_KID: key_id,
        }
    )
