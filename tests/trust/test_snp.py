from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.errors import ConfigError, MalformedReport, UnsupportedReportVersion
from gateway.trust.evidence.simulated import ReportFields, SimulatedAmd, pack_report
from gateway.trust.hcl import HEADER_SIZE, IGVM_REQUEST_OFFSET
from gateway.trust.snp import (
    REPORT_SIZE,
    Product,
    SigningKey,
    TcbLayout,
    TcbVersion,
    parse_report,
)


def test_real_azure_report_fields(hcl_report_bytes: bytes) -> None:
    report = parse_report(hcl_report_bytes[HEADER_SIZE:IGVM_REQUEST_OFFSET])
    assert report.version == 2
    assert report.guest_svn == 2
    assert report.policy.raw == 0x3001F  # Azure's: SMT allowed, no debug, no migration agent
    assert report.policy.smt_allowed
    assert not report.policy.debug_allowed
    assert not report.policy.migrate_ma_allowed
    assert (report.policy.abi_major, report.policy.abi_minor) == (0, 31)
    assert report.vmpl == 0
    assert report.signature_algo == 1
    assert report.signing_key == SigningKey.VCEK
    assert report.smt_enabled
    # the research note's decoding of the real sample: 0x7308000000000003
    assert report.reported_tcb.raw == 0x7308000000000003
    assert report.reported_tcb.components() == {
        "bootloader": 3,
        "tee": 0,
        "snp": 8,
        "microcode": 115,
    }
    assert report.current_tcb.snp == 8
    assert report.current_tcb.microcode == 0xCE
    assert str(report.current_version) == "1.52.4"
    assert report.chip_id.hex().startswith("3a5d5b1d059d193e")
    assert report.product is None  # v2 carries no CPUID
    assert report.cpuid_family is None
    assert report.launch_mit_vector is None
    assert report.report_data[32:] == bytes(32)
    assert report.signature_r > 0
    assert report.signature_s > 0
    claims = report.to_json()
    assert claims["reported_tcb"]["raw"] == "7308000000000003"
    assert claims["signing_key"] == "VCEK"


@pytest.mark.parametrize("version", [3, 5])
def test_newer_versions_carry_cpuid_and_mitigations(
    simulated_amd: SimulatedAmd, version: int
) -> None:
    fields = ReportFields(version=version, launch_mit_vector=7, current_mit_vector=9)
    report = parse_report(simulated_amd.report(fields))
    assert report.version == version
    assert (report.cpuid_family, report.cpuid_model) == (0x19, 0x01)
    assert report.product is Product.MILAN
    if version == 5:
        assert (report.launch_mit_vector, report.current_mit_vector) == (7, 9)
    else:
        assert report.launch_mit_vector is None


@pytest.mark.parametrize("version", [0, 1, 4, 6, 0xFFFFFFFF])
def test_unsupported_versions_are_refused(simulated_amd: SimulatedAmd, version: int) -> None:
    report = bytearray(simulated_amd.report())
    struct.pack_into("<I", report, 0, version)
    with pytest.raises(UnsupportedReportVersion):
        parse_report(bytes(report))


@pytest.mark.parametrize("length", [0, 1, REPORT_SIZE - 1, REPORT_SIZE + 1])
def test_wrong_length_is_refused(simulated_amd: SimulatedAmd, length: int) -> None:
    data = simulated_amd.report().ljust(length, b"\0")[:length]
    with pytest.raises(MalformedReport):
        parse_report(data)


def test_turin_tcb_layout() -> None:
    # Turin: [0] FMC, [1] bootloader, [2] TEE, [3] SNP, [7] microcode
    tcb = TcbVersion(0x4800000003020105, TcbLayout.ZEN5)
    assert tcb.components() == {"fmc": 5, "bootloader": 1, "tee": 2, "snp": 3, "microcode": 0x48}
    milan = TcbVersion(0x4800000003020105, TcbLayout.ZEN3_ZEN4)
    assert milan.components() == {"bootloader": 5, "tee": 1, "snp": 0, "microcode": 0x48}
    assert tcb.fmc == 5
    assert milan.fmc is None


def test_turin_report_decodes_in_turin_layout() -> None:
    amd = SimulatedAmd.generate(Product.TURIN, rsa_bits=2048)
    report = parse_report(amd.report(ReportFields(version=3)))
    assert report.product is Product.TURIN
    assert report.reported_tcb.layout is TcbLayout.ZEN5
    assert report.reported_tcb == amd.chip.reported_tcb


def test_tcb_partial_order() -> None:
    low = TcbVersion.from_components(TcbLayout.ZEN3_ZEN4, bootloader=3, tee=0, snp=8, microcode=115)
    high = TcbVersion.from_components(
        TcbLayout.ZEN3_ZEN4, bootloader=3, tee=1, snp=8, microcode=115
    )
    mixed = TcbVersion.from_components(
        TcbLayout.ZEN3_ZEN4, bootloader=4, tee=0, snp=7, microcode=200
    )
    assert high.at_least(low)
    assert not low.at_least(high)
    assert not mixed.at_least(low)
    assert not low.at_least(mixed)


def test_tcb_components_are_validated() -> None:
    with pytest.raises(ConfigError):
        TcbVersion.from_components(TcbLayout.ZEN3_ZEN4, fmc=1)
    with pytest.raises(ConfigError):
        TcbVersion.from_components(TcbLayout.ZEN3_ZEN4, snp=256)


@pytest.mark.parametrize(
    ("family", "model", "product"),
    [
        (0x19, 0x01, Product.MILAN),
        (0x19, 0x11, Product.GENOA),
        (0x19, 0xA0, Product.GENOA),
        (0x1A, 0x02, Product.TURIN),
        (0x17, 0x31, None),
    ],
)
def test_product_from_cpuid(family: int, model: int, product: Product | None) -> None:
    assert Product.from_cpuid(family, model) is product


def test_product_names() -> None:
    assert Product.from_product_name("Milan-B0") is Product.MILAN
    assert Product.from_product_name("Genoa") is Product.GENOA
    assert Product.from_product_name("Bergamo-A0") is None


report_fields = st.builds(
    ReportFields,
    report_data=st.binary(min_size=64, max_size=64),
    version=st.sampled_from([2, 3, 5]),
    guest_svn=st.integers(0, 2**32 - 1),
    policy=st.integers(0, 2**64 - 1),
    family_id=st.binary(min_size=16, max_size=16),
    image_id=st.binary(min_size=16, max_size=16),
    vmpl=st.integers(0, 3),
    platform_info=st.integers(0, 2**64 - 1),
    signer_info=st.integers(0, 2**32 - 1),
    measurement=st.binary(min_size=48, max_size=48),
    host_data=st.binary(min_size=32, max_size=32),
    launch_mit_vector=st.integers(0, 2**64 - 1),
    current_mit_vector=st.integers(0, 2**64 - 1),
    reported_tcb=st.integers(0, 2**64 - 1),
    chip_id=st.binary(min_size=64, max_size=64),
)


@settings(max_examples=200, deadline=None)
@given(fields=report_fields)
def test_pack_parse_round_trip(fields: ReportFields) -> None:
    report = parse_report(pack_report(Product.MILAN, fields))
    assert report.version == fields.version
    assert report.guest_svn == fields.guest_svn
    assert report.policy.raw == fields.policy
    assert (report.family_id, report.image_id) == (fields.family_id, fields.image_id)
    assert report.vmpl == fields.vmpl
    assert report.platform_info == fields.platform_info
    assert report.author_key_en == bool(fields.signer_info & 1)
    assert report.mask_chip_key == bool(fields.signer_info & 2)
    assert report.signing_key == (fields.signer_info >> 2) & 7
    assert report.report_data == fields.report_data
    assert report.measurement == fields.measurement
    assert report.host_data == fields.host_data
    assert report.chip_id == fields.chip_id
    assert report.reported_tcb.raw == report.committed_tcb.raw == fields.reported_tcb
    assert report.launch_tcb.raw == fields.reported_tcb
    if fields.version >= 5:
        assert report.launch_mit_vector == fields.launch_mit_vector
        assert report.current_mit_vector == fields.current_mit_vector
    assert report.signature_r == report.signature_s == 0
