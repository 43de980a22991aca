"""A real software TPM (swtpm) for tests, provisioned like an Azure CVM's vTPM.

:class:`Swtpm` runs one ``swtpm socket --tpm2`` process on a unix socket in a short directory of
its own (AF_UNIX paths are limited to 108 bytes, pytest's tmp_path is too deep), started from a
copy of a state directory, and stopped by its PID only (SIGTERM, then SIGKILL). The child gets
PR_SET_PDEATHSIG so a killed test run leaves no swtpm behind.

:func:`provision` gives a fresh swtpm what the paravisor gives an Azure vTPM:

* an AIK (restricted RSA-2048 RSASSA-SHA256 signing key) persisted at ``0x81000003``;
* its certificate, issued by a test CA made here with ``cryptography``, in NV ``0x01C101D0``;
* an HCL report (stock swtpm caps an NV index at 2048 bytes) whose runtime claims carry the AIK
  public as ``HCLAkPub`` and the user-data, in NV ``0x01400001`` (2048 bytes, padded); its SNP
  report is signed by a :class:`SimulatedAmd` when one is given, so the whole evidence verifies;
* NV ``0x01400002``, 64 bytes of user-data.

Provisioning costs an RSA key generation inside the TPM (0.1-0.5 s), so tests provision one
"golden" state per session and start each test's swtpm from a copy of it.
"""

from __future__ import annotations

import ctypes
import datetime
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from gateway.trust import tpm_verify
from gateway.trust.binding import report_data_for
from gateway.trust.evidence.simulated import (
    ReportFields,
    SimulatedAmd,
    pack_hcl_report,
    pack_report,
)
from gateway.trust.jwk import rsa_public_jwk
from gateway.trust.snp import Product

# tpm2-tss prints every TPM error to stderr; the tests provoke many on purpose.
os.environ.setdefault("TSS2_LOG", "all+NONE")

SWTPM = shutil.which("swtpm")
HCL_REPORT_INDEX = 0x01400001
USER_DATA_INDEX = 0x01400002
AIK_HANDLE = 0x81000003
AIK_CERT_INDEX = 0x01C101D0
HCL_NV_SIZE = 2048  # stock libtpms: TPM2_PT_NV_INDEX_MAX
SNP_REPORT_SIZE = 1184
STARTUP_TIMEOUT_S = 5.0
# The user-data a golden state is provisioned with: what a gateway binds (keys hash, nonce hash).
GOLDEN_USER_DATA = (
    hashlib.sha256(b"application/ohttp-keys").digest() + hashlib.sha256(b"n").digest()
)
PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # runs in the child between fork and exec
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _accepts(path: str) -> bool:
    with socket.socket(socket.AF_UNIX) as probe:
        return probe.connect_ex(path) == 0


class Swtpm:
    """One swtpm process, owned by PID. Use as a context manager."""

    def __init__(self, state_from: Path | None = None) -> None:
        self._state_from = state_from
        self.directory = Path(tempfile.mkdtemp(prefix="swtpm-", dir="/tmp"))
        self.socket = self.directory / "s"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def tcti(self) -> str:
        return f"swtpm:path={self.socket}"

    @property
    def state(self) -> Path:
        return self.directory / "state"

    def start(self) -> Swtpm:
        assert SWTPM is not None, "swtpm is not installed (scripts/system-packages.txt)"
        if self.state.exists():
            pass  # a restart: keep the state, as a rebooted vTPM does
        elif self._state_from is not None:
            shutil.copytree(self._state_from, self.state)
        else:
            self.state.mkdir()
        self._process = subprocess.Popen(
            [SWTPM, "socket", "--tpm2", "--tpmstate", f"dir={self.state}",
             "--server", f"type=unixio,path={self.socket}",
             "--ctrl", f"type=unixio,path={self.socket}.ctrl",
             "--flags", "not-need-init,startup-clear"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
        )  # fmt: skip
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"swtpm exited with {self._process.returncode}")
            # A socket file exists from bind(), before listen(): connect to both to be sure.
            if all(_accepts(path) for path in (f"{self.socket}.ctrl", str(self.socket))):
                return
            time.sleep(0.002)
        self.stop()
        raise RuntimeError("swtpm did not come up")

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            os.kill(process.pid, signal.SIGTERM)
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                os.kill(process.pid, signal.SIGKILL)
                process.wait(5)

    def save_state(self, destination: Path) -> Path:
        """Stop gracefully and keep the TPM state (NV, persistent keys) for later copies."""
        self.stop()
        shutil.copytree(self.state, destination)
        return destination

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> Swtpm:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.remove()


# --- provisioning, as the Azure paravisor would ----------------------------------------------


@dataclass(frozen=True)
class Provisioned:
    """What :func:`provision` put into the TPM."""

    ca_certificate: x509.Certificate
    aik_certificate: bytes
    aik_public: bytes  # TPM2B_PUBLIC
    hcl_report: bytes  # unpadded
    user_data: bytes


@dataclass(frozen=True)
class Golden:
    """A provisioned TPM state directory, to start per-test swtpms from."""

    state: Path
    provisioned: Provisioned


def make_golden(
    destination: Path, user_data: bytes = GOLDEN_USER_DATA, amd: SimulatedAmd | None = None
) -> Golden:
    with Swtpm() as tpm:
        provisioned = provision(tpm.tcti, user_data=user_data, amd=amd)
        return Golden(tpm.save_state(destination), provisioned)


def runtime_claims(aik: rsa.RSAPublicKey, user_data: bytes) -> bytes:
    """HCL runtime claims in Azure's shape with one key, HCLAkPub = the AIK; compact JSON."""
    claims = {
        "keys": [rsa_public_jwk(aik, kid="HCLAkPub", key_ops=("sign",))],
        "vm-configuration": {
            "console-enabled": False,
            "secure-boot": True,
            "tpm-enabled": True,
            "vmUniqueId": "00000000-0000-4000-8000-000000000000",
        },
        "user-data": user_data.hex().upper(),
    }
    return json.dumps(claims, separators=(",", ":")).encode()


def synthetic_hcl_report(claims: bytes, amd: SimulatedAmd | None = None) -> bytes:
    """An HCL report binding ``claims``: signed by ``amd``'s simulated chip, or else an unsigned
    SNP report (version 2, REPORT_DATA = SHA-256(claims) || 0)."""
    if amd is not None:
        report = amd.hcl_report(claims)
    else:
        fields = ReportFields(
            report_data=report_data_for(claims), chip_id=bytes(64), reported_tcb=0
        )
        report = pack_hcl_report(pack_report(Product.MILAN, fields), claims)
    assert len(report) <= HCL_NV_SIZE, "HCL report exceeds swtpm's NV index limit"
    return report


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _builder(
    subject: x509.Name,
    issuer: x509.Name,
    key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey,
    validity: tuple[datetime.datetime, datetime.datetime],
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(validity[0])
        .not_valid_after(validity[1])
    )


def issue_aik_certificate(aik: rsa.RSAPublicKey) -> tuple[x509.Certificate, bytes]:
    """A throwaway CA and an AIK certificate it issued (DER)."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    validity = (now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=1))
    ca = (
        _builder(_name("test vTPM CA"), _name("test vTPM CA"), ca_key.public_key(), validity)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    aik_cert = _builder(_name("test vTPM AIK"), ca.subject, aik, validity).sign(
        ca_key, hashes.SHA256()
    )
    return ca, aik_cert.public_bytes(serialization.Encoding.DER)


def nv_put(tcti: str, index: int, data: bytes, size: int | None = None) -> None:
    """(Re)define an owner NV index of ``size`` (default len(data)) and write ``data``."""
    from tpm2_pytss import ESAPI, ESYS_TR, TSS2_Exception

    from gateway.trust.tpm import Tpm

    with ESAPI(tcti) as esapi:
        with suppress(TSS2_Exception):  # not defined yet
            esapi.nv_undefine_space(esapi.tr_from_tpmpublic(index), ESYS_TR.OWNER)
        tpm = Tpm(esapi)
        tpm.nv_define(index, size or len(data), "a test NV index")
        tpm.nv_write(index, data, "a test NV index")


def put_hcl_report(tcti: str, report: bytes) -> None:
    """Replace the HCL report, as the paravisor does after a user-data write: in place when
    the index exists, so a concurrent reader never finds it missing."""
    from tpm2_pytss import ESAPI

    from gateway.trust.tpm import Tpm

    padded = report.ljust(HCL_NV_SIZE, b"\0")
    with ESAPI(tcti) as esapi:
        tpm = Tpm(esapi)
        if tpm.nv_size(HCL_REPORT_INDEX, "the HCL report") == HCL_NV_SIZE:
            tpm.nv_write(HCL_REPORT_INDEX, padded, "the HCL report")
            return
    nv_put(tcti, HCL_REPORT_INDEX, padded)


def nv_get(tcti: str, index: int) -> bytes:
    from tpm2_pytss import ESAPI

    from gateway.trust.tpm import Tpm

    with ESAPI(tcti) as esapi:
        return Tpm(esapi).nv_read(index, "a test NV index")


def pcr_extend(tcti: str, index: int, data: bytes = b"measured") -> None:
    """Extend a sha256 PCR, as booting another component would."""
    from tpm2_pytss import ESAPI, ESYS_TR, TPM2_ALG, TPML_DIGEST_VALUES, TPMT_HA, TPMU_HA

    digest = TPMT_HA(hashAlg=TPM2_ALG.SHA256, digest=TPMU_HA(sha256=hashlib.sha256(data).digest()))
    with ESAPI(tcti) as esapi:
        esapi.pcr_extend(ESYS_TR.parse(f"PCR{index}"), TPML_DIGEST_VALUES([digest]))


def loaded_handles(tcti: str) -> list[int]:
    """Transient objects and sessions (loaded or saved) left in the TPM."""
    from tpm2_pytss import ESAPI, TPM2_CAP

    handles: list[int] = []
    with ESAPI(tcti) as esapi:
        for first in (0x80000000, 0x02000000, 0x03000000):
            _, data = esapi.get_capability(TPM2_CAP.HANDLES, first, 64)
            handles += [int(h) for h in data.data.handles if int(h) >> 24 == first >> 24]
    return handles


def nv_remove(tcti: str, index: int) -> None:
    from tpm2_pytss import ESAPI, ESYS_TR

    with ESAPI(tcti) as esapi:
        esapi.nv_undefine_space(esapi.tr_from_tpmpublic(index), ESYS_TR.OWNER)


def evict_aik(tcti: str) -> None:
    from tpm2_pytss import ESAPI, ESYS_TR

    with ESAPI(tcti) as esapi:
        esapi.evict_control(ESYS_TR.OWNER, esapi.tr_from_tpmpublic(AIK_HANDLE), AIK_HANDLE)


def _create_aik(tcti: str) -> bytes:
    from tpm2_pytss import ESAPI, ESYS_TR, TPM2B_PUBLIC, TPMA_OBJECT

    attributes = (
        TPMA_OBJECT.RESTRICTED | TPMA_OBJECT.SIGN_ENCRYPT | TPMA_OBJECT.FIXEDTPM
        | TPMA_OBJECT.FIXEDPARENT | TPMA_OBJECT.SENSITIVEDATAORIGIN | TPMA_OBJECT.USERWITHAUTH
        | TPMA_OBJECT.NODA
    )  # fmt: skip
    template = TPM2B_PUBLIC.parse("rsa2048:rsassa-sha256:null", objectAttributes=attributes)
    with ESAPI(tcti) as esapi:
        handle, public, *_ = esapi.create_primary(None, template, primary_handle=ESYS_TR.OWNER)
        try:
            esapi.evict_control(ESYS_TR.OWNER, handle, AIK_HANDLE)
        finally:
            esapi.flush_context(handle)
        return bytes(public.marshal())


def provision(
    tcti: str, *, user_data: bytes = bytes(64), amd: SimulatedAmd | None = None
) -> Provisioned:
    """Provision a fresh swtpm like an Azure vTPM (see the module docstring); with ``amd``,
    the HCL report's SNP report is signed by that simulated AMD chip."""
    aik_public = _create_aik(tcti)
    aik_key = tpm_verify.parse_public(aik_public).public_key
    ca, aik_cert = issue_aik_certificate(aik_key)
    nv_put(tcti, AIK_CERT_INDEX, aik_cert)
    report = synthetic_hcl_report(runtime_claims(aik_key, user_data), amd)
    put_hcl_report(tcti, report)
    nv_put(tcti, USER_DATA_INDEX, user_data)
    return Provisioned(ca, aik_cert, aik_public, report, user_data)
