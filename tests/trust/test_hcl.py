from __future__ import annotations

import hashlib
import json
import struct

import pytest

from gateway.errors import MalformedHclReport, RuntimeDataMismatch, UnsupportedHclReportType
from gateway.trust.binding import HashType, report_data_for
from gateway.trust.evidence.simulated import SimulatedAmd, hcl_runtime_claims, pack_hcl_report
from gateway.trust.hcl import (
    CLAIMS_OFFSET,
    IGVM_REQUEST_OFFSET,
    HclReportType,
    parse_hcl_report,
    parse_runtime_claims,
    verify_binding,
)


def test_real_hcl_report_parses_and_binding_verifies(hcl_report_bytes: bytes) -> None:
    assert len(hcl_report_bytes) == 2048  # NV index size, zero-padded
    report = parse_hcl_report(hcl_report_bytes)
    assert report.header_version == 1
    assert report.report_size == 1819
    assert report.report_type is HclReportType.SNP
    assert report.hash_type is HashType.SHA256
    claims = report.runtime_claims
    assert len(claims.raw) == 583
    assert [key["kid"] for key in claims.keys] == ["HCLAkPub"]  # an older paravisor: no EK
    assert claims.key("HCLAkPub") is not None
    assert claims.key("nope") is None
    assert claims.vm_configuration["vmUniqueId"] == "BAEFD3E1-184B-4C4C-AB88-0BDAD260505F"
    assert claims.user_data is None  # this older sample predates user-data
    # REPORT_DATA[0:32] == SHA-256(runtime claims), the rest zero
    assert report.snp.report_data == hashlib.sha256(claims.raw).digest() + bytes(32)
    verify_binding(report)
    assert report.to_json()["snp_report"]["version"] == 2


def test_real_hcl_report_with_tampered_claims_fails_binding(hcl_report_bytes: bytes) -> None:
    data = bytearray(hcl_report_bytes)
    i = data.index(b'"secure-boot":true', CLAIMS_OFFSET)
    data[i : i + 18] = b'"secure-boot":1   '
    report = parse_hcl_report(bytes(data))
    with pytest.raises(RuntimeDataMismatch):
        verify_binding(report)


def _set_u32(data: bytes, offset: int, value: int) -> bytes:
    buf = bytearray(data)
    struct.pack_into("<I", buf, offset, value)
    return bytes(buf)


@pytest.mark.parametrize("report_type", [HclReportType.TDX, HclReportType.VBS, 0, 3, 99])
def test_other_report_types_are_unsupported(hcl_report_bytes: bytes, report_type: int) -> None:
    with pytest.raises(UnsupportedHclReportType):
        parse_hcl_report(_set_u32(hcl_report_bytes, IGVM_REQUEST_OFFSET + 8, report_type))


@pytest.mark.parametrize(
    ("offset", "value", "why"),
    [
        (0, 0x41484C48, "signature"),
        (4, 3, "header version"),
        (8, 1820, "report size"),
        (8, 4096, "report size beyond the data"),
        (16, 1, "status: failure"),
        (IGVM_REQUEST_OFFSET, 604, "data size"),
        (IGVM_REQUEST_OFFSET + 4, 2, "request data version"),
        (IGVM_REQUEST_OFFSET + 12, 4, "hash type"),
        (IGVM_REQUEST_OFFSET + 16, 584, "variable size"),
    ],
)
def test_inconsistent_headers_are_refused(
    hcl_report_bytes: bytes, offset: int, value: int, why: str
) -> None:
    with pytest.raises(MalformedHclReport):
        parse_hcl_report(_set_u32(hcl_report_bytes, offset, value))


@pytest.mark.parametrize("cut", [0, 4, 31, 32, 1000, IGVM_REQUEST_OFFSET, CLAIMS_OFFSET - 1, 1818])
def test_truncations_are_refused(hcl_report_bytes: bytes, cut: int) -> None:
    # each cut lands inside a field: header, SNP report, request data, claims
    with pytest.raises(MalformedHclReport):
        parse_hcl_report(hcl_report_bytes[:cut])


def test_padding_after_the_report_is_ignored(hcl_report_bytes: bytes) -> None:
    exact = hcl_report_bytes[:1819]
    assert parse_hcl_report(exact) == parse_hcl_report(exact + b"\xff" * 10)


@pytest.mark.parametrize(
    "claims",
    [
        b"",
        b"[]",
        b"{",
        b'{"keys": {}}',
        b'{"keys": [1]}',
        b'{"vm-configuration": []}',
        b'{"user-data": "00"}',
        b'{"user-data": 5}',
        b'{"user-data": "' + b"zz" * 64 + b'"}',
        b'{"user-data": "' + b"0 " * 64 + b'"}',
        b"\xff\xfe",
        b"[" * 100000,
    ],
)
def test_malformed_runtime_claims(claims: bytes) -> None:
    with pytest.raises(MalformedHclReport):
        parse_runtime_claims(claims)


def test_user_data_is_read(simulated_amd: SimulatedAmd) -> None:
    user_data = bytes(range(64))
    claims = hcl_runtime_claims(user_data)
    report = parse_hcl_report(simulated_amd.hcl_report(claims))
    assert report.runtime_claims.user_data == user_data
    assert json.loads(claims)["user-data"] == user_data.hex().upper()
    verify_binding(report)


@pytest.mark.parametrize("hash_type", list(HashType))
def test_binding_honours_the_hash_type(simulated_amd: SimulatedAmd, hash_type: HashType) -> None:
    from dataclasses import replace

    from gateway.trust.evidence.simulated import ReportFields

    claims = b'{"keys":[]}'
    snp = simulated_amd.report(ReportFields(report_data=report_data_for(claims, hash_type)))
    report = parse_hcl_report(pack_hcl_report(snp, claims, hash_type=hash_type))
    verify_binding(report)
    wrong = replace(report, hash_type=HashType(hash_type % 3 + 1))
    with pytest.raises(RuntimeDataMismatch):
        verify_binding(wrong)
