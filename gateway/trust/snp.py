"""The AMD SEV-SNP ATTESTATION_REPORT: parsing and field decoding (pure).

Accepts: exactly 0x4A0 (1184) bytes, little-endian, as laid out in AMD's SEV-SNP firmware ABI
specification (56860), report versions 2, 3 and 5. Version 3 adds the CPUID family/model/
stepping at 0x188; version 5 adds the launch and current mitigation vectors at 0x1F8/0x200.

Guarantees: :func:`parse_report` returns an immutable :class:`SnpReport` holding every field,
with the TCB_VERSION values decoded in the layout of the processor generation (Milan/Genoa:
``[0]`` bootloader, ``[1]`` TEE, ``[6]`` SNP, ``[7]`` microcode; Turin: ``[0]`` FMC, ``[1]``
bootloader, ``[2]`` TEE, ``[3]`` SNP, ``[7]`` microcode). Any other input raises
:class:`MalformedReport` or :class:`UnsupportedReportVersion`, never a foreign exception.

Never does: verify anything. Signatures, the certificate chain and policy live in
:mod:`gateway.trust.amd` and :mod:`gateway.trust.policy`; parsing a report says nothing about
whether it is genuine.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from typing import Any

from gateway.errors import ConfigError, MalformedReport, UnsupportedReportVersion

REPORT_SIZE = 0x4A0
SIGNED_LENGTH = 0x2A0  # the signature covers bytes 0x000..0x29F
REPORT_DATA_SIZE = 64
SUPPORTED_VERSIONS = frozenset({2, 3, 5})
SIGNATURE_ALGO_ECDSA_P384_SHA384 = 1
SIGNATURE_COMPONENT_SIZE = 72  # R and S are 72-byte little-endian fields

# GUEST_POLICY bits (ABI spec table "Guest Policy Structure").
POLICY_SMT = 1 << 16
POLICY_RESERVED_ONE = 1 << 17
POLICY_MIGRATE_MA = 1 << 18
POLICY_DEBUG = 1 << 19
POLICY_SINGLE_SOCKET = 1 << 20
POLICY_CXL_ALLOW = 1 << 21
POLICY_MEM_AES_256_XTS = 1 << 22
POLICY_RAPL_DIS = 1 << 23
POLICY_CIPHERTEXT_HIDING = 1 << 24
POLICY_PAGE_SWAP_DISABLE = 1 << 25


class Product(enum.Enum):
    """An AMD EPYC generation with SEV-SNP, named as AMD's key distribution service names it."""

    MILAN = "Milan"
    GENOA = "Genoa"
    TURIN = "Turin"

    @property
    def tcb_layout(self) -> TcbLayout:
        return TcbLayout.ZEN5 if self is Product.TURIN else TcbLayout.ZEN3_ZEN4

    @classmethod
    def from_product_name(cls, name: str) -> Product | None:
        """``Milan-B0`` → MILAN: the VCEK productName extension carries a stepping suffix."""
        base = name.split("-", 1)[0]
        return next((product for product in cls if product.value == base), None)

    @classmethod
    def from_cpuid(cls, family: int, model: int) -> Product | None:
        if family == 0x19 and model <= 0x0F:
            return cls.MILAN
        if family == 0x19 and (0x10 <= model <= 0x1F or 0xA0 <= model <= 0xAF):
            return cls.GENOA
        if family == 0x1A and model <= 0x1F:
            return cls.TURIN
        return None


class TcbLayout(enum.Enum):
    """How the eight bytes of a TCB_VERSION are assigned; it changed with Zen 5 (Turin)."""

    ZEN3_ZEN4 = "milan-genoa"
    ZEN5 = "turin"


# byte index of each SPL per layout
_TCB_OFFSETS: dict[TcbLayout, dict[str, int]] = {
    TcbLayout.ZEN3_ZEN4: {"bootloader": 0, "tee": 1, "snp": 6, "microcode": 7},
    TcbLayout.ZEN5: {"fmc": 0, "bootloader": 1, "tee": 2, "snp": 3, "microcode": 7},
}


@dataclass(frozen=True)
class TcbVersion:
    """A TCB_VERSION: eight security patch levels (SPLs) packed into a u64."""

    raw: int
    layout: TcbLayout

    def _byte(self, index: int) -> int:
        return (self.raw >> (8 * index)) & 0xFF

    def spl(self, name: str) -> int | None:
        index = _TCB_OFFSETS[self.layout].get(name)
        return None if index is None else self._byte(index)

    @property
    def bootloader(self) -> int:
        return self._byte(_TCB_OFFSETS[self.layout]["bootloader"])

    @property
    def tee(self) -> int:
        return self._byte(_TCB_OFFSETS[self.layout]["tee"])

    @property
    def snp(self) -> int:
        return self._byte(_TCB_OFFSETS[self.layout]["snp"])

    @property
    def microcode(self) -> int:
        return self._byte(_TCB_OFFSETS[self.layout]["microcode"])

    @property
    def fmc(self) -> int | None:
        return self.spl("fmc")

    def components(self) -> dict[str, int]:
        return {name: self._byte(index) for name, index in _TCB_OFFSETS[self.layout].items()}

    def at_least(self, minimum: TcbVersion) -> bool:
        """Every named SPL is >= the minimum's: TCB versions are only partially ordered."""
        mine = self.components()
        return all(mine.get(name, 0) >= value for name, value in minimum.components().items())

    @classmethod
    def from_components(cls, layout: TcbLayout, **spls: int) -> TcbVersion:
        offsets = _TCB_OFFSETS[layout]
        raw = 0
        for name, value in spls.items():
            if name not in offsets or not 0 <= value <= 0xFF:
                raise ConfigError("unknown TCB component or value out of range")
            raw |= value << (8 * offsets[name])
        return cls(raw, layout)

    def to_json(self) -> dict[str, Any]:
        return {"raw": f"{self.raw:016x}", **self.components()}


@dataclass(frozen=True)
class GuestPolicy:
    """The guest policy the owner launched the VM with (u64 at 0x008)."""

    raw: int

    @property
    def abi_minor(self) -> int:
        return self.raw & 0xFF

    @property
    def abi_major(self) -> int:
        return (self.raw >> 8) & 0xFF

    @property
    def smt_allowed(self) -> bool:
        return bool(self.raw & POLICY_SMT)

    @property
    def migrate_ma_allowed(self) -> bool:
        return bool(self.raw & POLICY_MIGRATE_MA)

    @property
    def debug_allowed(self) -> bool:
        return bool(self.raw & POLICY_DEBUG)

    @property
    def single_socket(self) -> bool:
        return bool(self.raw & POLICY_SINGLE_SOCKET)

    def to_json(self) -> dict[str, Any]:
        return {
            "raw": f"{self.raw:#x}",
            "abi": f"{self.abi_major}.{self.abi_minor}",
            "smt_allowed": self.smt_allowed,
            "migrate_ma_allowed": self.migrate_ma_allowed,
            "debug_allowed": self.debug_allowed,
            "single_socket": self.single_socket,
            "cxl_allowed": bool(self.raw & POLICY_CXL_ALLOW),
            "mem_aes_256_xts": bool(self.raw & POLICY_MEM_AES_256_XTS),
            "rapl_disabled": bool(self.raw & POLICY_RAPL_DIS),
            "ciphertext_hiding": bool(self.raw & POLICY_CIPHERTEXT_HIDING),
            "page_swap_disabled": bool(self.raw & POLICY_PAGE_SWAP_DISABLE),
        }


class SigningKey(enum.IntEnum):
    """Which key signed the report (bits 2..4 of the signer info at 0x048)."""

    VCEK = 0
    VLEK = 1
    NONE = 7


@dataclass(frozen=True)
class FirmwareVersion:
    major: int
    minor: int
    build: int

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.build}"


@dataclass(frozen=True)
class SnpReport:
    """Every field of one ATTESTATION_REPORT; ``raw`` is the exact 1184 bytes parsed."""

    raw: bytes
    version: int
    guest_svn: int
    policy: GuestPolicy
    family_id: bytes
    image_id: bytes
    vmpl: int
    signature_algo: int
    current_tcb: TcbVersion
    platform_info: int
    author_key_en: bool
    mask_chip_key: bool
    signing_key: int
    report_data: bytes
    measurement: bytes
    host_data: bytes
    id_key_digest: bytes
    author_key_digest: bytes
    report_id: bytes
    report_id_ma: bytes
    reported_tcb: TcbVersion
    cpuid_family: int | None  # v3+ only
    cpuid_model: int | None
    cpuid_stepping: int | None
    chip_id: bytes
    committed_tcb: TcbVersion
    current_version: FirmwareVersion
    committed_version: FirmwareVersion
    launch_tcb: TcbVersion
    launch_mit_vector: int | None  # v5+ only
    current_mit_vector: int | None
    signature_r: int
    signature_s: int

    @property
    def signed_bytes(self) -> bytes:
        return self.raw[:SIGNED_LENGTH]

    @property
    def product(self) -> Product | None:
        """The generation named by CPUID (v3+); ``None`` for v2, which does not say."""
        if self.cpuid_family is None or self.cpuid_model is None:
            return None
        return Product.from_cpuid(self.cpuid_family, self.cpuid_model)

    @property
    def smt_enabled(self) -> bool:
        return bool(self.platform_info & 1)

    @property
    def tsme_enabled(self) -> bool:
        return bool(self.platform_info & 2)

    def to_json(self) -> dict[str, Any]:
        """The parsed report as JSON-ready data, byte fields in lowercase hex."""
        product = self.product
        return {
            "version": self.version,
            "guest_svn": self.guest_svn,
            "policy": self.policy.to_json(),
            "family_id": self.family_id.hex(),
            "image_id": self.image_id.hex(),
            "vmpl": self.vmpl,
            "signature_algo": self.signature_algo,
            "current_tcb": self.current_tcb.to_json(),
            "platform_info": {
                "raw": f"{self.platform_info:#x}",
                "smt_enabled": self.smt_enabled,
                "tsme_enabled": self.tsme_enabled,
            },
            "author_key_en": self.author_key_en,
            "mask_chip_key": self.mask_chip_key,
            "signing_key": _signing_key_name(self.signing_key),
            "report_data": self.report_data.hex(),
            "measurement": self.measurement.hex(),
            "host_data": self.host_data.hex(),
            "id_key_digest": self.id_key_digest.hex(),
            "author_key_digest": self.author_key_digest.hex(),
            "report_id": self.report_id.hex(),
            "report_id_ma": self.report_id_ma.hex(),
            "reported_tcb": self.reported_tcb.to_json(),
            "cpuid": None
            if self.cpuid_family is None
            else {
                "family": self.cpuid_family,
                "model": self.cpuid_model,
                "stepping": self.cpuid_stepping,
            },
            "product": None if product is None else product.value,
            "chip_id": self.chip_id.hex(),
            "committed_tcb": self.committed_tcb.to_json(),
            "current_version": str(self.current_version),
            "committed_version": str(self.committed_version),
            "launch_tcb": self.launch_tcb.to_json(),
            "launch_mit_vector": self.launch_mit_vector,
            "current_mit_vector": self.current_mit_vector,
        }


def _signing_key_name(value: int) -> str:
    try:
        return SigningKey(value).name
    except ValueError:
        return f"reserved({value})"


_HEAD = struct.Struct("<IIQ16s16sIIQQI4x64s48s32s48s48s32s32sQ")
_CHIP = struct.Struct("<64sQ")


def parse_report(data: bytes) -> SnpReport:
    """Parse one ATTESTATION_REPORT (exactly 0x4A0 bytes)."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise MalformedReport()
    data = bytes(data)
    if len(data) != REPORT_SIZE:
        raise MalformedReport("SNP attestation report has the wrong length")
    version = struct.unpack_from("<I", data, 0)[0]
    if version not in SUPPORTED_VERSIONS:
        raise UnsupportedReportVersion()
    (
        _,
        guest_svn,
        policy,
        family_id,
        image_id,
        vmpl,
        signature_algo,
        current_tcb,
        platform_info,
        signer_info,
        report_data,
        measurement,
        host_data,
        id_key_digest,
        author_key_digest,
        report_id,
        report_id_ma,
        reported_tcb,
    ) = _HEAD.unpack_from(data, 0)
    cpuid_family = cpuid_model = cpuid_stepping = None
    if version >= 3:
        cpuid_family, cpuid_model, cpuid_stepping = data[0x188], data[0x189], data[0x18A]
    layout = TcbLayout.ZEN5 if cpuid_family == 0x1A else TcbLayout.ZEN3_ZEN4
    chip_id, committed_tcb = _CHIP.unpack_from(data, 0x1A0)
    launch_tcb = struct.unpack_from("<Q", data, 0x1F0)[0]
    launch_mit = current_mit = None
    if version >= 5:
        launch_mit, current_mit = struct.unpack_from("<QQ", data, 0x1F8)
    r_field = data[SIGNED_LENGTH : SIGNED_LENGTH + SIGNATURE_COMPONENT_SIZE]
    s_field = data[SIGNED_LENGTH + SIGNATURE_COMPONENT_SIZE : SIGNED_LENGTH + 144]
    return SnpReport(
        raw=data,
        version=version,
        guest_svn=guest_svn,
        policy=GuestPolicy(policy),
        family_id=family_id,
        image_id=image_id,
        vmpl=vmpl,
        signature_algo=signature_algo,
        current_tcb=TcbVersion(current_tcb, layout),
        platform_info=platform_info,
        author_key_en=bool(signer_info & 1),
        mask_chip_key=bool(signer_info & 2),
        signing_key=(signer_info >> 2) & 0x7,
        report_data=report_data,
        measurement=measurement,
        host_data=host_data,
        id_key_digest=id_key_digest,
        author_key_digest=author_key_digest,
        report_id=report_id,
        report_id_ma=report_id_ma,
        reported_tcb=TcbVersion(reported_tcb, layout),
        cpuid_family=cpuid_family,
        cpuid_model=cpuid_model,
        cpuid_stepping=cpuid_stepping,
        chip_id=chip_id,
        committed_tcb=TcbVersion(committed_tcb, layout),
        current_version=_firmware_version(data, 0x1E8),
        committed_version=_firmware_version(data, 0x1EC),
        launch_tcb=TcbVersion(launch_tcb, layout),
        launch_mit_vector=launch_mit,
        current_mit_vector=current_mit,
        signature_r=int.from_bytes(r_field, "little"),
        signature_s=int.from_bytes(s_field, "little"),
    )


def _firmware_version(data: bytes, offset: int) -> FirmwareVersion:
    build, minor, major = data[offset], data[offset + 1], data[offset + 2]
    return FirmwareVersion(major=major, minor=minor, build=build)
