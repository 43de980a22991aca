"""Every kind of tampering is refused, each with its own error class and fixed message.

One table: (kind, how the evidence or token is tampered with, the error expected). Each case
starts from evidence or a token that verifies (checked in ``test_untampered_inputs_verify``)
and changes exactly one thing.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from gateway.errors import (
    AskSignatureInvalid,
    CertificateNotValidNow,
    ChipIdMismatch,
    DebugNotAllowed,
    GatewayError,
    MeasurementNotAllowed,
    MigrationAgentNotAllowed,
    ReportDataMismatch,
    ReportSignatureInvalid,
    RuntimeDataMismatch,
    SigningKeyNotAllowed,
    TcbBelowMinimum,
    TcbMismatch,
    TokenAlgorithmNotAllowed,
    TokenExpired,
    TokenIssuerMismatch,
    TokenKeySourceMismatch,
    TokenKeyUnknown,
    TokenNotYetValid,
    TokenSignatureInvalid,
    UnsignedToken,
    UnsupportedHclReportType,
    UntrustedRoot,
    VcekSignatureInvalid,
    VmplNotAllowed,
)
from gateway.trust.amd import (
    AmdCertChain,
    AmdTrust,
    load_pem_certificates,
    parse_pem_chain,
    verify_chain,
)
from gateway.trust.binding import user_data_for
from gateway.trust.evidence.simulated import ReportFields, SimulatedAmd, hcl_runtime_claims
from gateway.trust.hcl import IGVM_REQUEST_OFFSET
from gateway.trust.policy import SnpPolicy
from gateway.trust.snp import POLICY_DEBUG, POLICY_MIGRATE_MA, TcbLayout, TcbVersion
from gateway.trust.token import verify_token
from gateway.trust.verify import verify_hcl_evidence
from tests.trust.conftest import DATA, NOW
from tests.trust.maa_signer import ISSUER, MaaSigner, example_claims
from tests.trust.maa_signer import NOW as TOKEN_NOW

USER_DATA = user_data_for(b"served key configs", b"nonce-1")
DER = serialization.Encoding.DER


@dataclass
class Setup:
    amd: SimulatedAmd
    other_amd: SimulatedAmd
    claims: bytes
    signer: MaaSigner
    stranger: MaaSigner

    def hcl(self, fields: ReportFields | None = None, claims: bytes | None = None) -> bytes:
        return self.amd.hcl_report(claims or self.claims, fields)

    def verify(
        self,
        report: bytes | None = None,
        chain: AmdCertChain | None = None,
        *,
        trust: AmdTrust | None = None,
        user_data: bytes = USER_DATA,
        policy: SnpPolicy | None = None,
    ) -> None:
        verify_hcl_evidence(
            report or self.hcl(),
            chain or self.amd.cert_chain(),
            trust=trust or self.amd.trust,
            now=NOW,
            policy=policy,
            expected_user_data=user_data,
        )

    def token(self, claims: dict[str, Any] | None = None, **header: Any) -> str:
        return self.signer.sign(claims or example_claims(), **header)

    def verify_token(self, token: str) -> None:
        verify_token(token, jwks=self.signer.jwks(), issuer=ISSUER, now=TOKEN_NOW)


@pytest.fixture(scope="module")
def setup(simulated_amd: SimulatedAmd, other_simulated_amd: SimulatedAmd) -> Setup:
    return Setup(
        simulated_amd,
        other_simulated_amd,
        hcl_runtime_claims(USER_DATA),
        MaaSigner.generate(),
        MaaSigner.generate(),
    )


def flip(data: bytes, offset: int, bit: int = 0) -> bytes:
    buf = bytearray(data)
    buf[offset] ^= 1 << bit
    return bytes(buf)


def flip_in_cert(cert: x509.Certificate, needle: bytes) -> x509.Certificate:
    der = flip(cert.public_bytes(DER), cert.public_bytes(DER).rindex(needle) + len(needle) - 1)
    (flipped,) = load_pem_certificates(
        b"-----BEGIN CERTIFICATE-----\n" + base64.encodebytes(der) + b"-----END CERTIFICATE-----\n"
    )
    return flipped


# --- the tamperings ---------------------------------------------------------------------------


def report_body_bit_flip(s: Setup) -> None:
    s.verify(flip(s.hcl(), 0x20 + 0x90))  # a bit of MEASUREMENT


def report_signature_bit_flip(s: Setup) -> None:
    s.verify(flip(s.hcl(), 0x20 + 0x2A0 + 5, 3))  # a bit of R


def vcek_bit_flip(s: Setup) -> None:
    chain = s.amd.cert_chain()
    s.verify(chain=replace(chain, vcek=flip_in_cert(chain.vcek, s.amd.chip.chip_id[:64])))


def ask_bit_flip(s: Setup) -> None:
    chain = s.amd.cert_chain()
    s.verify(chain=replace(chain, ask=flip_in_cert(chain.ask, b"SEV-Milan")))  # type: ignore[arg-type]


def wrong_ark(s: Setup) -> None:
    s.verify(trust=s.other_amd.trust)


def amd_pinned_root_for_simulated_evidence(s: Setup) -> None:
    s.verify(trust=AmdTrust.pinned())


def wrong_chip_id(s: Setup) -> None:
    other_chip = s.amd.issue_chip()  # same TCB, another chip
    s.verify(chain=s.amd.cert_chain(other_chip))


def tcb_mismatch(s: Setup) -> None:
    newer = TcbVersion.from_components(
        TcbLayout.ZEN3_ZEN4, bootloader=3, tee=0, snp=9, microcode=115
    )
    same_chip = s.amd.issue_chip(chip_id=s.amd.chip.chip_id, reported_tcb=newer)
    s.verify(chain=s.amd.cert_chain(same_chip))


def debug_policy(s: Setup) -> None:
    s.verify(s.hcl(ReportFields(policy=ReportFields().policy | POLICY_DEBUG)))


def migration_agent_policy(s: Setup) -> None:
    s.verify(s.hcl(ReportFields(policy=ReportFields().policy | POLICY_MIGRATE_MA)))


def vmpl(s: Setup) -> None:
    s.verify(s.hcl(ReportFields(vmpl=2)))


def tcb_below_minimum(s: Setup) -> None:
    minimum = TcbVersion.from_components(TcbLayout.ZEN3_ZEN4, snp=22)
    s.verify(policy=SnpPolicy(minimum_tcb=minimum))


def measurement_not_allowed(s: Setup) -> None:
    s.verify(policy=SnpPolicy(measurements=frozenset({bytes(48)})))


def vlek_signed(s: Setup) -> None:
    s.verify(s.hcl(ReportFields(signer_info=1 << 2)))


def wrong_runtime_data(s: Setup) -> None:
    report = s.hcl()
    i = report.index(b'"secure-boot":true')
    s.verify(report[:i] + b'"secure-boot":1   ' + report[i + 18 :])


def wrong_nonce(s: Setup) -> None:
    s.verify(user_data=user_data_for(b"served key configs", b"nonce-2"))


def expired_vcek(s: Setup) -> None:
    verify_chain(
        s.amd.cert_chain(), s.amd.trust, now=s.amd.chip.vcek.not_valid_after_utc + timedelta(1)
    )


def tdx_report(s: Setup) -> None:
    buf = bytearray(s.hcl())
    buf[IGVM_REQUEST_OFFSET + 8] = 4
    s.verify(bytes(buf))


def real_vcek_bit_flip(s: Setup) -> None:
    chain = parse_pem_chain((DATA / "amd-milan-vcek-ask-ark.pem").read_bytes())
    verify_chain(
        replace(chain, vcek=flip_in_cert(chain.vcek, b"Milan-B0")), AmdTrust.pinned(), now=NOW
    )


def expired_token(s: Setup) -> None:
    s.verify_token(s.token(example_claims(exp=TOKEN_NOW - 3600)))


def future_nbf(s: Setup) -> None:
    s.verify_token(s.token(example_claims(nbf=TOKEN_NOW + 3600)))


def wrong_issuer(s: Setup) -> None:
    s.verify_token(s.token(example_claims(iss="https://attacker.attest.azure.net"), jku=None))


def alg_none(s: Setup) -> None:
    header = base64.urlsafe_b64encode(json.dumps({"alg": "none", "kid": s.signer.kid}).encode())
    payload = base64.urlsafe_b64encode(json.dumps(example_claims()).encode())
    s.verify_token(f"{header.decode().rstrip('=')}.{payload.decode().rstrip('=')}.")


def alg_hs256(s: Setup) -> None:
    s.verify_token(jwt.encode(example_claims(), b"k" * 32, "HS256", {"kid": s.signer.kid}))


def unknown_kid(s: Setup) -> None:
    s.verify_token(s.token(kid="rotated-away"))


def key_not_in_certs(s: Setup) -> None:
    s.verify_token(s.stranger.sign(example_claims()))


def jku_elsewhere(s: Setup) -> None:
    s.verify_token(s.token(jku="https://attacker.example/certs"))


CASES: list[tuple[Callable[[Setup], None], type[GatewayError]]] = [
    (report_body_bit_flip, ReportSignatureInvalid),
    # a flipped signature and a flipped body are the same failure to a verifier
    (report_signature_bit_flip, ReportSignatureInvalid),
    (vcek_bit_flip, VcekSignatureInvalid),
    (real_vcek_bit_flip, VcekSignatureInvalid),
    (ask_bit_flip, AskSignatureInvalid),
    (wrong_ark, UntrustedRoot),
    (amd_pinned_root_for_simulated_evidence, UntrustedRoot),
    (wrong_chip_id, ChipIdMismatch),
    (tcb_mismatch, TcbMismatch),
    (debug_policy, DebugNotAllowed),
    (migration_agent_policy, MigrationAgentNotAllowed),
    (vmpl, VmplNotAllowed),
    (tcb_below_minimum, TcbBelowMinimum),
    (measurement_not_allowed, MeasurementNotAllowed),
    (vlek_signed, SigningKeyNotAllowed),
    (wrong_runtime_data, RuntimeDataMismatch),
    (wrong_nonce, ReportDataMismatch),
    (expired_vcek, CertificateNotValidNow),
    (tdx_report, UnsupportedHclReportType),
    (expired_token, TokenExpired),
    (future_nbf, TokenNotYetValid),
    (wrong_issuer, TokenIssuerMismatch),
    (alg_none, UnsignedToken),
    (alg_hs256, TokenAlgorithmNotAllowed),
    (unknown_kid, TokenKeyUnknown),
    (key_not_in_certs, TokenSignatureInvalid),
    (jku_elsewhere, TokenKeySourceMismatch),
]


def test_untampered_inputs_verify(setup: Setup) -> None:
    setup.verify()
    setup.verify_token(setup.token())


@pytest.mark.parametrize(("tamper", "error"), CASES, ids=[c[0].__name__ for c in CASES])
def test_tampering_is_refused(
    setup: Setup, tamper: Callable[[Setup], None], error: type[GatewayError]
) -> None:
    with pytest.raises(GatewayError) as raised:
        tamper(setup)
    assert type(raised.value) is error  # exactly this class, not a parent
    assert raised.value.message == error.default_message() or raised.value.message


def test_each_kind_has_its_own_error() -> None:
    errors = {error for _, error in CASES}
    assert len(errors) >= 15
    messages = {error.default_message() for error in errors}
    assert len(messages) == len(errors)  # distinct, fixed messages
