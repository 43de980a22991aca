"""REPORT_DATA binding: how evidence commits to data the verifier cares about (pure).

The convention shared by MAA's SevSnpVm route, the Azure HCL report and our sev-guest provider:
REPORT_DATA (64 bytes) = H(runtime data) followed by zero bytes, where H is SHA-256 unless the HCL
header names SHA-384 or SHA-512. The runtime data is a JSON document; its ``user-data`` member
(64 bytes, hex) is where the gateway binds SHA-256 of its served ``application/ohttp-keys`` and
a nonce (see :func:`user_data_for`).

Guarantees: comparisons are constant-time, and a mismatch raises :class:`RuntimeDataMismatch`
(the runtime data is not what the report signed) or :class:`ReportDataMismatch` (the report or
user-data does not carry the value the verifier expected, e.g. a wrong nonce).
Never does: I/O, or include any compared bytes in an error message.
"""

from __future__ import annotations

import enum
import hashlib
import hmac

from gateway.errors import ConfigError, ReportDataMismatch, RuntimeDataMismatch

REPORT_DATA_SIZE = 64
USER_DATA_SIZE = 64


class HashType(enum.IntEnum):
    """The HCL report's report_data_hash_type values."""

    SHA256 = 1
    SHA384 = 2
    SHA512 = 3


_HASHES = {HashType.SHA256: hashlib.sha256, HashType.SHA384: hashlib.sha384}
_HASHES[HashType.SHA512] = hashlib.sha512


def report_data_for(runtime_data: bytes, hash_type: HashType = HashType.SHA256) -> bytes:
    """The 64-byte REPORT_DATA that binds ``runtime_data``: its digest, zero-padded."""
    digest = _HASHES[hash_type](runtime_data).digest()
    return digest + bytes(REPORT_DATA_SIZE - len(digest))


def user_data_for(key_configs: bytes, nonce: bytes) -> bytes:
    """The 64-byte user-data the gateway binds: SHA-256(application/ohttp-keys) ‖ SHA-256(nonce).

    The nonce is hashed so that any length works and the layout stays fixed.
    """
    return hashlib.sha256(key_configs).digest() + hashlib.sha256(nonce).digest()


def check_runtime_data(
    report_data: bytes, runtime_data: bytes, hash_type: HashType = HashType.SHA256
) -> None:
    """Raise unless REPORT_DATA is exactly H(runtime_data) followed by zeros."""
    if not hmac.compare_digest(report_data, report_data_for(runtime_data, hash_type)):
        raise RuntimeDataMismatch()


def check_report_data(report_data: bytes, expected: bytes) -> None:
    """Raise unless REPORT_DATA (or user-data) equals the expected 64 bytes."""
    if len(expected) != REPORT_DATA_SIZE:
        raise ConfigError("expected report data must be 64 bytes")
    if not hmac.compare_digest(report_data, expected):
        raise ReportDataMismatch()
