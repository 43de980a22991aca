"""The ``sev-guest`` evidence provider: SEV-SNP reports from inside a confidential container.

For Kata/CoCo pods and ACI, where the utility VM exposes AMD's guest interface. Three transports,
tried in this order unless one is chosen:

1. configfs-tsm (Linux >= 6.7): ``mkdir {configfs}/<entry>``, check ``provider`` is
   ``sev_guest``, write ``privlevel`` (the VMPL) and 64 bytes to ``inblob``, read ``outblob``
   (the report) and ``auxblob`` (the host's certificate table, if any), and refuse the result if
   ``generation`` changed meanwhile (another writer); the entry is removed in ``finally``;
2. ``SNP_GET_REPORT`` (``_IOWR('S', 0, 32)`` = 0xC0205300) on ``/dev/sev-guest`` (Linux 6.x):
   ``snp_guest_request_ioctl{u8 msg_version=1; u64 req_data; u64 resp_data; u64 fw_err}``
   pointing at ``snp_report_req{u8 user_data[64]; u32 vmpl; u8 rsvd[28]}`` and a 4000-byte
   ``snp_report_resp``;
3. ``SEV_SNP_GUEST_MSG_REPORT`` (0xC0285301) on ``/dev/sev`` (Azure's 5.x kernels):
   ``sev_snp_guest_request{u8 req_msg_type=5, rsp_msg_type=6, msg_version=1; u16 request_len;
   u64 request_uaddr; u16 response_len; u64 response_uaddr; u32 error}`` (40 bytes).

Both ioctl responses hold MSG_REPORT_RSP: ``u32 status; u32 report_size; u8 rsvd[24];`` then the
1184-byte report.

Guarantees: REPORT_DATA = SHA-256(runtime data) ‖ zeros, where the runtime data is
``{"keys": [<fresh RSA wrapping key as JWK>], "user-data": hex(user_data)}`` (see
:mod:`gateway.trust.evidence`), and the returned report is checked to carry exactly that
REPORT_DATA and VMPL. Calls are serialised by a lock. Device paths are configurable, and the
ioctl and configfs directory operations sit behind tiny seams (``ioctl``, ``make_entry``,
``remove_entry``) so tests can put a fake device or a fake configfs tree behind them. Failures
raise :class:`EvidenceDeviceError` (or :class:`MalformedReport`) with fixed messages.

Never does: invent a report when no device exists, or log the runtime data or the key.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import os
import struct
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from gateway.config import Settings
from gateway.errors import ConfigError, EvidenceDeviceError, MalformedCertificates
from gateway.trust.amd import parse_cert_bundle
from gateway.trust.binding import REPORT_DATA_SIZE, report_data_for
from gateway.trust.evidence import Evidence, EvidenceKind, require_user_data, runtime_data_for
from gateway.trust.snp import REPORT_SIZE, parse_report

SNP_GET_REPORT = 0xC0205300  # _IOWR('S', 0x0, struct snp_guest_request_ioctl)
SEV_SNP_GUEST_MSG_REPORT = 0xC0285301  # _IOWR('S', 0x1, struct sev_snp_guest_request)
MSG_REPORT_REQ, MSG_REPORT_RSP = 5, 6
MSG_VERSION = 1
REPORT_REQUEST_SIZE = 96
RESPONSE_SIZE = 4000  # snp_report_resp
LEGACY_RESPONSE_SIZE = 1280  # MSG_REPORT_RSP on the 5.x driver
RESPONSE_HEADER_SIZE = 32
MAX_AUXBLOB = 64 * 1024

GUEST_REQUEST = struct.Struct("<B7xQQQ")  # 32 bytes
LEGACY_REQUEST = struct.Struct("<BBBxH2xQH6xQI4x")  # 40 bytes
REPORT_REQUEST = struct.Struct("<64sI28x")  # 96 bytes
RESPONSE_HEADER = struct.Struct("<II24x")

# GHCB certificate table GUIDs (RFC 4122 byte order, as libuuid stores them).
CERT_GUIDS = {
    uuid.UUID("63da758d-e664-4564-adc5-f4b93be8accd").bytes: "VCEK",
    uuid.UUID("a8074bc2-a25a-483e-aae6-39c045a0b8a1").bytes: "VLEK",
    uuid.UUID("4ab7b379-bbac-4fe4-a02f-05aef327c782").bytes: "ASK",
    uuid.UUID("c0b406a4-a803-4952-9743-3fb6014cd0ae").bytes: "ARK",
}
CERT_TABLE_ENTRY = struct.Struct("<16sII")

IoctlFn = Callable[[int, int, bytearray], object]


@dataclass(frozen=True)
class SevGuestPaths:
    device: Path = Path("/dev/sev-guest")
    legacy_device: Path = Path("/dev/sev")
    configfs: Path = Path("/sys/kernel/config/tsm/report")


# --- struct packing (the part a fake kernel must agree with) ------------------------------


def pack_report_request(report_data: bytes, vmpl: int) -> bytes:
    if len(report_data) != REPORT_DATA_SIZE or not 0 <= vmpl <= 3:
        raise ConfigError("report request needs 64 bytes of report data and VMPL 0..3")
    return REPORT_REQUEST.pack(report_data, vmpl)


def pack_guest_request(request_address: int, response_address: int) -> bytearray:
    return bytearray(GUEST_REQUEST.pack(MSG_VERSION, request_address, response_address, 0))


def pack_legacy_request(request_address: int, response_address: int) -> bytearray:
    return bytearray(
        LEGACY_REQUEST.pack(
            MSG_REPORT_REQ,
            MSG_REPORT_RSP,
            MSG_VERSION,
            REPORT_REQUEST_SIZE,
            request_address,
            LEGACY_RESPONSE_SIZE,
            response_address,
            0,
        )
    )


def parse_report_response(response: bytes) -> bytes:
    """The report out of a MSG_REPORT_RSP, refusing a firmware error or a wrong size."""
    if len(response) < RESPONSE_HEADER_SIZE + REPORT_SIZE:
        raise EvidenceDeviceError("SNP report response is truncated")
    status, size = RESPONSE_HEADER.unpack_from(response)
    if status != 0:
        raise EvidenceDeviceError("SNP firmware refused the report request")
    if size != REPORT_SIZE:
        raise EvidenceDeviceError("SNP report response has an unexpected report size")
    return bytes(response[RESPONSE_HEADER_SIZE : RESPONSE_HEADER_SIZE + REPORT_SIZE])


def parse_cert_table(blob: bytes) -> dict[str, bytes]:
    """The GHCB certificate table (configfs ``auxblob``): role → DER, unknown GUIDs skipped."""
    certs: dict[str, bytes] = {}
    for index in range(0, len(blob) - CERT_TABLE_ENTRY.size + 1, CERT_TABLE_ENTRY.size):
        guid, offset, length = CERT_TABLE_ENTRY.unpack_from(blob, index)
        if guid == bytes(16):
            return certs
        if offset + length > len(blob) or length == 0:
            raise MalformedCertificates("certificate table entry is out of bounds")
        role = CERT_GUIDS.get(guid)
        if role is not None:
            certs[role] = blob[offset : offset + length]
    raise MalformedCertificates("certificate table has no terminator")


def cert_table_to_pem(blob: bytes) -> bytes:
    """VCEK ‖ ASK ‖ ARK as PEM from a certificate table; empty if the host gave none."""
    if not blob.strip(b"\0"):
        return b""
    table = parse_cert_table(blob)
    pem = b""
    for role in ("VCEK", "ASK", "ARK"):
        if role in table:
            try:
                cert = x509.load_der_x509_certificate(table[role])
            except (ValueError, x509.InvalidVersion) as error:
                raise MalformedCertificates() from error
            pem += cert.public_bytes(serialization.Encoding.PEM)
    return pem


# --- transports ---------------------------------------------------------------------------


class IoctlTransport:
    """SNP_GET_REPORT (or the 5.x SEV_SNP_GUEST_MSG_REPORT) through ``ioctl``."""

    def __init__(self, device: Path, *, legacy: bool = False, ioctl: IoctlFn = fcntl.ioctl) -> None:
        self.device, self.legacy, self._ioctl = device, legacy, ioctl

    def get_report(self, report_data: bytes, vmpl: int) -> tuple[bytes, bytes]:
        request = ctypes.create_string_buffer(pack_report_request(report_data, vmpl))
        response = ctypes.create_string_buffer(RESPONSE_SIZE)
        pack = pack_legacy_request if self.legacy else pack_guest_request
        argument = pack(ctypes.addressof(request), ctypes.addressof(response))
        command = SEV_SNP_GUEST_MSG_REPORT if self.legacy else SNP_GET_REPORT
        try:
            fd = os.open(self.device, os.O_RDWR | os.O_CLOEXEC)
        except OSError as error:
            raise EvidenceDeviceError("cannot open the SEV-SNP guest device") from error
        try:
            self._ioctl(fd, command, argument)
        except OSError as error:
            raise EvidenceDeviceError("SNP report ioctl failed") from error
        finally:
            os.close(fd)
        return parse_report_response(response.raw), b""


MakeEntry = Callable[[Path], None]


class ConfigfsTransport:
    """configfs-tsm: one report entry per request, removed afterwards."""

    def __init__(
        self,
        root: Path,
        *,
        make_entry: MakeEntry = os.mkdir,
        remove_entry: MakeEntry = os.rmdir,
    ) -> None:
        self.root, self._mkdir, self._rmdir = root, make_entry, remove_entry

    def get_report(self, report_data: bytes, vmpl: int) -> tuple[bytes, bytes]:
        if len(report_data) != REPORT_DATA_SIZE:
            raise ConfigError("report request needs 64 bytes of report data")
        entry = self.root / f"ohttp-gateway-{os.getpid()}-{uuid.uuid4().hex[:12]}"
        try:
            self._mkdir(entry)
        except OSError as error:
            raise EvidenceDeviceError("cannot create a configfs-tsm report entry") from error
        try:
            return self._generate(entry, report_data, vmpl)
        except OSError as error:
            raise EvidenceDeviceError("configfs-tsm report failed") from error
        finally:
            # a stale entry must not mask the real outcome
            with contextlib.suppress(OSError):
                self._rmdir(entry)

    def _generate(self, entry: Path, report_data: bytes, vmpl: int) -> tuple[bytes, bytes]:
        if (entry / "provider").read_text().strip() != "sev_guest":
            raise EvidenceDeviceError("configfs-tsm provider is not sev_guest")
        (entry / "privlevel").write_text(f"{vmpl}\n")
        (entry / "inblob").write_bytes(report_data)
        before = (entry / "generation").read_text().strip()
        report = (entry / "outblob").read_bytes()
        auxblob = _read_optional(entry / "auxblob")
        if (entry / "generation").read_text().strip() != before:
            raise EvidenceDeviceError("configfs-tsm report changed concurrently")
        return report, auxblob


def _read_optional(path: Path) -> bytes:
    try:
        with path.open("rb") as blob:
            return blob.read(MAX_AUXBLOB + 1)[:MAX_AUXBLOB]
    except OSError as error:
        if error.errno in (errno.ENOENT, errno.ENXIO, errno.EOPNOTSUPP):
            return b""  # older kernels, or a host that supplies no certificates
        raise


Transport = IoctlTransport | ConfigfsTransport
TransportChoice = Literal["auto", "configfs", "ioctl", "legacy-ioctl"]


def _transport_choice(value: str) -> TransportChoice:
    for choice in ("auto", "configfs", "ioctl", "legacy-ioctl"):
        if value == choice:
            return choice
    raise ConfigError("unknown sev-guest transport")


def choose_transport(
    paths: SevGuestPaths,
    prefer: TransportChoice = "auto",
    *,
    ioctl: IoctlFn = fcntl.ioctl,
    make_entry: MakeEntry = os.mkdir,
    remove_entry: MakeEntry = os.rmdir,
) -> Transport:
    configfs = ConfigfsTransport(paths.configfs, make_entry=make_entry, remove_entry=remove_entry)
    if prefer == "configfs" or (prefer == "auto" and paths.configfs.is_dir()):
        return configfs
    if prefer == "ioctl" or (prefer == "auto" and paths.device.exists()):
        return IoctlTransport(paths.device, ioctl=ioctl)
    if prefer == "legacy-ioctl" or (prefer == "auto" and paths.legacy_device.exists()):
        return IoctlTransport(paths.legacy_device, legacy=True, ioctl=ioctl)
    raise EvidenceDeviceError("no SEV-SNP guest device or configfs-tsm found")


class SevGuestEvidenceProvider:
    """``EvidenceProvider`` for confidential containers; see the module docstring."""

    name = "sev-guest"

    def __init__(
        self,
        transport: Transport,
        *,
        vmpl: int = 0,
        cert_chain: bytes = b"",
        wrapping_key_bits: int = 2048,
    ) -> None:
        if not 0 <= vmpl <= 3:
            raise ConfigError("VMPL must be 0..3")
        if wrapping_key_bits < 2048:
            raise ConfigError("the wrapping key must be RSA-2048 or larger")
        self.transport, self.vmpl, self._bits = transport, vmpl, wrapping_key_bits
        self._cert_chain = cert_chain  # e.g. from UVM_HOST_AMD_CERTIFICATE; else THIM
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> SevGuestEvidenceProvider:
        """The provider the gateway's settings describe (docs/configuration.md)."""
        paths = SevGuestPaths(
            device=settings.sev_guest_device,
            legacy_device=settings.sev_guest_legacy_device,
            configfs=settings.tsm_report_dir,
        )
        transport = choose_transport(paths, _transport_choice(settings.sev_guest_transport))
        cert_chain = b""
        if settings.host_amd_certs is not None:
            try:
                bundle = settings.host_amd_certs.read_bytes()
            except OSError as error:
                raise ConfigError("cannot read the host AMD certificates") from error
            cert_chain = parse_cert_bundle(bundle).to_pem()
        return cls(transport, vmpl=settings.sev_guest_vmpl, cert_chain=cert_chain)

    def collect(self, user_data: bytes) -> Evidence:
        user_data = require_user_data(user_data)
        wrapping_key = rsa.generate_private_key(65537, self._bits)
        runtime_data = runtime_data_for(wrapping_key.public_key(), user_data)
        report_data = report_data_for(runtime_data)
        with self._lock:
            report, auxblob = self.transport.get_report(report_data, self.vmpl)
        parsed = parse_report(report)
        if parsed.report_data != report_data or parsed.vmpl != self.vmpl:
            raise EvidenceDeviceError("SNP report does not carry the requested data")
        return Evidence(
            kind=EvidenceKind.SEV_SNP,
            report=report,
            runtime_data=runtime_data,
            user_data=user_data,
            cert_chain=cert_table_to_pem(auxblob) or self._cert_chain,
            wrapping_key=wrapping_key,
        )
