"""The azure-vtpm provider against a real swtpm, provisioned like an Azure CVM's vTPM."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from gateway.errors import (
    ConfigError,
    EvidenceError,
    HclReportStale,
    MalformedHclReport,
    QuotePcrMismatch,
    TpmKeyLost,
    TpmObjectMissing,
    TpmPolicyFailed,
    TpmUnavailable,
)
from gateway.trust import tpm_verify
from gateway.trust.evidence import EvidenceKind, EvidenceProvider
from gateway.trust.evidence.azure_vtpm import (
    AIK_CERT_INDEX,
    HCL_REPORT_INDEX,
    USER_DATA_INDEX,
    AzureVtpmConfig,
    AzureVtpmEvidence,
    AzureVtpmProvider,
)
from gateway.trust.evidence.simulated import SimulatedAmd
from gateway.trust.hcl import parse_hcl_report
from gateway.trust.verify import verify_hcl_evidence
from tests.support import swtpm
from tests.trust.conftest import NOW

pytestmark = pytest.mark.skipif(swtpm.SWTPM is None, reason="swtpm is not installed")

USER_DATA = swtpm.GOLDEN_USER_DATA
NONCE = hashlib.sha256(b"attestation nonce").digest()
PCRS = tuple(range(8))
SECRET = b"k" * 32
PADDINGS = {
    "oaep-sha256": padding.OAEP(padding.MGF1(hashes.SHA256()), hashes.SHA256(), None),
    # CKM_RSA_AES_KEY_WRAP (older Key Vault releases) is OAEP with SHA-1.
    "oaep-sha1": padding.OAEP(padding.MGF1(hashes.SHA1()), hashes.SHA1(), None),  # noqa: S303
    "rsaes": padding.PKCS1v15(),
}


def provider_for(tpm: swtpm.Swtpm, **settings: object) -> AzureVtpmProvider:
    settings.setdefault("event_log_path", Path("/nonexistent/binary_bios_measurements"))
    settings.setdefault("report_refresh_timeout_s", 0.05)
    settings.setdefault("report_poll_interval_s", 0.01)
    settings.setdefault("lock_directory", tpm.directory)  # the report lock goes with the swtpm
    return AzureVtpmProvider(AzureVtpmConfig(tcti=tpm.tcti, **settings))  # type: ignore[arg-type]


def collect(provider: AzureVtpmProvider) -> AzureVtpmEvidence:
    return provider.collect(USER_DATA, NONCE)


def claimed_user_data(hcl_report: bytes) -> bytes | None:
    return parse_hcl_report(hcl_report).runtime_claims.user_data


# --- the evidence ---------------------------------------------------------------------------


def test_collect_gives_evidence_that_verifies(vtpm: swtpm.Swtpm, golden: swtpm.Golden) -> None:
    started = time.perf_counter()
    evidence = collect(provider_for(vtpm))
    elapsed = time.perf_counter() - started
    assert elapsed < 5, "collect should take tens of milliseconds on swtpm"

    assert evidence.report == golden.provisioned.hcl_report.ljust(swtpm.HCL_NV_SIZE, b"\0")
    assert evidence.aik_certificate == golden.provisioned.aik_certificate
    assert evidence.aik_public == golden.provisioned.aik_public
    assert evidence.pcrs == PCRS
    assert set(evidence.pcr_values) == set(PCRS)
    aik = tpm_verify.parse_public(evidence.aik_public)
    tpm_verify.check_attestation_key(aik)
    tpm_verify.aik_matches_certificate(aik, evidence.aik_certificate)
    quote = tpm_verify.verify_quote(
        evidence.quote,
        evidence.quote_signature,
        aik,
        nonce=NONCE,
        pcrs=PCRS,
        pcr_values=evidence.pcr_values,
    )
    assert quote.extra_data == NONCE
    key = tpm_verify.parse_public(evidence.encryption_key_public)
    assert key.key_bits == 2048
    certify = tpm_verify.verify_certify(
        evidence.certify_info,
        evidence.certify_signature,
        aik,
        key,
        nonce=NONCE,
        expected_policy=tpm_verify.policy_pcr_digest(PCRS, evidence.pcr_values),
    )
    assert certify.certified_name == key.name


def test_the_evidence_is_azure_hcl_evidence_that_verifies(
    vtpm: swtpm.Swtpm, simulated_amd: SimulatedAmd
) -> None:
    provider = provider_for(vtpm)
    assert isinstance(provider, EvidenceProvider)
    evidence = provider.collect(USER_DATA)
    assert evidence.kind is EvidenceKind.AZURE_HCL
    assert evidence.nonce == hashlib.sha256(USER_DATA).digest(), "default qualifying data"
    assert len(evidence.snp_report) == 1184
    assert evidence.runtime_data == parse_hcl_report(evidence.report).runtime_claims.raw
    verified = verify_hcl_evidence(
        evidence.report,
        simulated_amd.cert_chain(),
        trust=simulated_amd.trust,
        now=NOW,
        expected_user_data=USER_DATA,
    )
    assert verified.runtime_claims.key("HCLAkPub") is not None


def test_the_hcl_report_binds_the_aik_and_the_user_data(vtpm: swtpm.Swtpm) -> None:
    evidence = collect(provider_for(vtpm))
    assert claimed_user_data(evidence.report) == USER_DATA
    claims = swtpm.runtime_claims(
        tpm_verify.parse_public(evidence.aik_public).public_key, USER_DATA
    )
    assert claims in evidence.report
    assert evidence.runtime_data == claims
    jwk = json.loads(claims)["keys"][0]
    tpm_verify.aik_matches_jwk(tpm_verify.parse_public(evidence.aik_public), jwk)


def test_user_data_written_is_read_back(vtpm: swtpm.Swtpm) -> None:
    other = bytes(range(64))
    aik = tpm_verify.parse_public(_aik_public(vtpm)).public_key
    swtpm.put_hcl_report(vtpm.tcti, swtpm.synthetic_hcl_report(swtpm.runtime_claims(aik, other)))
    evidence = provider_for(vtpm).collect(other, NONCE)
    assert evidence.user_data == other
    assert swtpm.nv_get(vtpm.tcti, USER_DATA_INDEX) == other
    assert claimed_user_data(evidence.report) == other


def _aik_public(tpm: swtpm.Swtpm) -> bytes:
    from gateway.trust.tpm import open_tpm

    with open_tpm(tpm.tcti) as session:
        return session.read_public(swtpm.AIK_HANDLE, "the AIK")


def test_user_data_index_is_defined_when_absent(vtpm: swtpm.Swtpm) -> None:
    swtpm.nv_remove(vtpm.tcti, USER_DATA_INDEX)
    collect(provider_for(vtpm))
    assert swtpm.nv_get(vtpm.tcti, USER_DATA_INDEX) == USER_DATA


def test_the_real_azure_hcl_report_fits_and_reads_back(
    vtpm: swtpm.Swtpm, hcl_report_bytes: bytes
) -> None:
    real = hcl_report_bytes
    assert len(real) == 2048  # exactly stock swtpm's NV index limit
    swtpm.put_hcl_report(vtpm.tcti, real)
    # This report predates the user-data claim, so it can never be fresh for ours.
    assert claimed_user_data(real) is None
    with pytest.raises(HclReportStale):
        provider_for(vtpm).collect(USER_DATA, NONCE)
    evidence = provider_for(vtpm, require_fresh_report=False).collect(USER_DATA, NONCE)
    assert evidence.report == real


def test_a_report_without_our_user_data_is_stale(vtpm: swtpm.Swtpm) -> None:
    with pytest.raises(HclReportStale):
        provider_for(vtpm).collect(bytes(64), NONCE)


def test_a_stale_report_is_accepted_when_freshness_is_not_required(vtpm: swtpm.Swtpm) -> None:
    evidence = provider_for(vtpm, require_fresh_report=False).collect(bytes(64), NONCE)
    assert claimed_user_data(evidence.report) == USER_DATA


def test_the_provider_waits_for_the_hcl_to_refresh_the_report(vtpm: swtpm.Swtpm) -> None:
    fresh = bytes(range(64, 128))
    aik = tpm_verify.parse_public(_aik_public(vtpm)).public_key
    report = swtpm.synthetic_hcl_report(swtpm.runtime_claims(aik, fresh))
    # Play the paravisor: replace the report a little after the user-data write.
    refresher = threading.Timer(0.1, swtpm.put_hcl_report, (vtpm.tcti, report))
    refresher.start()
    try:
        evidence = provider_for(
            vtpm, report_refresh_timeout_s=5.0, report_poll_interval_s=0.02
        ).collect(fresh, NONCE)
    finally:
        refresher.join()
    assert claimed_user_data(evidence.report) == fresh


def test_event_log_is_read_from_the_configured_path(vtpm: swtpm.Swtpm, tmp_path: Path) -> None:
    log = tmp_path / "binary_bios_measurements"
    log.write_bytes(b"\x00\x01tcg-event-log")
    evidence = collect(provider_for(vtpm, event_log_path=log))
    assert evidence.event_log == b"\x00\x01tcg-event-log"
    assert evidence.notes == ()


def test_an_absent_event_log_is_empty_with_a_note(vtpm: swtpm.Swtpm) -> None:
    evidence = collect(provider_for(vtpm))
    assert evidence.event_log == b""
    assert evidence.notes == ("TCG event log not readable at the configured path; sent empty",)


# --- quotes -----------------------------------------------------------------------------------


def test_a_quote_over_the_wrong_pcrs_is_refused(vtpm: swtpm.Swtpm) -> None:
    evidence = collect(provider_for(vtpm, pcrs=(0, 1, 2, 3)))
    aik = tpm_verify.parse_public(evidence.aik_public)
    values = dict.fromkeys(PCRS, bytes(32))
    with pytest.raises(QuotePcrMismatch, match="other PCRs"):
        tpm_verify.verify_quote(
            evidence.quote, evidence.quote_signature, aik, nonce=NONCE, pcrs=PCRS, pcr_values=values
        )


def test_a_quote_does_not_verify_against_other_pcr_values(vtpm: swtpm.Swtpm) -> None:
    evidence = collect(provider_for(vtpm))
    aik = tpm_verify.parse_public(evidence.aik_public)
    claimed = dict(evidence.pcr_values) | {7: hashlib.sha256(b"another boot").digest()}
    with pytest.raises(QuotePcrMismatch, match="digest"):
        tpm_verify.verify_quote(
            evidence.quote,
            evidence.quote_signature,
            aik,
            nonce=NONCE,
            pcrs=PCRS,
            pcr_values=claimed,
        )


def test_the_quote_follows_a_pcr_extend(vtpm: swtpm.Swtpm) -> None:
    swtpm.pcr_extend(vtpm.tcti, 7)
    evidence = collect(provider_for(vtpm))
    expected = hashlib.sha256(bytes(32) + hashlib.sha256(b"measured").digest()).digest()
    assert evidence.pcr_values[7] == expected
    aik = tpm_verify.parse_public(evidence.aik_public)
    tpm_verify.verify_quote(
        evidence.quote,
        evidence.quote_signature,
        aik,
        nonce=NONCE,
        pcrs=PCRS,
        pcr_values=evidence.pcr_values,
    )


def test_a_pcr_extended_between_read_and_quote_is_retried(
    vtpm: swtpm.Swtpm, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gateway.trust import tpm

    real_quote = tpm.Tpm.quote
    calls: list[int] = []

    def quote_after_a_boot_event(self: tpm.Tpm, *args: object) -> tuple[bytes, bytes]:
        calls.append(1)
        if len(calls) == 1:  # a measurement lands between PCR_Read and Quote, on the real TPM
            from tpm2_pytss import ESYS_TR, TPM2_ALG, TPML_DIGEST_VALUES, TPMT_HA, TPMU_HA

            digest = TPMT_HA(hashAlg=TPM2_ALG.SHA256, digest=TPMU_HA(sha256=bytes(32)))
            self._esapi.pcr_extend(ESYS_TR.PCR5, TPML_DIGEST_VALUES([digest]))
        return real_quote(self, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(tpm.Tpm, "quote", quote_after_a_boot_event)
    evidence = collect(provider_for(vtpm))
    assert len(calls) == 2
    assert evidence.pcr_values[5] != bytes(32)
    tpm_verify.verify_quote(
        evidence.quote,
        evidence.quote_signature,
        tpm_verify.parse_public(evidence.aik_public),
        nonce=NONCE,
        pcrs=PCRS,
        pcr_values=evidence.pcr_values,
    )


def test_all_24_pcrs_can_be_quoted(vtpm: swtpm.Swtpm) -> None:
    every = tuple(range(24))  # more than one PCR_Read answers (8 digests each)
    swtpm.pcr_extend(vtpm.tcti, 23)
    provider = provider_for(vtpm, pcrs=every)
    evidence = collect(provider)
    assert sorted(evidence.pcr_values) == list(every)
    aik = tpm_verify.parse_public(evidence.aik_public)
    tpm_verify.verify_quote(
        evidence.quote,
        evidence.quote_signature,
        aik,
        nonce=NONCE,
        pcrs=every,
        pcr_values=evidence.pcr_values,
    )
    key = tpm_verify.parse_public(evidence.encryption_key_public).public_key
    assert provider.decrypt(key.encrypt(SECRET, PADDINGS["rsaes"]), "rsaes") == SECRET


def test_offline_policy_digest_equals_the_tpms(vtpm: swtpm.Swtpm) -> None:
    from gateway.trust.tpm import open_tpm

    swtpm.pcr_extend(vtpm.tcti, 3)
    with open_tpm(vtpm.tcti) as tpm:
        values = tpm.pcr_read(PCRS)
        in_tpm = tpm.policy_pcr_digest(PCRS, tpm_verify.pcr_digest(values, PCRS))
    assert in_tpm == tpm_verify.policy_pcr_digest(PCRS, values)


# --- the certified key and decrypt under policy -----------------------------------------------


@pytest.mark.parametrize("scheme", sorted(PADDINGS))
def test_decrypt_under_the_pcr_policy(vtpm: swtpm.Swtpm, scheme: str) -> None:
    provider = provider_for(vtpm)
    evidence = collect(provider)
    key = tpm_verify.parse_public(evidence.encryption_key_public).public_key
    assert provider.decrypt(key.encrypt(SECRET, PADDINGS[scheme]), scheme) == SECRET
    assert swtpm.loaded_handles(vtpm.tcti) == []


def test_decrypt_is_refused_after_a_pcr_change(vtpm: swtpm.Swtpm) -> None:
    provider = provider_for(vtpm)
    evidence = collect(provider)
    key = tpm_verify.parse_public(evidence.encryption_key_public).public_key
    ciphertext = key.encrypt(SECRET, PADDINGS["oaep-sha256"])
    swtpm.pcr_extend(vtpm.tcti, 4)
    with pytest.raises(TpmPolicyFailed):
        provider.decrypt(ciphertext)
    assert swtpm.loaded_handles(vtpm.tcti) == [], "a failed decrypt must flush its session"


def test_a_pcr_outside_the_policy_does_not_matter(vtpm: swtpm.Swtpm) -> None:
    provider = provider_for(vtpm)
    evidence = collect(provider)
    key = tpm_verify.parse_public(evidence.encryption_key_public).public_key
    swtpm.pcr_extend(vtpm.tcti, 16)
    assert provider.decrypt(key.encrypt(SECRET, PADDINGS["rsaes"]), "rsaes") == SECRET


def test_the_certification_names_only_the_certified_key(vtpm: swtpm.Swtpm) -> None:
    provider = provider_for(vtpm)
    first, second = collect(provider), collect(provider)
    assert first.encryption_key_public != second.encryption_key_public, "a fresh key each time"
    aik = tpm_verify.parse_public(first.aik_public)
    other_key = tpm_verify.parse_public(second.encryption_key_public)
    tpm_verify.verify_certify(
        second.certify_info, second.certify_signature, aik, other_key, nonce=NONCE
    )
    from gateway.errors import CertifiedKeyMismatch

    with pytest.raises(CertifiedKeyMismatch, match="another key"):
        tpm_verify.verify_certify(
            first.certify_info, first.certify_signature, aik, other_key, nonce=NONCE
        )


def test_a_tpm_reset_loses_the_ephemeral_key(vtpm: swtpm.Swtpm) -> None:
    provider = provider_for(vtpm)
    evidence = collect(provider)
    key = tpm_verify.parse_public(evidence.encryption_key_public).public_key
    vtpm.stop()
    vtpm.start()  # same NV state, new NULL-hierarchy seed: a reboot
    with pytest.raises(TpmKeyLost):
        provider.decrypt(key.encrypt(SECRET, PADDINGS["oaep-sha256"]))


def test_no_handles_are_left_after_collect(vtpm: swtpm.Swtpm) -> None:
    collect(provider_for(vtpm))
    assert swtpm.loaded_handles(vtpm.tcti) == []


def test_concurrent_callers_are_serialised(vtpm: swtpm.Swtpm) -> None:
    provider = provider_for(vtpm)
    results: list[AzureVtpmEvidence] = []
    threads = [threading.Thread(target=lambda: results.append(collect(provider))) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(results) == 3
    assert swtpm.loaded_handles(vtpm.tcti) == []


# --- failures ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("index", "message"),
    [(HCL_REPORT_INDEX, "HCL report"), (AIK_CERT_INDEX, "AIK certificate")],
)
def test_a_missing_nv_index_is_a_clear_error(vtpm: swtpm.Swtpm, index: int, message: str) -> None:
    swtpm.nv_remove(vtpm.tcti, index)
    with pytest.raises(TpmObjectMissing, match=f"{message} is not present in the TPM"):
        collect(provider_for(vtpm))


def test_no_aik_is_a_clear_error(vtpm: swtpm.Swtpm) -> None:
    swtpm.evict_aik(vtpm.tcti)
    with pytest.raises(TpmObjectMissing, match="the AIK is not present in the TPM"):
        collect(provider_for(vtpm))


def test_an_aik_certificate_for_another_key_is_refused(vtpm: swtpm.Swtpm) -> None:
    from cryptography.hazmat.primitives.asymmetric import rsa

    from gateway.errors import CertifiedKeyMismatch

    stranger = rsa.generate_private_key(65537, 2048).public_key()
    swtpm.nv_put(vtpm.tcti, AIK_CERT_INDEX, swtpm.issue_aik_certificate(stranger)[1])
    with pytest.raises(CertifiedKeyMismatch, match="AIK certificate is for another key"):
        collect(provider_for(vtpm))


def test_a_padded_aik_certificate_index_is_trimmed(vtpm: swtpm.Swtpm, golden: swtpm.Golden) -> None:
    certificate = golden.provisioned.aik_certificate
    swtpm.nv_put(vtpm.tcti, AIK_CERT_INDEX, certificate + bytes(64))
    assert collect(provider_for(vtpm)).aik_certificate == certificate


def test_garbage_in_the_aik_certificate_index_is_refused(vtpm: swtpm.Swtpm) -> None:
    swtpm.nv_put(vtpm.tcti, AIK_CERT_INDEX, b"\x30\x82\x00\x10" + bytes(60))
    with pytest.raises(EvidenceError, match="does not hold a DER certificate"):
        collect(provider_for(vtpm))


def test_garbage_in_the_hcl_index_is_refused(vtpm: swtpm.Swtpm) -> None:
    swtpm.put_hcl_report(vtpm.tcti, b"not an HCL report")
    with pytest.raises(MalformedHclReport, match="not HCLA"):
        collect(provider_for(vtpm))


def test_an_unreachable_tpm_is_a_clear_error(tmp_path: Path) -> None:
    config = AzureVtpmConfig(tcti=f"swtpm:path={tmp_path}/absent", lock_directory=tmp_path)
    with pytest.raises(TpmUnavailable, match="TPM could not be opened"):
        AzureVtpmProvider(config).collect(USER_DATA, NONCE)


def test_an_unwritable_lock_directory_is_a_clear_error(vtpm: swtpm.Swtpm, tmp_path: Path) -> None:
    provider = provider_for(vtpm, lock_directory=tmp_path / "absent")
    with pytest.raises(TpmUnavailable, match="lock file could not be opened"):
        provider.collect(USER_DATA, NONCE)


def test_decrypt_before_collect_is_refused() -> None:
    with pytest.raises(EvidenceError, match="collect evidence first"):
        AzureVtpmProvider(AzureVtpmConfig(tcti="swtpm:path=/nonexistent")).decrypt(b"x")


@pytest.mark.parametrize(
    ("user_data", "nonce", "message"),
    [
        (bytes(63), NONCE, "exactly 64 bytes"),
        (bytes(65), NONCE, "exactly 64 bytes"),
        (USER_DATA, b"", "1 to 64 bytes"),
        (USER_DATA, bytes(65), "1 to 64 bytes"),
    ],
)
def test_bad_inputs_are_refused(user_data: bytes, nonce: bytes, message: str) -> None:
    provider = AzureVtpmProvider(AzureVtpmConfig(tcti="swtpm:path=/nonexistent"))
    with pytest.raises((EvidenceError, ConfigError), match=message):
        provider.collect(user_data, nonce)


def test_an_unknown_decrypt_scheme_is_refused() -> None:
    provider = AzureVtpmProvider(AzureVtpmConfig(tcti="swtpm:path=/nonexistent"))
    with pytest.raises(EvidenceError, match="decrypt scheme"):
        provider.decrypt(b"x", "oaep-md5")


@pytest.mark.parametrize(
    "settings",
    [
        {"tcti": ""},
        {"pcrs": ()},
        {"pcrs": (1, 1)},
        {"pcrs": (24,)},
        {"report_refresh_timeout_s": -1.0},
        {"report_poll_interval_s": 0.0},
        {"report_lock_margin_s": -0.1},
    ],
)
def test_bad_settings_are_refused(settings: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        AzureVtpmConfig(**settings)  # type: ignore[arg-type]


def test_the_provider_settings_come_from_the_gateways() -> None:
    from gateway.config import load_settings

    environ = {
        "OHTTP_GATEWAY_DEV": "true",  # spares the MAA and KMS settings
        "OHTTP_GATEWAY_TPM_TCTI": "swtpm:path=/tmp/x/s",
        "OHTTP_GATEWAY_TPM_PCRS": "0,7,11",
        "OHTTP_GATEWAY_TPM_EVENT_LOG": "/tmp/log.bin",
        "OHTTP_GATEWAY_HCL_REFRESH_TIMEOUT": "0.5",
    }
    config = AzureVtpmConfig.from_settings(load_settings(environ=environ))
    assert config == AzureVtpmConfig(
        tcti="swtpm:path=/tmp/x/s",
        pcrs=(0, 7, 11),
        event_log_path=Path("/tmp/log.bin"),
        report_refresh_timeout_s=0.5,
    )
    defaults = load_settings(environ={"OHTTP_GATEWAY_DEV": "true"})
    assert AzureVtpmConfig.from_settings(defaults) == AzureVtpmConfig()


@pytest.mark.parametrize("pcrs", ["", "0,24", "1,1", "a"])
def test_bad_pcr_settings_are_refused(pcrs: str) -> None:
    from gateway.config import load_settings

    with pytest.raises(ConfigError, match="OHTTP_GATEWAY_TPM_PCRS"):
        load_settings(environ={"OHTTP_GATEWAY_DEV": "true", "OHTTP_GATEWAY_TPM_PCRS": pcrs})


def test_repr_hides_the_key_context(vtpm: swtpm.Swtpm) -> None:
    provider = provider_for(vtpm)
    collect(provider)
    assert vtpm.tcti in repr(provider)
    assert "saved_context" not in repr(provider._key)


def test_a_caller_waiting_too_long_for_the_tpm_gets_a_clear_error(
    vtpm: swtpm.Swtpm, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gateway.trust import tpm

    monkeypatch.setattr(tpm, "_LOCK_TIMEOUT_S", 0.1)
    errors: list[BaseException] = []

    def contender() -> None:
        try:
            collect(provider_for(vtpm))
        except TpmUnavailable as error:
            errors.append(error)

    with tpm.open_tpm(vtpm.tcti):  # hold the TPM, as a long decrypt would
        thread = threading.Thread(target=contender)
        thread.start()
        thread.join(5)
        # Without the lock the contender would sit blocked inside swtpm instead.
        assert not thread.is_alive()
    assert [str(e) for e in errors] == ["TPM is busy: another caller held it too long"]
