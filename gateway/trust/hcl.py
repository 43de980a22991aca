"""The Azure HCL report (vTPM NV index 0x01400001): parsing and binding (pure).

Accepts: the bytes read from the NV index, typically zero-padded to the index size. Layout
(Microsoft's ``SnpVmReport.h``, all little-endian)::

    0x000  "HCLA" signature, u32 header version (1 or 2), u32 report_size, u32 request_type,
           u32 status, 12 reserved bytes
    0x020  the 1184-byte hardware report (an SNP ATTESTATION_REPORT for report type 2)
    0x4C0  IGVM_REQUEST_DATA: u32 data_size (= 20 + variable size), u32 version (1),
           u32 report_type (2 = SEV-SNP, 4 = TDX, ...), u32 report_data_hash_type,
           u32 variable_data_size
    0x4D4  the runtime claims JSON (``keys``, ``vm-configuration``, ``user-data``)

Guarantees: :func:`parse_hcl_report` returns an :class:`HclReport` with the SNP report parsed
and the runtime claims as the exact bytes hashed into REPORT_DATA plus a typed view of them.
Only SEV-SNP is supported: TDX (4) and every other report type raise
:class:`UnsupportedHclReportType`. Malformed input raises :class:`MalformedHclReport` (or the
SNP parser's :class:`MalformedReport`), never a foreign exception. Bytes after ``report_size``
are NV padding and are ignored.

Never does: verify the SNP signature (see :mod:`gateway.trust.amd`). :func:`verify_binding`
checks only that REPORT_DATA commits to the runtime claims.
"""

from __future__ import annotations

import enum
import json
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gateway.errors import MalformedHclReport, UnsupportedHclReportType
from gateway.trust.binding import USER_DATA_SIZE, HashType, check_runtime_data
from gateway.trust.snp import REPORT_SIZE, SnpReport, parse_report

HCL_SIGNATURE = b"HCLA"
HEADER_SIZE = 0x20
IGVM_REQUEST_OFFSET = HEADER_SIZE + REPORT_SIZE  # 0x4C0
IGVM_REQUEST_FIXED_SIZE = 20
CLAIMS_OFFSET = IGVM_REQUEST_OFFSET + IGVM_REQUEST_FIXED_SIZE  # 0x4D4
HEADER_VERSIONS = frozenset({1, 2})
IGVM_REQUEST_VERSION = 1


class HclReportType(enum.IntEnum):
    """IGVM_REQUEST_DATA.report_type."""

    INVALID = 0
    VBS = 1
    SNP = 2
    TRUSTED_LAUNCH = 3
    TDX = 4


@dataclass(frozen=True)
class RuntimeClaims:
    """The runtime claims JSON: ``raw`` is exactly the hashed bytes, ``document`` its parse."""

    raw: bytes
    document: Mapping[str, Any] = field(repr=False)
    keys: tuple[Mapping[str, Any], ...]
    vm_configuration: Mapping[str, Any]
    user_data: bytes | None

    def key(self, kid: str) -> Mapping[str, Any] | None:
        return next((key for key in self.keys if key.get("kid") == kid), None)


@dataclass(frozen=True)
class HclReport:
    header_version: int
    report_size: int
    request_type: int
    status: int
    report_type: HclReportType
    hash_type: HashType
    snp: SnpReport
    runtime_claims: RuntimeClaims

    def to_json(self) -> dict[str, Any]:
        return {
            "header_version": self.header_version,
            "report_size": self.report_size,
            "request_type": self.request_type,
            "report_type": self.report_type.name,
            "hash_type": self.hash_type.name,
            "runtime_claims": dict(self.runtime_claims.document),
            "user_data": None
            if self.runtime_claims.user_data is None
            else self.runtime_claims.user_data.hex(),
            "snp_report": self.snp.to_json(),
        }


_HEADER = struct.Struct("<4sIIII12x")
_IGVM = struct.Struct("<IIIII")


def parse_hcl_report(data: bytes) -> HclReport:
    """Parse an HCL report, with or without NV zero padding after it."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise MalformedHclReport()
    data = bytes(data)
    if len(data) < CLAIMS_OFFSET:
        raise MalformedHclReport("HCL report is truncated")
    signature, header_version, report_size, request_type, status = _HEADER.unpack_from(data)
    if signature != HCL_SIGNATURE:
        raise MalformedHclReport("HCL report signature is not HCLA")
    if header_version not in HEADER_VERSIONS:
        raise MalformedHclReport("HCL report header version is not supported")
    if status != 0:
        raise MalformedHclReport("HCL report status indicates failure")
    data_size, igvm_version, report_type, hash_type, variable_size = _IGVM.unpack_from(
        data, IGVM_REQUEST_OFFSET
    )
    if igvm_version != IGVM_REQUEST_VERSION:
        raise MalformedHclReport("HCL request data version is not supported")
    if report_type != HclReportType.SNP:
        raise UnsupportedHclReportType()
    if data_size != IGVM_REQUEST_FIXED_SIZE + variable_size:
        raise MalformedHclReport("HCL request data size is inconsistent")
    if report_size != CLAIMS_OFFSET + variable_size or report_size > len(data):
        raise MalformedHclReport("HCL report size is inconsistent")
    if hash_type not in {member.value for member in HashType}:
        raise MalformedHclReport("HCL report data hash type is not supported")
    snp = parse_report(data[HEADER_SIZE:IGVM_REQUEST_OFFSET])
    claims = parse_runtime_claims(data[CLAIMS_OFFSET : CLAIMS_OFFSET + variable_size])
    return HclReport(
        header_version=header_version,
        report_size=report_size,
        request_type=request_type,
        status=status,
        report_type=HclReportType(report_type),
        hash_type=HashType(hash_type),
        snp=snp,
        runtime_claims=claims,
    )


def parse_runtime_claims(raw: bytes) -> RuntimeClaims:
    """Parse a runtime claims JSON document (HCL or our sev-guest runtime data)."""
    try:
        document = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError) as error:
        raise MalformedHclReport("runtime claims are not valid JSON") from error
    if not isinstance(document, dict):
        raise MalformedHclReport("runtime claims are not a JSON object")
    keys = document.get("keys", [])
    if not isinstance(keys, list) or not all(isinstance(key, dict) for key in keys):
        raise MalformedHclReport("runtime claims keys are not a list of JWKs")
    vm_configuration = document.get("vm-configuration", {})
    if not isinstance(vm_configuration, dict):
        raise MalformedHclReport("runtime claims vm-configuration is not an object")
    return RuntimeClaims(
        raw=bytes(raw),
        document=document,
        keys=tuple(keys),
        vm_configuration=vm_configuration,
        user_data=_user_data(document.get("user-data")),
    )


def _user_data(value: object) -> bytes | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) != 2 * USER_DATA_SIZE:
        raise MalformedHclReport("runtime claims user-data is not 64 bytes of hex")
    try:
        user_data = bytes.fromhex(value)
    except ValueError as error:
        raise MalformedHclReport("runtime claims user-data is not 64 bytes of hex") from error
    if len(user_data) != USER_DATA_SIZE:  # fromhex skips whitespace
        raise MalformedHclReport("runtime claims user-data is not 64 bytes of hex")
    return user_data


def verify_binding(report: HclReport) -> None:
    """Raise :class:`RuntimeDataMismatch` unless REPORT_DATA = H(runtime claims) ‖ zeros."""
    check_runtime_data(report.snp.report_data, report.runtime_claims.raw, report.hash_type)
