"""The ``azure-vtpm`` evidence provider: SEV-SNP evidence through an Azure CVM's vTPM.

For AKS confidential node pools and Azure confidential VMs, where the SNP report is reachable only
through the vTPM the paravisor (HCL) exposes. :meth:`AzureVtpmProvider.collect` (the
``EvidenceProvider`` protocol of :mod:`gateway.trust.evidence`) takes the 64 bytes of user-data
the gateway binds (:func:`gateway.trust.binding.user_data_for`) and optionally a nonce for the
TPM's qualifying data (default SHA-256 of the user-data), and returns
:class:`AzureVtpmEvidence`: ``AZURE_HCL`` evidence for MAA's SevSnpVm route, plus everything its
``AzureGuest`` route needs. Settings: :meth:`AzureVtpmConfig.from_settings`.

1. Write the user-data to NV ``0x01400002`` (defined as 64 bytes first, if absent; owner auth).
2. Read the HCL report from NV ``0x01400001``, in chunks of TPM2_PT_NV_BUFFER_MAX. On Azure the
   HCL regenerates the report after a user-data write, its runtime claims carrying
   ``"user-data"``; the provider polls until the report carries ours, for at most
   ``report_refresh_timeout_s`` (a plain TPM, such as swtpm in tests, never refreshes it: the
   tests provision the report themselves).
3. Read the AIK certificate (NV ``0x01C101D0``) and the AIK public (``0x81000003``).
4. Quote the configured sha256 PCRs with the AIK, the nonce as qualifying data.
5. Create an ephemeral RSA-2048 decryption key bound by PolicyPCR to those PCR values, certify it
   with the AIK (same nonce). :meth:`AzureVtpmProvider.decrypt` later opens MAA's sealed
   response or a KMS-wrapped key with it, in a policy session.
6. Read the TCG event log (absent: empty, with a note).

Before returning, the provider checks its own evidence with :mod:`gateway.trust.tpm_verify`, so
a PCR that changed between reading and quoting is retried rather than shipped.

Guarantees: TPM access is serialised and every session and transient handle is flushed (see
:mod:`gateway.trust.tpm`); every failure is a :class:`~gateway.errors.TrustError` subclass.
Never: holds the TPM between calls, or puts key material or the saved key context in a repr.
"""

from __future__ import annotations

import hashlib
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.config import Settings
from gateway.errors import (
    ConfigError,
    EvidenceError,
    HclReportStale,
    QuotePcrMismatch,
    TpmStructureInvalid,
)
from gateway.trust import tpm_verify
from gateway.trust.evidence import Evidence, EvidenceKind, require_user_data
from gateway.trust.hcl import HclReport, parse_hcl_report

if TYPE_CHECKING:
    from gateway.trust.tpm import Tpm

NAME = "azure-vtpm"
HCL_REPORT_INDEX = 0x01400001
USER_DATA_INDEX = 0x01400002
AIK_HANDLE = 0x81000003
AIK_CERT_INDEX = 0x01C101D0
MAX_NONCE_SIZE = 64  # TPM2B_DATA holds a TPMT_HA: at most a SHA-512 digest
DEFAULT_TCTI = "device:/dev/tpmrm0"
DEFAULT_EVENT_LOG = Path("/sys/kernel/security/tpm0/binary_bios_measurements")
DEFAULT_PCRS = (0, 1, 2, 3, 4, 5, 6, 7)  # what Microsoft's guest attestation client quotes
DECRYPT_SCHEMES = ("oaep-sha256", "oaep-sha1", "rsaes")
_QUOTE_ATTEMPTS = 2


@dataclass(frozen=True)
class AzureVtpmConfig:
    """Settings of the provider; invalid values raise :class:`ConfigError`."""

    tcti: str = DEFAULT_TCTI
    pcrs: tuple[int, ...] = DEFAULT_PCRS
    event_log_path: Path = DEFAULT_EVENT_LOG
    report_refresh_timeout_s: float = 3.0
    report_poll_interval_s: float = 0.25
    require_fresh_report: bool = True

    def __post_init__(self) -> None:
        if not self.tcti or (":" not in self.tcti and self.tcti != "swtpm"):
            raise ConfigError("azure-vtpm TCTI must name a transport, e.g. device:/dev/tpmrm0")
        if not self.pcrs or len(set(self.pcrs)) != len(self.pcrs):
            raise ConfigError("azure-vtpm PCR selection must be non-empty, without repeats")
        if any(not 0 <= pcr <= 23 for pcr in self.pcrs):
            raise ConfigError("azure-vtpm PCR indexes must be within 0..23")
        if self.report_refresh_timeout_s < 0 or self.report_poll_interval_s <= 0:
            raise ConfigError("azure-vtpm report refresh timings must be positive")

    @classmethod
    def from_settings(cls, settings: Settings) -> AzureVtpmConfig:
        """The provider's settings out of the gateway's (docs/configuration.md)."""
        return cls(
            tcti=settings.tpm_tcti,
            pcrs=settings.tpm_pcrs,
            event_log_path=settings.tpm_event_log,
            report_refresh_timeout_s=settings.hcl_refresh_timeout,
        )


@dataclass(frozen=True, kw_only=True)
class AzureVtpmEvidence(Evidence):
    """:class:`Evidence` of kind ``AZURE_HCL`` plus what MAA's AzureGuest route needs.

    ``report`` is the HCL report as read (NV padding included), ``runtime_data`` its runtime
    claims. Public areas are marshalled ``TPM2B_PUBLIC``; ``quote`` and ``certify_info`` are the
    signed ``TPMS_ATTEST`` bytes; signatures are raw RSASSA bytes; ``nonce`` is the qualifying
    data of both; ``pcr_values`` are the sha256 bank.
    """

    nonce: bytes
    aik_certificate: bytes = field(repr=False)
    aik_public: bytes = field(repr=False)
    pcrs: tuple[int, ...]
    pcr_values: dict[int, bytes] = field(repr=False)
    quote: bytes = field(repr=False)
    quote_signature: bytes = field(repr=False)
    encryption_key_public: bytes = field(repr=False)
    certify_info: bytes = field(repr=False)
    certify_signature: bytes = field(repr=False)
    event_log: bytes = field(repr=False)
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class _EphemeralKey:
    saved_context: bytes = field(repr=False)
    public: bytes
    pcrs: tuple[int, ...]
    pcr_digest: bytes


class AzureVtpmProvider:
    """Collects :class:`AzureVtpmEvidence` and decrypts with the TPM-resident ephemeral key."""

    name = NAME

    def __init__(self, config: AzureVtpmConfig | None = None) -> None:
        self._config = config or AzureVtpmConfig()
        self._key: _EphemeralKey | None = None

    def __repr__(self) -> str:
        return f"AzureVtpmProvider(tcti={self._config.tcti!r})"

    def collect(self, user_data: bytes, nonce: bytes | None = None) -> AzureVtpmEvidence:
        """Bind ``user_data`` into the HCL report and gather the vTPM evidence (see module).

        ``nonce`` is the quote's and the certification's qualifying data; by default
        SHA-256(user_data), which already commits to the gateway's nonce."""
        user_data = require_user_data(user_data)
        nonce = hashlib.sha256(user_data).digest() if nonce is None else nonce
        if not 0 < len(nonce) <= MAX_NONCE_SIZE:
            raise EvidenceError("azure-vtpm nonce must be 1 to 64 bytes")
        with self._open() as tpm:
            if tpm.nv_size(USER_DATA_INDEX, "the user-data NV index") is None:
                tpm.nv_define(USER_DATA_INDEX, len(user_data), "the user-data NV index")
            tpm.nv_write(USER_DATA_INDEX, user_data, "the user-data NV index")
        hcl_bytes, hcl = self._read_refreshed_report(user_data)
        with self._open() as tpm:
            aik_certificate = _certificate(tpm.nv_read(AIK_CERT_INDEX, "the AIK certificate"))
            aik_public = tpm.read_public(AIK_HANDLE, "the AIK")
            aik = tpm_verify.parse_public(aik_public)
            tpm_verify.aik_matches_certificate(aik, aik_certificate)
            pcr_values, quote, quote_signature = self._quote(tpm, aik, nonce)
            key = self._create_key(tpm, pcr_values)
            certify_info, certify_signature = tpm.certify(key.saved_context, AIK_HANDLE, nonce)
        tpm_verify.verify_certify(
            certify_info,
            certify_signature,
            aik,
            tpm_verify.parse_public(key.public),
            nonce=nonce,
            expected_policy=tpm_verify.policy_pcr_digest(self._config.pcrs, pcr_values),
        )
        self._key = key
        event_log, notes = self._event_log()
        return AzureVtpmEvidence(
            kind=EvidenceKind.AZURE_HCL,
            report=hcl_bytes,
            runtime_data=hcl.runtime_claims.raw,
            user_data=user_data,
            nonce=nonce,
            aik_certificate=aik_certificate,
            aik_public=aik_public,
            pcrs=self._config.pcrs,
            pcr_values=pcr_values,
            quote=quote,
            quote_signature=quote_signature,
            encryption_key_public=key.public,
            certify_info=certify_info,
            certify_signature=certify_signature,
            event_log=event_log,
            notes=notes,
        )

    def decrypt(self, ciphertext: bytes, scheme: str = "oaep-sha256") -> bytes:
        """Decrypt with the ephemeral key of the last :meth:`collect`, under its PCR policy.

        ``scheme``: ``oaep-sha256`` (Key Vault RSA_AES_KEY_WRAP_256), ``oaep-sha1``
        (CKM_RSA_AES_KEY_WRAP) or ``rsaes`` (MAA's sealed AzureGuest response). Raises
        :class:`~gateway.errors.TpmPolicyFailed` when the PCRs changed since then.
        """
        if scheme not in DECRYPT_SCHEMES:
            raise EvidenceError("azure-vtpm decrypt scheme must be oaep-sha256, oaep-sha1 or rsaes")
        key = self._key
        if key is None:
            raise EvidenceError("azure-vtpm has no ephemeral key yet: collect evidence first")
        with self._open() as tpm:
            return tpm.policy_decrypt(
                key.saved_context, ciphertext, scheme, key.pcrs, key.pcr_digest
            )

    # --- steps ------------------------------------------------------------------------------

    def _open(self) -> AbstractContextManager[Tpm]:
        try:
            from gateway.trust.tpm import open_tpm
        except ImportError as error:
            raise ConfigError(
                "azure-vtpm needs tpm2-pytss: install ohttp-gateway with the 'tpm' extra"
            ) from error
        return open_tpm(self._config.tcti)

    def _read_refreshed_report(self, user_data: bytes) -> tuple[bytes, HclReport]:
        deadline = time.monotonic() + self._config.report_refresh_timeout_s
        while True:
            with self._open() as tpm:
                report = tpm.nv_read(HCL_REPORT_INDEX, "the HCL report")
            parsed = parse_hcl_report(report)
            fresh = parsed.runtime_claims.user_data == user_data
            if fresh or not self._config.require_fresh_report:
                return report, parsed
            if time.monotonic() >= deadline:
                raise HclReportStale
            time.sleep(self._config.report_poll_interval_s)

    def _quote(
        self, tpm: Tpm, aik: tpm_verify.TpmPublic, nonce: bytes
    ) -> tuple[dict[int, bytes], bytes, bytes]:
        pcrs = self._config.pcrs
        for attempt in range(_QUOTE_ATTEMPTS):
            values = tpm.pcr_read(pcrs)
            quote, signature = tpm.quote(AIK_HANDLE, pcrs, nonce)
            try:
                tpm_verify.verify_quote(
                    quote, signature, aik, nonce=nonce, pcrs=pcrs, pcr_values=values
                )
            except QuotePcrMismatch:
                # A PCR was extended between PCR_Read and Quote: read and quote again.
                if attempt + 1 == _QUOTE_ATTEMPTS:
                    raise
                continue
            return values, quote, signature
        raise AssertionError("unreachable")  # pragma: no cover

    def _create_key(self, tpm: Tpm, pcr_values: dict[int, bytes]) -> _EphemeralKey:
        pcrs = self._config.pcrs
        policy = tpm_verify.policy_pcr_digest(pcrs, pcr_values)
        public, saved = tpm.create_policy_key(policy)
        return _EphemeralKey(saved, public, pcrs, tpm_verify.pcr_digest(pcr_values, pcrs))

    def _event_log(self) -> tuple[bytes, tuple[str, ...]]:
        try:
            return self._config.event_log_path.read_bytes(), ()
        except OSError:
            return b"", ("TCG event log not readable at the configured path; sent empty",)


def _certificate(nv_content: bytes) -> bytes:
    """The DER certificate at the start of the NV content (the index may be zero-padded)."""
    if len(nv_content) < 4 or nv_content[0] != 0x30 or nv_content[1] != 0x82:
        raise EvidenceError("AIK certificate NV index does not hold a DER certificate")
    der = nv_content[: 4 + int.from_bytes(nv_content[2:4], "big")]
    try:
        tpm_verify.load_certificate(der)
    except TpmStructureInvalid:
        raise EvidenceError("AIK certificate NV index does not hold a DER certificate") from None
    return der
