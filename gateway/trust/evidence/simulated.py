"""Simulated SEV-SNP evidence: real-format reports signed by a locally generated AMD-like chain.

For dev mode, tests and the emulators. :class:`SimulatedAmd` generates an ARK (self-signed) and
ASK, both RSA with RSASSA-PSS SHA-384 salt 48 certificates as AMD's are, and issues VCEKs
(ECDSA P-384) carrying AMD's TCB and hwID extensions for simulated chips. Reports are built
byte for byte in the ATTESTATION_REPORT layout (versions 2, 3 and 5), and HCL reports in
Azure's layout, and signed exactly as the AMD-SP signs them.

Guarantees: the simulated names say "(simulated)" and the keys are fresh, so a verifier that
pins AMD's roots (``AmdTrust.pinned()``) refuses this evidence with :class:`UntrustedRoot`;
a verifier given ``SimulatedAmd.trust`` accepts it. Never does: touch a device, or pretend to
be genuine: :func:`dump` writes the private keys in the clear, for dev use only.
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from gateway.errors import ConfigError, MalformedCertificates
from gateway.trust.amd import (
    OID_HWID,
    OID_PRODUCT_NAME,
    OID_SPL,
    OID_STRUCT_VERSION,
    PSS_SHA384,
    AmdCertChain,
    AmdTrust,
    parse_pem_chain,
    vcek_extensions,
)
from gateway.trust.binding import HashType, report_data_for
from gateway.trust.evidence import (
    Evidence,
    EvidenceKind,
    require_user_data,
    runtime_data_for,
)
from gateway.trust.hcl import CLAIMS_OFFSET, HCL_SIGNATURE, HclReportType
from gateway.trust.jwk import rsa_public_jwk
from gateway.trust.snp import (
    REPORT_SIZE,
    SIGNATURE_COMPONENT_SIZE,
    SIGNED_LENGTH,
    Product,
    TcbLayout,
    TcbVersion,
)

AZURE_GUEST_POLICY = 0x3001F  # ABI 0.31, SMT allowed, reserved bit 17; debug and migration off
_CPUID = {Product.MILAN: (0x19, 0x01, 0x01), Product.GENOA: (0x19, 0x11, 0x01)}
_CPUID[Product.TURIN] = (0x1A, 0x02, 0x00)
_STEPPING = {Product.MILAN: "Milan-B0", Product.GENOA: "Genoa-B1", Product.TURIN: "Turin-C0"}


def default_tcb(product: Product) -> TcbVersion:
    if product is Product.TURIN:
        return TcbVersion.from_components(
            TcbLayout.ZEN5, fmc=1, bootloader=1, tee=1, snp=3, microcode=0x48
        )
    # the real Azure Milan sample: bootloader 3, tee 0, snp 8, microcode 115
    return TcbVersion(0x7308000000000003, TcbLayout.ZEN3_ZEN4)


@dataclass(frozen=True)
class ReportFields:
    """The fields of a report to build; defaults resemble an Azure confidential VM."""

    report_data: bytes = bytes(64)
    version: int = 2
    guest_svn: int = 0
    policy: int = AZURE_GUEST_POLICY
    family_id: bytes = bytes(16)
    image_id: bytes = bytes(16)
    vmpl: int = 0
    signature_algo: int = 1
    platform_info: int = 1
    signer_info: int = 0  # VCEK, chip id not masked
    measurement: bytes = bytes.fromhex("5a" * 48)
    host_data: bytes = bytes(32)
    id_key_digest: bytes = bytes(48)
    author_key_digest: bytes = bytes(48)
    report_id: bytes = bytes(32)
    report_id_ma: bytes = b"\xff" * 32
    current_version: tuple[int, int, int] = (1, 55, 21)  # major, minor, build
    launch_mit_vector: int = 0
    current_mit_vector: int = 0
    # None: taken from the signing chip
    reported_tcb: int | None = None
    chip_id: bytes | None = None


@dataclass(frozen=True)
class SimulatedChip:
    """One simulated processor: its chip id, TCB and VCEK (with the private key)."""

    product: Product
    chip_id: bytes
    reported_tcb: TcbVersion
    vcek: x509.Certificate
    vcek_key: ec.EllipticCurvePrivateKey = field(repr=False)

    def build_report(self, fields: ReportFields) -> bytes:
        """Pack ``fields`` into an unsigned report, then sign it with this chip's VCEK."""
        return self.sign(pack_report(self.product, self._complete(fields)))

    def _complete(self, fields: ReportFields) -> ReportFields:
        return replace(
            fields,
            reported_tcb=self.reported_tcb.raw
            if fields.reported_tcb is None
            else fields.reported_tcb,
            chip_id=self.chip_id if fields.chip_id is None else fields.chip_id,
        )

    def sign(self, report: bytes) -> bytes:
        """(Re)sign a packed report: R and S little-endian in 72-byte fields, rest zero."""
        der = self.vcek_key.sign(report[:SIGNED_LENGTH], ec.ECDSA(hashes.SHA384()))
        r, s = decode_dss_signature(der)
        signature = r.to_bytes(SIGNATURE_COMPONENT_SIZE, "little") + s.to_bytes(
            SIGNATURE_COMPONENT_SIZE, "little"
        )
        return report[:SIGNED_LENGTH] + signature.ljust(REPORT_SIZE - SIGNED_LENGTH, b"\0")


def pack_report(product: Product, fields: ReportFields) -> bytes:
    """The ATTESTATION_REPORT bytes for ``fields``, signature area zero."""
    if fields.version not in (2, 3, 5) or fields.chip_id is None or fields.reported_tcb is None:
        raise ConfigError("simulated report needs version 2, 3 or 5, a chip id and a TCB")
    tcb = fields.reported_tcb
    buf = bytearray(REPORT_SIZE)
    struct.pack_into(
        "<IIQ16s16sIIQQI4x64s48s32s48s48s32s32sQ",
        buf,
        0,
        fields.version,
        fields.guest_svn,
        fields.policy,
        fields.family_id,
        fields.image_id,
        fields.vmpl,
        fields.signature_algo,
        tcb,  # CURRENT_TCB
        fields.platform_info,
        fields.signer_info,
        fields.report_data,
        fields.measurement,
        fields.host_data,
        fields.id_key_digest,
        fields.author_key_digest,
        fields.report_id,
        fields.report_id_ma,
        tcb,
    )
    if fields.version >= 3:
        buf[0x188:0x18B] = bytes(_CPUID[product])
    major, minor, build = fields.current_version
    struct.pack_into("<64sQ", buf, 0x1A0, fields.chip_id, tcb)  # CHIP_ID, COMMITTED_TCB
    struct.pack_into("<BBBxBBBxQ", buf, 0x1E8, build, minor, major, build, minor, major, tcb)
    if fields.version >= 5:
        struct.pack_into("<QQ", buf, 0x1F8, fields.launch_mit_vector, fields.current_mit_vector)
    return bytes(buf)


def pack_hcl_report(snp_report: bytes, runtime_claims: bytes, *, hash_type: int = 1) -> bytes:
    """An HCL report around ``snp_report`` with ``runtime_claims`` (no NV padding)."""
    variable = len(runtime_claims)
    header = struct.pack("<4sIIII12x", HCL_SIGNATURE, 1, CLAIMS_OFFSET + variable, 2, 0)
    igvm = struct.pack("<IIIII", 20 + variable, 1, HclReportType.SNP, hash_type, variable)
    return header + snp_report + igvm + runtime_claims


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "Engineering"),
            x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
            x509.NameAttribute(NameOID.LOCALITY_NAME, "Santa Clara"),
            x509.NameAttribute(NameOID.STATE_OR_PROVINCE_NAME, "CA"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Advanced Micro Devices (simulated)"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _der_int(value: int) -> bytes:
    body = value.to_bytes(1, "big")
    return b"\x02" + bytes([len(body) + (value >= 0x80)]) + (b"\0" if value >= 0x80 else b"") + body


class SimulatedAmd:
    """A local stand-in for AMD's key distribution: ARK, ASK, and VCEKs per chip."""

    def __init__(
        self,
        product: Product,
        ark_key: rsa.RSAPrivateKey,
        ark: x509.Certificate,
        ask_key: rsa.RSAPrivateKey,
        ask: x509.Certificate,
        chip: SimulatedChip | None = None,
        *,
        not_before: datetime | None = None,
    ) -> None:
        self.product = product
        self._ark_key, self.ark = ark_key, ark
        self._ask_key, self.ask = ask_key, ask
        self._not_before = not_before or ark.not_valid_before_utc
        self.chip = chip or self.issue_chip()

    def __repr__(self) -> str:
        return f"SimulatedAmd(product={self.product.value})"

    @classmethod
    def generate(
        cls, product: Product = Product.MILAN, *, rsa_bits: int = 4096, now: datetime | None = None
    ) -> SimulatedAmd:
        not_before = (now or datetime.now(UTC)) - timedelta(days=1)
        ark_key = rsa.generate_private_key(65537, rsa_bits)
        ask_key = rsa.generate_private_key(65537, rsa_bits)
        ark_name, ask_name = _name(f"ARK-{product.value}"), _name(f"SEV-{product.value}")
        ark = cls._ca(ark_name, ark_name, ark_key.public_key(), ark_key, not_before, path_len=None)
        ask = cls._ca(ask_name, ark_name, ask_key.public_key(), ark_key, not_before, path_len=0)
        return cls(product, ark_key, ark, ask_key, ask, not_before=not_before)

    @staticmethod
    def _ca(
        subject: x509.Name,
        issuer: x509.Name,
        public_key: rsa.RSAPublicKey,
        signing_key: rsa.RSAPrivateKey,
        not_before: datetime,
        *,
        path_len: int | None,
    ) -> x509.Certificate:
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_before + timedelta(days=25 * 365))
            .add_extension(x509.BasicConstraints(ca=True, path_length=path_len), critical=True)
            .sign(signing_key, hashes.SHA384(), rsa_padding=PSS_SHA384)
        )

    def issue_chip(
        self, *, chip_id: bytes | None = None, reported_tcb: TcbVersion | None = None
    ) -> SimulatedChip:
        """A new simulated chip with a VCEK for ``reported_tcb``."""
        hwid_size = 8 if self.product is Product.TURIN else 64
        chip_id = chip_id or os.urandom(hwid_size).ljust(64, b"\0")
        tcb = reported_tcb or default_tcb(self.product)
        key = ec.generate_private_key(ec.SECP384R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name("SEV-VCEK"))
            .issuer_name(self.ask.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(self._not_before)
            .not_valid_after(self._not_before + timedelta(days=7 * 365))
        )
        name = _STEPPING[self.product].encode("ascii")
        extensions = {
            OID_STRUCT_VERSION: _der_int(0),
            OID_PRODUCT_NAME: b"\x16" + bytes([len(name)]) + name,
            OID_HWID: chip_id[:hwid_size],
        }
        for spl, level in tcb.components().items():
            extensions[OID_SPL[spl]] = _der_int(level)
        for oid, der in extensions.items():
            builder = builder.add_extension(
                x509.UnrecognizedExtension(x509.ObjectIdentifier(oid), der), critical=False
            )
        vcek = builder.sign(self._ask_key, hashes.SHA384(), rsa_padding=PSS_SHA384)
        return SimulatedChip(self.product, chip_id, tcb, vcek, key)

    @property
    def trust(self) -> AmdTrust:
        """The trust a verifier needs to accept this simulated chain (and only it)."""
        return AmdTrust.of([self.ark])

    def cert_chain(self, chip: SimulatedChip | None = None) -> AmdCertChain:
        return AmdCertChain(vcek=(chip or self.chip).vcek, ask=self.ask, ark=self.ark)

    def cert_chain_pem(self, chip: SimulatedChip | None = None) -> bytes:
        return self.cert_chain(chip).to_pem()

    def thim_bundle(self, chip: SimulatedChip | None = None) -> bytes:
        """What THIM's ``/metadata/THIM/amd/certification`` would answer for ``chip``."""
        chip = chip or self.chip
        pem = serialization.Encoding.PEM
        document = {
            "vcekCert": chip.vcek.public_bytes(pem).decode("ascii"),
            "tcbm": f"{chip.reported_tcb.raw:016X}",
            "certificateChain": (self.ask.public_bytes(pem) + self.ark.public_bytes(pem)).decode(),
            "cacheControl": "86400",
        }
        return json.dumps(document).encode("ascii")

    def report(
        self, fields: ReportFields | None = None, chip: SimulatedChip | None = None
    ) -> bytes:
        return (chip or self.chip).build_report(fields or ReportFields())

    def hcl_report(self, runtime_claims: bytes, fields: ReportFields | None = None) -> bytes:
        """An HCL report whose REPORT_DATA binds ``runtime_claims`` (SHA-256)."""
        fields = replace(fields or ReportFields(), report_data=report_data_for(runtime_claims))
        return pack_hcl_report(self.report(fields), runtime_claims, hash_type=HashType.SHA256)

    # --- persistence, so a dev gateway and the emulators share one simulated AMD -------------

    def dump(self) -> bytes:
        """Keys and certificates as PEM (private keys unencrypted: dev only)."""
        pem, pkcs8 = serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8
        none = serialization.NoEncryption()
        parts = [
            self._ark_key.private_bytes(pem, pkcs8, none),
            self.ark.public_bytes(pem),
            self._ask_key.private_bytes(pem, pkcs8, none),
            self.ask.public_bytes(pem),
            self.chip.vcek_key.private_bytes(pem, pkcs8, none),
            self.chip.vcek.public_bytes(pem),
        ]
        return b"".join(parts)

    @classmethod
    def load(cls, data: bytes) -> SimulatedAmd:
        """The inverse of :meth:`dump`."""
        try:
            keys = [
                serialization.load_pem_private_key(block, None)
                for block in _pem_blocks(data, b"PRIVATE KEY")
            ]
            chain = parse_pem_chain(data)
        except (ValueError, MalformedCertificates) as error:
            raise ConfigError("simulated AMD bundle is malformed") from error
        if len(keys) != 3 or chain.ark is None or chain.ask is None:
            raise ConfigError("simulated AMD bundle is malformed")
        ark_key, ask_key, vcek_key = keys
        if not (
            isinstance(ark_key, rsa.RSAPrivateKey)
            and isinstance(ask_key, rsa.RSAPrivateKey)
            and isinstance(vcek_key, ec.EllipticCurvePrivateKey)
        ):
            raise ConfigError("simulated AMD bundle is malformed")
        ext = vcek_extensions(chain.vcek)
        product = ext.product or Product.MILAN
        chip = SimulatedChip(product, ext.hwid.ljust(64, b"\0"), ext.tcb, chain.vcek, vcek_key)
        return cls(product, ark_key, chain.ark, ask_key, chain.ask, chip)


def _pem_blocks(data: bytes, label: bytes) -> list[bytes]:
    begin, end = b"-----BEGIN " + label + b"-----", b"-----END " + label + b"-----"
    blocks, start = [], data.find(begin)
    while start != -1:
        stop = data.find(end, start)
        if stop == -1:
            break
        blocks.append(data[start : stop + len(end)] + b"\n")
        start = data.find(begin, stop)
    return blocks


class SimulatedEvidenceProvider:
    """``EvidenceProvider`` over a :class:`SimulatedAmd`, in either evidence kind."""

    name = "simulated"

    def __init__(
        self,
        amd: SimulatedAmd,
        kind: EvidenceKind = EvidenceKind.SEV_SNP,
        *,
        fields: ReportFields | None = None,
        wrapping_key_bits: int = 2048,
    ) -> None:
        self.amd, self.kind = amd, kind
        self._fields = fields or ReportFields()
        self._bits = wrapping_key_bits

    def collect(self, user_data: bytes) -> Evidence:
        user_data = require_user_data(user_data)
        if self.kind is EvidenceKind.AZURE_HCL:
            claims = hcl_runtime_claims(user_data)
            return Evidence(
                kind=self.kind,
                report=self.amd.hcl_report(claims, self._fields),
                runtime_data=claims,
                user_data=user_data,
                cert_chain=self.amd.cert_chain_pem(),
            )
        wrapping_key = rsa.generate_private_key(65537, self._bits)
        runtime_data = runtime_data_for(wrapping_key.public_key(), user_data)
        fields = replace(self._fields, report_data=report_data_for(runtime_data))
        return Evidence(
            kind=self.kind,
            report=self.amd.report(fields),
            runtime_data=runtime_data,
            user_data=user_data,
            cert_chain=self.amd.cert_chain_pem(),
            wrapping_key=wrapping_key,
        )


def hcl_runtime_claims(user_data: bytes, *, ak_bits: int = 2048) -> bytes:
    """Runtime claims shaped like the paravisor's: HCLAkPub, HCLEkPub, vm-configuration."""
    ak = rsa.generate_private_key(65537, ak_bits).public_key()
    ek = rsa.generate_private_key(65537, ak_bits).public_key()
    document = {
        "keys": [
            rsa_public_jwk(ak, kid="HCLAkPub", key_ops=("sign",)),
            rsa_public_jwk(ek, kid="HCLEkPub", key_ops=("encrypt",)),
        ],
        "vm-configuration": {
            "console-enabled": True,
            "secure-boot": True,
            "tpm-enabled": True,
            "vmUniqueId": "00000000-0000-4000-8000-000000000000",
        },
        "user-data": user_data.hex().upper(),
    }
    return json.dumps(document, separators=(",", ":")).encode("ascii")
