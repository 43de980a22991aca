"""MAA's token claims, built from evidence the emulator has already verified.

Accepts a parsed SNP report and the runtime / init-time JSON the report binds. Guarantees MAA's
claim names and shapes (shared/research/attestation-and-key-release.md §2.3, and the example token
in shared/fixtures/): hex strings for byte fields, ints for SVNs, booleans for policy bits,
``x-ms-runtime`` as parsed JSON; for AzureGuest, ``x-ms-attestation-type: azurevm`` with the SNP
claims moved under ``x-ms-isolation-tee`` and the TPM ephemeral key in the top-level
``x-ms-runtime.keys``. Never: verifies anything (the caller did), or adds claims MAA lacks.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa

from gateway.trust.jwk import rsa_public_jwk
from gateway.trust.snp import SnpReport

ATTESTATION_TYPE_SNP = "sevsnpvm"
ATTESTATION_TYPE_AZURE_VM = "azurevm"
COMPLIANCE_CVM = "azure-compliant-cvm"
EPHEMERAL_KEY_ID = "TpmEphemeralEncryptionKey"
CLAIMS_VERSION = "1.0"
# What the emulator's (fixed) attestation policy hashes to, as MAA reports its policy's hash.
POLICY_TEXT = b"version=1.0; authorizationrules{=> permit();}; issuancerules{};"


def policy_hash() -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(POLICY_TEXT).digest()).rstrip(b"=").decode()


def sev_snp_claims(report: SnpReport) -> dict[str, Any]:
    """The ``x-ms-sevsnpvm-*`` claims of one report; SVNs are the reported (VCEK's) TCB."""
    tcb = report.reported_tcb
    return {
        "x-ms-sevsnpvm-authorkeydigest": report.author_key_digest.hex(),
        "x-ms-sevsnpvm-bootloader-svn": tcb.bootloader,
        "x-ms-sevsnpvm-familyId": report.family_id.hex(),
        "x-ms-sevsnpvm-guestsvn": report.guest_svn,
        "x-ms-sevsnpvm-hostdata": report.host_data.hex(),
        "x-ms-sevsnpvm-idkeydigest": report.id_key_digest.hex(),
        "x-ms-sevsnpvm-imageId": report.image_id.hex(),
        "x-ms-sevsnpvm-is-debuggable": report.policy.debug_allowed,
        "x-ms-sevsnpvm-launchmeasurement": report.measurement.hex(),
        "x-ms-sevsnpvm-microcode-svn": tcb.microcode,
        "x-ms-sevsnpvm-migration-allowed": report.policy.migrate_ma_allowed,
        "x-ms-sevsnpvm-reportdata": report.report_data.hex(),
        "x-ms-sevsnpvm-reportid": report.report_id.hex(),
        "x-ms-sevsnpvm-smt-allowed": report.policy.smt_allowed,
        "x-ms-sevsnpvm-snpfw-svn": tcb.snp,
        "x-ms-sevsnpvm-tee-svn": tcb.tee,
        "x-ms-sevsnpvm-vmpl": report.vmpl,
    }


def sev_snp_vm_claims(
    report: SnpReport, runtime_data: bytes, init_time_data: bytes | None
) -> dict[str, Any]:
    """The body claims of a ``SevSnpVm`` token (without the envelope)."""
    claims: dict[str, Any] = {
        "x-ms-attestation-type": ATTESTATION_TYPE_SNP,
        "x-ms-compliance-status": COMPLIANCE_CVM,
        "x-ms-policy-hash": policy_hash(),
        "x-ms-runtime": json.loads(runtime_data),
        **sev_snp_claims(report),
        "x-ms-ver": CLAIMS_VERSION,
    }
    if init_time_data is not None:
        claims["x-ms-inittime"] = json.loads(init_time_data)
    return claims


def azure_guest_claims(
    report: SnpReport,
    hcl_runtime_data: bytes,
    *,
    ephemeral_key: rsa.RSAPublicKey,
    attested_pcrs: list[int],
    client_payload: bytes,
    os_type: str,
    os_distro: str,
    os_version: tuple[str, str],
) -> dict[str, Any]:
    """The body claims of an ``AzureGuest`` token (without the envelope)."""
    hcl_claims = json.loads(hcl_runtime_data)
    vm_configuration = hcl_claims.get("vm-configuration") or {}
    tee = {
        "x-ms-attestation-type": ATTESTATION_TYPE_SNP,
        "x-ms-compliance-status": COMPLIANCE_CVM,
        "x-ms-runtime": hcl_claims,
        **sev_snp_claims(report),
    }
    return {
        "secureboot": bool(vm_configuration.get("secure-boot", False)),
        "x-ms-attestation-type": ATTESTATION_TYPE_AZURE_VM,
        "x-ms-azurevm-attestation-protocol-ver": "2.0",
        "x-ms-azurevm-attested-pcrs": attested_pcrs,
        "x-ms-azurevm-is-windows": os_type.lower() == "windows",
        "x-ms-azurevm-osdistro": os_distro,
        "x-ms-azurevm-ostype": os_type,
        "x-ms-azurevm-osversion-major": _int_or_zero(os_version[0]),
        "x-ms-azurevm-osversion-minor": _int_or_zero(os_version[1]),
        "x-ms-azurevm-vmid": vm_configuration.get("vmUniqueId", ""),
        "x-ms-isolation-tee": tee,
        "x-ms-policy-hash": policy_hash(),
        "x-ms-runtime": {
            "client-payload": json.loads(client_payload) if client_payload else {},
            "keys": [rsa_public_jwk(ephemeral_key, kid=EPHEMERAL_KEY_ID)],
        },
        "x-ms-ver": CLAIMS_VERSION,
    }


def _int_or_zero(text: str) -> int:
    return int(text) if text.isdigit() else 0
