"""MAA's AzureGuest route end to end: the azure-vtpm provider on a real swtpm (provisioned like an
Azure vTPM, its HCL report signed by the simulated AMD), the VCEK chain from the IMDS double, the
MAA emulator over HTTPS, the sealed answer opened by TPM2_RSA_Decrypt under the PCR policy, and
the token verified by the team's verifier. Then tampering with the TPM side, each refused."""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import json
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

from gateway.emulators.maa import MaaEmulator
from gateway.emulators.maa_signing import TokenSigner
from gateway.emulators.maa_verify import MaaPolicy, MaaVerifier
from gateway.emulators.thim import THIM_PATH, thim_app
from gateway.emulators.tls import EmulatorTls, ensure_tls
from gateway.errors import (
    AttestationRefused,
    CertifiedKeyMismatch,
    ConfigError,
    TpmPolicyFailed,
    UntrustedAik,
)
from gateway.trust import tpm_verify
from gateway.trust.evidence.azure_vtpm import AzureVtpmConfig, AzureVtpmEvidence, AzureVtpmProvider
from gateway.trust.evidence.simulated import SimulatedAmd
from gateway.trust.hcl import CLAIMS_OFFSET, HEADER_SIZE
from gateway.trust.jwk import b64url_decode
from gateway.trust.maa import DecryptInnerKey, MaaClient, attest_evidence, azure_guest_request
from gateway.trust.maa_wire import AzureGuestRequest, SnpEvidence, client_payload_for
from gateway.trust.thim import fetch_vcek_chain
from gateway.trust.token import AttestationToken, verify_token
from tests.support import swtpm
from tests.support.emulators import serve
from tests.support.fuzzing import assert_parses_or_raises_ours, cases

pytestmark = pytest.mark.skipif(swtpm.SWTPM is None, reason="swtpm is not installed")

NONCE = hashlib.sha256(b"maa azure guest nonce").digest()


@pytest.fixture(scope="module")
def emulator_tls(tmp_path_factory: pytest.TempPathFactory) -> EmulatorTls:
    return ensure_tls(Path(tmp_path_factory.mktemp("guest-tls")))


class Maa:
    def __init__(self, url: str, ca: Path, emulator: MaaEmulator) -> None:
        self.url, self.ca, self.emulator = url, ca, emulator

    def attest(self, request: AzureGuestRequest, provider: AzureVtpmProvider) -> AttestationToken:
        async def go() -> AttestationToken:
            async with MaaClient(self.url, ca_bundle=self.ca) as maa:
                token = await maa.attest_azure_guest(
                    request, lambda sealed_key: provider.decrypt(sealed_key, "rsaes")
                )
                jwks = await maa.signing_keys()
            return verify_token(token, jwks=jwks, issuer=self.url, now=time.time())

        return asyncio.run(go())

    def refusal(self, request: AzureGuestRequest, provider: AzureVtpmProvider) -> str:
        with pytest.raises(AttestationRefused) as caught:
            self.attest(request, provider)
        return caught.value.detail


@pytest.fixture(scope="module")
def maa(
    simulated_amd: SimulatedAmd, golden: swtpm.Golden, emulator_tls: EmulatorTls
) -> Iterator[Maa]:
    policy = MaaPolicy(aik_roots=(golden.provisioned.ca_certificate,))
    holder: list[MaaEmulator] = []

    def make(url: str) -> object:
        holder.append(MaaEmulator(TokenSigner(url), MaaVerifier(simulated_amd.trust, policy)))
        return holder[0].app

    with serve(make, emulator_tls) as served:  # type: ignore[arg-type]
        yield Maa(served.url, emulator_tls.ca_path, holder[0])


def _provider(vtpm: swtpm.Swtpm, **settings: Any) -> AzureVtpmProvider:
    settings.setdefault("event_log_path", Path("/nonexistent/binary_bios_measurements"))
    return AzureVtpmProvider(AzureVtpmConfig(tcti=vtpm.tcti, **settings))


def _collect(provider: AzureVtpmProvider) -> AzureVtpmEvidence:
    return provider.collect(swtpm.GOLDEN_USER_DATA, NONCE)


def test_full_flow_vtpm_thim_maa_sealed_token_opened_by_the_tpm(
    vtpm: swtpm.Swtpm, simulated_amd: SimulatedAmd, maa: Maa
) -> None:
    provider = _provider(vtpm)
    evidence = _collect(provider)
    with serve(lambda url: thim_app(simulated_amd.thim_bundle()), None) as imds:
        chain = asyncio.run(fetch_vcek_chain(imds.url + THIM_PATH))
    token = maa.attest(azure_guest_request(evidence, chain.to_pem()), provider)

    assert token.attestation_type == "azurevm"
    tee = token.isolation_tee
    assert tee is not None
    assert tee.attestation_type == "sevsnpvm"
    assert tee.compliance_status == "azure-compliant-cvm"
    assert tee.sevsnpvm is not None
    assert tee.sevsnpvm.is_debuggable is False
    assert token.user_data == swtpm.GOLDEN_USER_DATA  # from the HCL runtime claims
    assert token.claims["x-ms-azurevm-attested-pcrs"] == list(range(8))
    assert token.claims["x-ms-runtime"]["client-payload"] == {"nonce": NONCE.hex()}
    # The key in the token is the TPM-resident ephemeral key: what is wrapped to it, only the
    # TPM (under the PCR policy) can open.
    (key,) = token.runtime_keys
    assert key["kid"] == "TpmEphemeralEncryptionKey"
    public = rsa.RSAPublicNumbers(
        int.from_bytes(b64url_decode(key["e"]), "big"),
        int.from_bytes(b64url_decode(key["n"]), "big"),
    ).public_key()
    oaep = padding.OAEP(padding.MGF1(hashes.SHA256()), hashes.SHA256(), None)
    assert provider.decrypt(public.encrypt(b"released key", oaep)) == b"released key"


def test_attest_evidence_takes_vtpm_evidence_to_azure_guest(
    vtpm: swtpm.Swtpm, simulated_amd: SimulatedAmd, maa: Maa
) -> None:
    provider = _provider(vtpm)
    evidence = _collect(provider)
    assert evidence.cert_chain == b""  # the vTPM has no VCEK chain: THIM's is used

    async def go(thim_url: str, decrypt: DecryptInnerKey | None) -> str:
        async with MaaClient(maa.url, ca_bundle=maa.ca) as client:
            return await attest_evidence(
                client,
                evidence,
                thim_url=thim_url,
                decrypt_inner_key=decrypt,
            )

    with serve(lambda url: thim_app(simulated_amd.thim_bundle()), None) as imds:
        thim_url = imds.url + THIM_PATH
        token = asyncio.run(go(thim_url, lambda sealed: provider.decrypt(sealed, "rsaes")))
        with pytest.raises(ConfigError, match="decrypt"):
            asyncio.run(go(thim_url, None))
    assert token.count(".") == 2
    assert maa.emulator.requests_seen >= 1


def test_sealed_answer_does_not_open_after_a_pcr_changes(
    vtpm: swtpm.Swtpm, maa: Maa, simulated_amd: SimulatedAmd
) -> None:
    provider = _provider(vtpm)
    request = azure_guest_request(_collect(provider), simulated_amd.cert_chain_pem())
    swtpm.pcr_extend(vtpm.tcti, 7)
    with pytest.raises(TpmPolicyFailed):
        maa.attest(request, provider)


def _flip(data: bytes, offset: int) -> bytes:
    return data[:offset] + bytes([data[offset] ^ 0x01]) + data[offset + 1 :]


def _other_hcl_evidence(amd: SimulatedAmd) -> tuple[SnpEvidence, bytes]:
    """A genuine (simulated-AMD-signed) HCL report whose HCLAkPub is not this TPM's AIK."""
    other_ak = rsa.generate_private_key(65537, 2048).public_key()
    claims = swtpm.runtime_claims(other_ak, swtpm.GOLDEN_USER_DATA)
    hcl = amd.hcl_report(claims)
    assert hcl[CLAIMS_OFFSET:] == claims
    return SnpEvidence(hcl[HEADER_SIZE : HEADER_SIZE + 1184], amd.cert_chain_pem()), claims


@pytest.mark.parametrize(
    ("tamper", "detail"),
    [
        ("quote over other PCRs", "QuotePcrMismatch"),
        ("a PCR value", "QuotePcrMismatch"),
        ("the nonce", "TpmNonceMismatch"),
        ("the quote signature", "TpmSignatureInvalid"),
        ("the certified key", "CertifiedKeyMismatch"),
        ("the AIK certificate's issuer", "UntrustedAik"),
        ("the HCL AK binding", "CertifiedKeyMismatch"),
        ("the SNP report", "ReportSignatureInvalid"),
        ("the HCL runtime claims", "RuntimeDataMismatch"),
    ],
)
def test_tampering_is_refused_with_its_own_error(
    vtpm: swtpm.Swtpm, simulated_amd: SimulatedAmd, maa: Maa, tamper: str, detail: str
) -> None:
    pcrs = (0, 1, 2, 3) if tamper == "quote over other PCRs" else tuple(range(8))
    provider = _provider(vtpm, pcrs=pcrs)
    good = azure_guest_request(_collect(provider), simulated_amd.cert_chain_pem())
    tpm = good.tpm
    if tamper == "a PCR value":
        claimed = tuple((i, b"\x01" * 32 if i == 0 else value) for i, value in tpm.pcrs)
        request = replace(good, tpm=replace(tpm, pcrs=claimed))
    elif tamper == "the nonce":
        request = replace(good, client_payload=client_payload_for(b"another nonce"))
    elif tamper == "the quote signature":
        request = replace(good, tpm=replace(tpm, pcr_signature=_flip(tpm.pcr_signature, 7)))
    elif tamper == "the certified key":
        other = _provider(vtpm)
        other_key = _collect(other).encryption_key_public
        request = replace(good, tpm=replace(tpm, enc_key_pub=other_key))
    elif tamper == "the AIK certificate's issuer":
        aik = tpm_verify.parse_public(tpm.aik_pub).public_key
        _, foreign_cert = swtpm.issue_aik_certificate(aik)
        request = replace(good, tpm=replace(tpm, aik_cert=foreign_cert))
    elif tamper == "the HCL AK binding":
        snp, claims = _other_hcl_evidence(simulated_amd)
        request = replace(good, snp=snp, runtime_data=claims)
    elif tamper == "the SNP report":
        request = replace(
            good, snp=SnpEvidence(_flip(good.snp.report, 0x2A0), good.snp.vcek_cert_chain)
        )
    elif tamper == "the HCL runtime claims":
        request = replace(good, runtime_data=good.runtime_data.replace(b"true", b"false", 1))
    else:
        request = good
    assert maa.refusal(request, provider) == detail


def test_fuzz_azure_guest_decisions(
    vtpm: swtpm.Swtpm, simulated_amd: SimulatedAmd, golden: swtpm.Golden
) -> None:
    policy = MaaPolicy(aik_roots=(golden.provisioned.ca_certificate,))
    verifier = MaaVerifier(simulated_amd.trust, policy)
    good = azure_guest_request(_collect(_provider(vtpm)), simulated_amd.cert_chain_pem())
    assert verifier.azure_guest(good).claims["x-ms-attestation-type"] == "azurevm"
    names = [
        "aik_cert",
        "aik_pub",
        "pcr_quote",
        "pcr_signature",
        "enc_key_pub",
        "enc_key_certify_info",
        "enc_key_certify_info_signature",
    ]
    for index, name in enumerate(names):

        def decide(data: bytes, name: str = name) -> object:
            return verifier.azure_guest(replace(good, tpm=replace(good.tpm, **{name: data})))

        for data in cases([getattr(good.tpm, name)], count=60, seed=200 + index):
            assert_parses_or_raises_ours(decide, data)
    for data in cases([good.client_payload], count=60, seed=300):
        assert_parses_or_raises_ours(
            lambda d: verifier.azure_guest(replace(good, client_payload=d)), data
        )


def _aik_certificate(aik: rsa.RSAPublicKey, *, expired: bool) -> tuple[x509.Certificate, bytes]:
    """A vTPM CA and an AIK certificate from it, valid now or expired yesterday."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "vTPM CA")])
    now = datetime.datetime.now(datetime.UTC)
    start, end = now - datetime.timedelta(days=2), now + datetime.timedelta(days=1)
    if expired:
        end = now - datetime.timedelta(days=1)

    def build(subject: x509.Name, key: Any) -> x509.CertificateBuilder:
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(ca_name)
            .public_key(key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
        )

    ca = build(ca_name, ca_key.public_key()).sign(ca_key, hashes.SHA256())
    aik_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "AIK")])
    cert = build(aik_name, aik).sign(ca_key, hashes.SHA256())
    return ca, cert.public_bytes(serialization.Encoding.DER)


@pytest.mark.parametrize("expired", [False, True])
def test_aik_certificate_must_come_from_a_configured_vtpm_ca_and_be_valid(
    vtpm: swtpm.Swtpm, simulated_amd: SimulatedAmd, expired: bool
) -> None:
    good = azure_guest_request(_collect(_provider(vtpm)), simulated_amd.cert_chain_pem())
    aik = tpm_verify.parse_public(good.tpm.aik_pub).public_key
    ca, cert = _aik_certificate(aik, expired=expired)
    verifier = MaaVerifier(simulated_amd.trust, MaaPolicy(aik_roots=(ca,)))
    request = replace(good, tpm=replace(good.tpm, aik_cert=cert))
    if expired:
        with pytest.raises(UntrustedAik, match="validity"):
            verifier.azure_guest(request)
    else:
        assert verifier.azure_guest(request).claims["x-ms-attestation-type"] == "azurevm"


def test_hcl_claims_without_an_hcl_ak_are_refused(
    vtpm: swtpm.Swtpm, simulated_amd: SimulatedAmd
) -> None:
    good = azure_guest_request(_collect(_provider(vtpm)), simulated_amd.cert_chain_pem())
    claims = json.dumps({"keys": [], "user-data": swtpm.GOLDEN_USER_DATA.hex().upper()}).encode()
    hcl = simulated_amd.hcl_report(claims)
    snp = SnpEvidence(hcl[HEADER_SIZE : HEADER_SIZE + 1184], simulated_amd.cert_chain_pem())
    with pytest.raises(CertifiedKeyMismatch, match="HCLAkPub"):
        MaaVerifier(simulated_amd.trust).azure_guest(replace(good, snp=snp, runtime_data=claims))
