"""MAA's SevSnpVm route end to end: simulated evidence, the VCEK chain from the IMDS double, the
MAA emulator over HTTPS verified against the generated CA, and the token's signature checked
against the issuer's /certs. Then every kind of tampering, each refused with its own error."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from gateway.emulators.maa import MaaEmulator
from gateway.emulators.maa_signing import TokenSigner
from gateway.emulators.maa_verify import MaaPolicy, MaaVerifier
from gateway.emulators.thim import THIM_PATH, thim_app
from gateway.emulators.tls import EmulatorTls, ensure_tls
from gateway.errors import AttestationRefused
from gateway.trust.binding import report_data_for, user_data_for
from gateway.trust.evidence import EvidenceKind
from gateway.trust.evidence.sev_guest import ConfigfsTransport, SevGuestEvidenceProvider
from gateway.trust.evidence.simulated import (
    AZURE_GUEST_POLICY,
    ReportFields,
    SimulatedAmd,
    SimulatedEvidenceProvider,
)
from gateway.trust.jwk import rsa_public_jwk
from gateway.trust.maa import MaaClient, attest_evidence
from gateway.trust.maa_wire import SevSnpVmRequest, SnpEvidence
from gateway.trust.policy import SnpPolicy
from gateway.trust.snp import POLICY_DEBUG
from gateway.trust.thim import fetch_vcek_chain
from gateway.trust.token import AttestationToken, verify_token
from tests.support.emulators import Served, serve
from tests.trust.evidence.sev_guest_fakes import FakeConfigfsTsm

USER_DATA = user_data_for(b"application/ohttp-keys bytes", b"nonce-1")
RUNTIME = json.dumps({"keys": [], "user-data": USER_DATA.hex().upper()}).encode()


@pytest.fixture(scope="module")
def emulator_tls(tmp_path_factory: pytest.TempPathFactory) -> EmulatorTls:
    return ensure_tls(Path(tmp_path_factory.mktemp("maa-tls")))


class Maa:
    def __init__(self, served: Served, emulator: MaaEmulator) -> None:
        self.url, self.emulator = served.url, emulator
        assert served.tls is not None
        self.ca = served.tls.ca_path

    def client(self) -> MaaClient:
        return MaaClient(self.url, ca_bundle=self.ca)

    def attest(self, request: SevSnpVmRequest) -> str:
        async def go() -> str:
            async with self.client() as maa:
                return await maa.attest_sev_snp_vm(request)

        return asyncio.run(go())

    def refusal(self, request: SevSnpVmRequest) -> AttestationRefused:
        with pytest.raises(AttestationRefused) as caught:
            self.attest(request)
        return caught.value

    def verified(self, token: str) -> AttestationToken:
        """The team's token verifier, given the JWKS our client fetched from the pinned issuer."""

        async def keys() -> dict[str, Any]:
            async with self.client() as maa:
                return await maa.signing_keys()

        jwks = asyncio.run(keys())
        for entry in jwks["keys"]:
            assert "n" not in entry
            assert "e" not in entry
        return verify_token(token, jwks=jwks, issuer=self.url, now=time.time())

    def verified_claims(self, token: str) -> dict[str, Any]:
        return dict(self.verified(token).claims)


def _maa(amd: SimulatedAmd, tls: EmulatorTls, policy: MaaPolicy | None = None) -> Iterator[Maa]:
    holder: list[MaaEmulator] = []

    def make(url: str) -> object:
        holder.append(MaaEmulator(TokenSigner(url), MaaVerifier(amd.trust, policy)))
        return holder[0].app

    with serve(make, tls) as served:  # type: ignore[arg-type]
        yield Maa(served, holder[0])


@pytest.fixture(scope="module")
def maa(simulated_amd: SimulatedAmd, emulator_tls: EmulatorTls) -> Iterator[Maa]:
    yield from _maa(simulated_amd, emulator_tls)


def _request(
    amd: SimulatedAmd, fields: ReportFields | None = None, **changes: object
) -> SevSnpVmRequest:
    fields = fields or ReportFields()
    report = amd.report(replace(fields, report_data=report_data_for(RUNTIME)))
    request = SevSnpVmRequest(SnpEvidence(report, amd.cert_chain_pem()), RUNTIME, nonce="n-1")
    return replace(request, **changes)  # type: ignore[arg-type]


def test_full_flow_thim_chain_maa_token_verified_against_certs(
    simulated_amd: SimulatedAmd, maa: Maa
) -> None:
    evidence = SimulatedEvidenceProvider(simulated_amd).collect(USER_DATA)
    with serve(lambda url: thim_app(simulated_amd.thim_bundle()), None) as imds:
        chain = asyncio.run(fetch_vcek_chain(imds.url + THIM_PATH))
    assert chain.to_pem() == simulated_amd.cert_chain_pem()
    request = SevSnpVmRequest(
        SnpEvidence(evidence.snp_report, chain.to_pem()), evidence.runtime_data, nonce="nonce-42"
    )
    token = maa.attest(request)

    header = jwt.get_unverified_header(token)
    assert header == {"alg": "RS256", "jku": f"{maa.url}/certs", "kid": header["kid"], "typ": "JWT"}
    verified = maa.verified(token)
    assert verified.attestation_type == "sevsnpvm"
    assert verified.user_data == USER_DATA
    assert verified.sevsnpvm is not None
    assert verified.sevsnpvm.report_data == report_data_for(evidence.runtime_data)
    claims = dict(verified.claims)
    assert claims["iss"] == maa.url
    assert claims["exp"] - claims["iat"] == 28800  # type: ignore[operator]
    assert claims["nonce"] == "nonce-42"
    assert claims["x-ms-attestation-type"] == "sevsnpvm"
    assert claims["x-ms-compliance-status"] == "azure-compliant-cvm"
    assert claims["x-ms-runtime"] == json.loads(evidence.runtime_data)
    assert claims["x-ms-sevsnpvm-reportdata"] == report_data_for(evidence.runtime_data).hex()
    assert claims["x-ms-sevsnpvm-is-debuggable"] is False
    assert claims["x-ms-sevsnpvm-vmpl"] == 0
    assert claims["x-ms-sevsnpvm-microcode-svn"] == simulated_amd.chip.reported_tcb.microcode
    assert claims["x-ms-sevsnpvm-launchmeasurement"] == "5a" * 48
    assert claims["x-ms-ver"] == "1.0"


def test_claim_names_and_types_match_the_real_example_token(
    simulated_amd: SimulatedAmd, maa: Maa, example_token: str
) -> None:
    example = jwt.decode(example_token + ".", options={"verify_signature": False})
    ours = maa.verified_claims(maa.attest(_request(simulated_amd)))
    assert set(ours) == set(example)
    for name, value in example.items():
        assert type(ours[name]) is type(value), name
        if isinstance(value, str) and name.startswith("x-ms-sevsnpvm-"):
            assert len(ours[name]) == len(value), name  # type: ignore[arg-type]


def test_init_time_data_binds_host_data(simulated_amd: SimulatedAmd, maa: Maa) -> None:
    init = b'{"policy": "cce"}'
    fields = ReportFields(host_data=hashlib.sha256(init).digest())
    claims = maa.verified_claims(maa.attest(_request(simulated_amd, fields, init_time_data=init)))
    assert claims["x-ms-inittime"] == {"policy": "cce"}
    assert claims["x-ms-sevsnpvm-hostdata"] == hashlib.sha256(init).hexdigest()
    refused = maa.refusal(_request(simulated_amd, init_time_data=init))
    assert refused.detail == "InitTimeDataMismatch"


def _flip(data: bytes, offset: int) -> bytes:
    return data[:offset] + bytes([data[offset] ^ 0x01]) + data[offset + 1 :]


def _tampered_cert_pem(cert: x509.Certificate) -> bytes:
    der = cert.public_bytes(serialization.Encoding.DER)
    return x509.load_der_x509_certificate(_flip(der, len(der) - 5)).public_bytes(
        serialization.Encoding.PEM
    )


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


@pytest.mark.parametrize(
    ("tamper", "detail", "code"),
    [
        ("runtime data", "RuntimeDataMismatch", "AttestationFailure"),
        ("report body bit", "ReportSignatureInvalid", "AttestationFailure"),
        ("signature bit", "ReportSignatureInvalid", "AttestationFailure"),
        ("chip id", "ChipIdMismatch", "AttestationFailure"),
        ("tcb", "TcbMismatch", "AttestationFailure"),
        ("debug", "DebugNotAllowed", "PolicyEvaluationError"),
        ("vcek bit", "VcekSignatureInvalid", "AttestationFailure"),
        ("ask bit", "AskSignatureInvalid", "AttestationFailure"),
        ("wrong ark", "UntrustedRoot", "AttestationFailure"),
        ("not a report", "MalformedReport", "InvalidParameter"),
    ],
)
def test_tampering_is_refused_with_its_own_error(
    simulated_amd: SimulatedAmd,
    other_simulated_amd: SimulatedAmd,
    maa: Maa,
    tamper: str,
    detail: str,
    code: str,
) -> None:
    amd = simulated_amd
    good = _request(amd)
    report, chain = good.evidence.report, good.evidence.vcek_cert_chain
    vcek, ask, ark = _pem(amd.chip.vcek), _pem(amd.ask), _pem(amd.ark)
    if tamper == "runtime data":
        request = replace(good, runtime_data=json.dumps({"keys": [], "x": 1}).encode())
    elif tamper == "report body bit":
        request = replace(good, evidence=SnpEvidence(_flip(report, 0x90), chain))
    elif tamper == "signature bit":
        request = replace(good, evidence=SnpEvidence(_flip(report, 0x2A0), chain))
    elif tamper == "chip id":
        request = _request(amd, ReportFields(chip_id=bytes(64)))
    elif tamper == "tcb":
        request = _request(amd, ReportFields(reported_tcb=amd.chip.reported_tcb.raw + 1))
    elif tamper == "debug":
        request = _request(amd, ReportFields(policy=AZURE_GUEST_POLICY | POLICY_DEBUG))
    elif tamper == "vcek bit":
        tampered = _tampered_cert_pem(amd.chip.vcek) + ask + ark
        request = replace(good, evidence=SnpEvidence(report, tampered))
    elif tamper == "ask bit":
        tampered = vcek + _tampered_cert_pem(amd.ask) + ark
        request = replace(good, evidence=SnpEvidence(report, tampered))
    elif tamper == "wrong ark":
        request = _request(other_simulated_amd)
    else:
        request = replace(good, evidence=SnpEvidence(report[:100], chain))
    refused = maa.refusal(request)
    assert (refused.code, refused.detail) == (code, detail)


def test_debug_guest_passes_when_the_policy_allows_it(
    simulated_amd: SimulatedAmd, emulator_tls: EmulatorTls
) -> None:
    policy = MaaPolicy(snp=SnpPolicy(allow_debug=True))
    for lenient in _maa(simulated_amd, emulator_tls, policy):
        request = _request(simulated_amd, ReportFields(policy=AZURE_GUEST_POLICY | POLICY_DEBUG))
        claims = lenient.verified_claims(lenient.attest(request))
        assert claims["x-ms-sevsnpvm-is-debuggable"] is True


def test_real_amd_chain_is_refused_by_an_emulator_trusting_the_simulated_root(
    simulated_amd: SimulatedAmd, maa: Maa, milan_chain_pem: bytes
) -> None:
    good = _request(simulated_amd)
    request = replace(good, evidence=SnpEvidence(good.evidence.report, milan_chain_pem))
    assert maa.refusal(request).detail == "UntrustedRoot"


@pytest.mark.parametrize("kind", list(EvidenceKind))
def test_attest_evidence_takes_simulated_evidence_to_sev_snp_vm_with_thims_chain(
    simulated_amd: SimulatedAmd, maa: Maa, kind: EvidenceKind
) -> None:
    evidence = SimulatedEvidenceProvider(simulated_amd, kind).collect(USER_DATA)
    evidence = replace(evidence, cert_chain=b"")  # as on Azure: the chain comes from THIM

    async def go(thim_url: str) -> str:
        async with maa.client() as client:
            return await attest_evidence(client, evidence, thim_url=thim_url, nonce="n-7")

    with serve(lambda url: thim_app(simulated_amd.thim_bundle()), None) as imds:
        token = maa.verified(asyncio.run(go(imds.url + THIM_PATH)))
    assert token.attestation_type == "sevsnpvm"
    assert token.nonce == "n-7"
    assert token.user_data == USER_DATA
    assert token.runtime == json.loads(evidence.runtime_data)
    if kind is EvidenceKind.SEV_SNP:
        assert evidence.wrapping_key is not None
        assert token.runtime_keys == [rsa_public_jwk(evidence.wrapping_key.public_key())]


def test_sev_guest_evidence_from_a_fake_configfs_tsm_gets_a_token_naming_its_key(
    simulated_amd: SimulatedAmd, maa: Maa, tmp_path: Path
) -> None:
    fake = FakeConfigfsTsm(tmp_path / "tsm" / "report", simulated_amd)
    transport = ConfigfsTransport(
        fake.root, make_entry=fake.make_entry, remove_entry=fake.remove_entry
    )
    evidence = SevGuestEvidenceProvider(transport).collect(USER_DATA)

    async def go() -> str:
        async with maa.client() as client:
            return await attest_evidence(client, evidence, nonce="kata")

    token = maa.verified(asyncio.run(go()))
    assert evidence.wrapping_key is not None
    # What Key Vault's secure key release wraps to: the sev-guest provider's own key.
    assert token.runtime_keys == [rsa_public_jwk(evidence.wrapping_key.public_key())]
    assert token.user_data == USER_DATA
