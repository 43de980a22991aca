from __future__ import annotations

import base64
import json
import struct
import threading
from pathlib import Path

import pytest

from gateway.config import Settings, load_settings
from gateway.errors import (
    ConfigError,
    EvidenceDeviceError,
    MalformedCertificates,
    RuntimeDataMismatch,
)
from gateway.trust.amd import parse_cert_bundle
from gateway.trust.binding import report_data_for, user_data_for
from gateway.trust.evidence import EvidenceKind, EvidenceProvider
from gateway.trust.evidence.sev_guest import (
    GUEST_REQUEST,
    LEGACY_REQUEST,
    REPORT_REQUEST,
    SEV_SNP_GUEST_MSG_REPORT,
    SNP_GET_REPORT,
    ConfigfsTransport,
    IoctlTransport,
    SevGuestEvidenceProvider,
    SevGuestPaths,
    cert_table_to_pem,
    choose_transport,
    pack_guest_request,
    pack_legacy_request,
    pack_report_request,
    parse_cert_table,
    parse_report_response,
)
from gateway.trust.evidence.simulated import SimulatedAmd
from gateway.trust.jwk import rsa_public_jwk
from gateway.trust.policy import SnpPolicy
from gateway.trust.verify import verify_snp_evidence
from tests.support.fuzzing import assert_parses_or_raises_ours, cases
from tests.trust.conftest import NOW
from tests.trust.evidence.sev_guest_fakes import FakeConfigfsTsm, FakeSevGuestKernel, cert_table

USER_DATA = user_data_for(b"served key configs", b"nonce")


def _iowr(nr: int, size: int) -> int:
    # Linux _IOWR('S', nr, size): direction 3 << 30, size << 16, type << 8, nr
    return (3 << 30) | (size << 16) | (ord("S") << 8) | nr


def test_ioctl_numbers_and_struct_sizes() -> None:
    assert SNP_GET_REPORT == _iowr(0, GUEST_REQUEST.size) == 0xC0205300
    assert SEV_SNP_GUEST_MSG_REPORT == _iowr(1, LEGACY_REQUEST.size) == 0xC0285301
    assert REPORT_REQUEST.size == 96


def test_struct_packing_byte_for_byte() -> None:
    assert pack_guest_request(0x1122334455667788, 0x99AABBCCDDEEFF00) == bytes.fromhex(
        "01" + "00" * 7 + "8877665544332211" + "00ffeeddccbbaa99" + "00" * 8
    )
    assert pack_legacy_request(0x10, 0x20) == bytes.fromhex(
        "050601" + "00" + "6000" + "0000" + "1000000000000000"
        "0005" + "00" * 6 + "2000000000000000" + "00000000" + "00000000"
    )
    request = pack_report_request(bytes(range(64)), 2)
    assert request[:64] == bytes(range(64))
    assert request[64:68] == b"\x02\0\0\0"
    assert request[68:] == bytes(28)
    with pytest.raises(ConfigError):
        pack_report_request(bytes(63), 0)
    with pytest.raises(ConfigError):
        pack_report_request(bytes(64), 4)


def _verify(evidence_report: bytes, runtime: bytes, amd: SimulatedAmd, chain: bytes) -> None:
    verify_snp_evidence(
        evidence_report, parse_cert_bundle(chain), trust=amd.trust, now=NOW,
        runtime_data=runtime, expected_user_data=USER_DATA,
    )  # fmt: skip


@pytest.mark.parametrize("legacy", [False, True], ids=["sev-guest", "legacy-sev"])
def test_ioctl_provider_end_to_end(
    tmp_path: Path, simulated_amd: SimulatedAmd, legacy: bool
) -> None:
    device = tmp_path / ("sev" if legacy else "sev-guest")
    device.write_bytes(b"")
    kernel = FakeSevGuestKernel(simulated_amd, legacy=legacy)
    provider = SevGuestEvidenceProvider(
        IoctlTransport(device, legacy=legacy, ioctl=kernel.ioctl),
        cert_chain=simulated_amd.cert_chain_pem(),
    )
    assert isinstance(provider, EvidenceProvider)
    evidence = provider.collect(USER_DATA)
    assert evidence.kind is EvidenceKind.SEV_SNP
    # REPORT_DATA = SHA-256(runtime data) || zeros, and the runtime data holds our JWK
    assert kernel.requests == [(report_data_for(evidence.runtime_data), 0)]
    runtime = json.loads(evidence.runtime_data)
    assert evidence.wrapping_key is not None
    assert runtime["keys"] == [rsa_public_jwk(evidence.wrapping_key.public_key())]
    assert runtime["user-data"] == USER_DATA.hex().upper()
    _verify(evidence.report, evidence.runtime_data, simulated_amd, evidence.cert_chain)
    with pytest.raises(RuntimeDataMismatch):
        _verify(evidence.report, evidence.runtime_data + b" ", simulated_amd, evidence.cert_chain)


def test_each_collect_uses_a_fresh_wrapping_key(
    tmp_path: Path, simulated_amd: SimulatedAmd
) -> None:
    device = tmp_path / "sev-guest"
    device.write_bytes(b"")
    kernel = FakeSevGuestKernel(simulated_amd)
    provider = SevGuestEvidenceProvider(IoctlTransport(device, ioctl=kernel.ioctl))
    first, second = provider.collect(USER_DATA), provider.collect(USER_DATA)
    assert first.runtime_data != second.runtime_data
    assert first.cert_chain == b""  # no host certificates: the caller fetches from THIM


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        ("eio", "SNP report ioctl failed"),
        ("status", "SNP firmware refused the report request"),
        ("size", "SNP report response has an unexpected report size"),
        ("other-data", "SNP report does not carry the requested data"),
    ],
)
def test_ioctl_faults(
    tmp_path: Path, simulated_amd: SimulatedAmd, fault: str, message: str
) -> None:
    device = tmp_path / "sev-guest"
    device.write_bytes(b"")
    kernel = FakeSevGuestKernel(simulated_amd, fault=fault)
    provider = SevGuestEvidenceProvider(IoctlTransport(device, ioctl=kernel.ioctl))
    with pytest.raises(EvidenceDeviceError, match=message):
        provider.collect(USER_DATA)


def test_wrong_ioctl_command_is_refused_by_the_driver(
    tmp_path: Path, simulated_amd: SimulatedAmd
) -> None:
    device = tmp_path / "sev"
    device.write_bytes(b"")
    kernel = FakeSevGuestKernel(simulated_amd, legacy=True)  # 5.x driver, 6.x request
    with pytest.raises(EvidenceDeviceError, match="ioctl failed"):
        IoctlTransport(device, ioctl=kernel.ioctl).get_report(bytes(64), 0)


def test_missing_device(tmp_path: Path) -> None:
    transport = IoctlTransport(tmp_path / "nope")
    with pytest.raises(EvidenceDeviceError, match="cannot open"):
        transport.get_report(bytes(64), 0)


def test_real_ioctl_on_a_regular_file_fails_cleanly(tmp_path: Path) -> None:
    # the production seam (fcntl.ioctl) against something that is not the driver
    device = tmp_path / "sev-guest"
    device.write_bytes(b"")
    with pytest.raises(EvidenceDeviceError, match="ioctl failed"):
        IoctlTransport(device).get_report(bytes(64), 0)


def _configfs_provider(fake: FakeConfigfsTsm, vmpl: int = 0) -> SevGuestEvidenceProvider:
    transport = ConfigfsTransport(
        fake.root, make_entry=fake.make_entry, remove_entry=fake.remove_entry
    )
    return SevGuestEvidenceProvider(transport, vmpl=vmpl)


@pytest.mark.parametrize("vmpl", [0, 2])
def test_configfs_provider_end_to_end(
    tmp_path: Path, simulated_amd: SimulatedAmd, vmpl: int
) -> None:
    fake = FakeConfigfsTsm(tmp_path / "tsm" / "report", simulated_amd)
    evidence = _configfs_provider(fake, vmpl).collect(USER_DATA)
    # the host's certificate table (auxblob) became the PEM chain
    assert parse_cert_bundle(evidence.cert_chain) == simulated_amd.cert_chain()
    verify_snp_evidence(
        evidence.report, parse_cert_bundle(evidence.cert_chain), trust=simulated_amd.trust,
        now=NOW, runtime_data=evidence.runtime_data, expected_user_data=USER_DATA,
        policy=SnpPolicy(allowed_vmpls=frozenset({vmpl})),
    )  # fmt: skip
    assert fake.created == fake.removed  # the entry is removed afterwards
    assert not fake.created[0].exists()


def test_configfs_without_host_certificates(tmp_path: Path, simulated_amd: SimulatedAmd) -> None:
    fake = FakeConfigfsTsm(tmp_path / "report", simulated_amd, certs=False)
    assert _configfs_provider(fake).collect(USER_DATA).cert_chain == b""


def test_configfs_wrong_provider(tmp_path: Path, simulated_amd: SimulatedAmd) -> None:
    fake = FakeConfigfsTsm(tmp_path / "report", simulated_amd, provider="tdx_guest")
    with pytest.raises(EvidenceDeviceError, match="provider is not sev_guest"):
        _configfs_provider(fake).collect(USER_DATA)
    assert fake.created == fake.removed


def test_configfs_concurrent_writer_is_detected(
    tmp_path: Path, simulated_amd: SimulatedAmd
) -> None:
    fake = FakeConfigfsTsm(tmp_path / "report", simulated_amd, concurrent_writer=True)
    with pytest.raises(EvidenceDeviceError, match="changed concurrently"):
        _configfs_provider(fake).collect(USER_DATA)
    assert fake.created == fake.removed


def test_configfs_missing_root(tmp_path: Path) -> None:
    transport = ConfigfsTransport(tmp_path / "absent")
    with pytest.raises(EvidenceDeviceError, match="cannot create"):
        transport.get_report(bytes(64), 0)


def test_configfs_collects_are_serialised(tmp_path: Path, simulated_amd: SimulatedAmd) -> None:
    fake = FakeConfigfsTsm(tmp_path / "report", simulated_amd)
    provider = _configfs_provider(fake)
    results: list[bytes] = []
    threads = [
        threading.Thread(
            target=lambda: results.append(provider.collect(USER_DATA).report), daemon=True
        )
        for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(results) == 3
    assert len(fake.removed) == 3


def test_choose_transport(tmp_path: Path) -> None:
    paths = SevGuestPaths(
        device=tmp_path / "sev-guest", legacy_device=tmp_path / "sev", configfs=tmp_path / "tsm"
    )
    with pytest.raises(EvidenceDeviceError, match="no SEV-SNP guest device"):
        choose_transport(paths)
    paths.legacy_device.write_bytes(b"")
    chosen = choose_transport(paths)
    assert isinstance(chosen, IoctlTransport)
    assert chosen.legacy
    paths.device.write_bytes(b"")
    chosen = choose_transport(paths)
    assert isinstance(chosen, IoctlTransport)
    assert not chosen.legacy
    paths.configfs.mkdir()
    assert isinstance(choose_transport(paths), ConfigfsTransport)
    assert isinstance(choose_transport(paths, "ioctl"), IoctlTransport)


def test_provider_settings_are_validated(simulated_amd: SimulatedAmd, tmp_path: Path) -> None:
    transport = IoctlTransport(tmp_path / "x")
    with pytest.raises(ConfigError):
        SevGuestEvidenceProvider(transport, vmpl=4)
    with pytest.raises(ConfigError):
        SevGuestEvidenceProvider(transport, wrapping_key_bits=1024)
    with pytest.raises(ConfigError):
        SevGuestEvidenceProvider(transport).collect(bytes(32))


def test_report_response_parsing() -> None:
    with pytest.raises(EvidenceDeviceError, match="truncated"):
        parse_report_response(bytes(100))


def test_cert_table(simulated_amd: SimulatedAmd) -> None:
    table = parse_cert_table(cert_table(simulated_amd))
    assert set(table) == {"VCEK", "ASK", "ARK"}
    assert cert_table_to_pem(bytes(4000)) == b""  # an all-zero buffer: no certificates
    for bad in (bytes(10), struct.pack("<16sII", b"\x01" * 16, 0, 5000) + bytes(24)):
        with pytest.raises(MalformedCertificates):
            parse_cert_table(bad)


def test_fuzz_cert_table(simulated_amd: SimulatedAmd) -> None:
    for data in cases([cert_table(simulated_amd)], 2000, seed=24):
        assert_parses_or_raises_ours(cert_table_to_pem, data)


def test_fuzz_report_response(simulated_amd: SimulatedAmd) -> None:
    response = struct.pack("<II24x", 0, 1184) + simulated_amd.report()
    for data in cases([response], 2000, seed=32):
        assert_parses_or_raises_ours(parse_report_response, data)


def _settings(tmp_path: Path, **env: str) -> Settings:
    environ = {
        "OHTTP_GATEWAY_DEV": "true",
        "OHTTP_GATEWAY_SEV_GUEST_DEVICE": str(tmp_path / "sev-guest"),
        "OHTTP_GATEWAY_SEV_GUEST_LEGACY_DEVICE": str(tmp_path / "sev"),
        "OHTTP_GATEWAY_TSM_REPORT_DIR": str(tmp_path / "tsm"),
    }
    environ.update({f"OHTTP_GATEWAY_{k.upper()}": v for k, v in env.items()})
    return load_settings(environ=environ)


def test_from_settings(tmp_path: Path, simulated_amd: SimulatedAmd) -> None:
    with pytest.raises(EvidenceDeviceError, match="no SEV-SNP guest device"):
        SevGuestEvidenceProvider.from_settings(_settings(tmp_path))
    (tmp_path / "sev").write_bytes(b"")
    provider = SevGuestEvidenceProvider.from_settings(_settings(tmp_path, sev_guest_vmpl="1"))
    assert isinstance(provider.transport, IoctlTransport)
    assert provider.transport.legacy
    assert provider.vmpl == 1
    (tmp_path / "tsm").mkdir()
    chosen = SevGuestEvidenceProvider.from_settings(_settings(tmp_path)).transport
    assert isinstance(chosen, ConfigfsTransport)
    assert chosen.root == tmp_path / "tsm"
    forced = _settings(tmp_path, sev_guest_transport="legacy-ioctl")
    assert isinstance(SevGuestEvidenceProvider.from_settings(forced).transport, IoctlTransport)


def test_host_certificates_from_settings(tmp_path: Path, simulated_amd: SimulatedAmd) -> None:
    (tmp_path / "sev-guest").write_bytes(b"")
    certs = tmp_path / "host-amd-cert-base64"
    certs.write_bytes(base64.b64encode(simulated_amd.thim_bundle()))  # as ACI/Kata deliver it
    kernel = FakeSevGuestKernel(simulated_amd)
    provider = SevGuestEvidenceProvider.from_settings(
        _settings(tmp_path, host_amd_certs=str(certs))
    )
    assert isinstance(provider.transport, IoctlTransport)
    provider.transport = IoctlTransport(provider.transport.device, ioctl=kernel.ioctl)
    evidence = provider.collect(USER_DATA)
    assert parse_cert_bundle(evidence.cert_chain) == simulated_amd.cert_chain()
    _verify(evidence.report, evidence.runtime_data, simulated_amd, evidence.cert_chain)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"sev_guest_transport": "mmio"}, "SEV_GUEST_TRANSPORT"),
        ({"sev_guest_vmpl": "4"}, "SEV_GUEST_VMPL"),
        ({"host_amd_certs": "/nonexistent"}, "HOST_AMD_CERTS"),
    ],
)
def test_bad_settings(tmp_path: Path, env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _settings(tmp_path, **env)
