from __future__ import annotations

import base64
import json
from datetime import timedelta

import pytest
from cryptography.hazmat.primitives import serialization

from gateway.errors import (
    ChipIdMismatch,
    MalformedCertificates,
    MissingAmdRoot,
    UntrustedRoot,
)
from gateway.trust.amd import (
    AmdCertChain,
    AmdTrust,
    parse_cert_bundle,
    parse_pem_chain,
    parse_thim_bundle,
    pinned_root,
    verify_chain,
    verify_report,
)
from gateway.trust.evidence.simulated import SimulatedAmd
from gateway.trust.hcl import parse_hcl_report
from gateway.trust.snp import Product
from tests.trust.conftest import NOW

PEM = serialization.Encoding.PEM


def test_real_milan_chain_verifies_to_the_pinned_ark(milan_chain_pem: bytes) -> None:
    chain = parse_pem_chain(milan_chain_pem)
    verified = verify_chain(chain, AmdTrust.pinned(), now=NOW)
    assert verified.ark == pinned_root(Product.MILAN)
    ext = verified.extensions
    assert ext.product is Product.MILAN
    assert ext.product_name == "Milan-B0"
    assert ext.struct_version == 0
    assert ext.tcb.raw == 0x7308000000000003
    assert len(ext.hwid) == 64


def test_real_chain_verifies_without_the_ark_in_the_bundle(milan_chain_pem: bytes) -> None:
    chain = parse_pem_chain(milan_chain_pem)
    verify_chain(AmdCertChain(chain.vcek, chain.ask, None), AmdTrust.pinned(), now=NOW)


def test_real_report_is_refused_with_a_vcek_of_another_chip(
    hcl_report_bytes: bytes, milan_chain_pem: bytes
) -> None:
    # The fixture VCEK belongs to a different chip than the fixture report: same TCB (0x73..03),
    # different hwID. Exactly this must be refused, before any signature is tried.
    report = parse_hcl_report(hcl_report_bytes).snp
    chain = parse_pem_chain(milan_chain_pem)
    assert report.reported_tcb.raw == 0x7308000000000003
    with pytest.raises(ChipIdMismatch):
        verify_report(report, chain, AmdTrust.pinned(), now=NOW)


def test_real_chain_outside_validity_is_refused(milan_chain_pem: bytes) -> None:
    from gateway.errors import CertificateNotValidNow

    chain = parse_pem_chain(milan_chain_pem)
    later = chain.vcek.not_valid_after_utc + timedelta(seconds=1)
    with pytest.raises(CertificateNotValidNow):
        verify_chain(chain, AmdTrust.pinned(), now=later)


def test_thim_json_bundle(milan_chain_pem: bytes) -> None:
    chain = parse_pem_chain(milan_chain_pem)
    thim = json.dumps(
        {
            "vcekCert": chain.vcek.public_bytes(PEM).decode(),
            "tcbm": "7308000000000003",
            "certificateChain": (
                chain.ask.public_bytes(PEM) + chain.ark.public_bytes(PEM)
            ).decode(),  # type: ignore[union-attr]
            "cacheControl": "86400",
        }
    ).encode()
    for data in (thim, base64.b64encode(thim)):  # ACI/Kata deliver it base64-wrapped
        parsed = parse_cert_bundle(data)
        assert parsed.tcbm == 0x7308000000000003
        assert parsed.vcek == chain.vcek
        assert parsed.ark == chain.ark
        verify_chain(parsed, AmdTrust.pinned(), now=NOW)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"{}",
        b"[]",
        b'{"vcekCert": 1, "certificateChain": ""}',
        b'{"vcekCert": "", "certificateChain": ""}',
        b"not base64 !",
        b"-----BEGIN CERTIFICATE-----",
    ],
)
def test_malformed_bundles(data: bytes) -> None:
    with pytest.raises(MalformedCertificates):
        parse_cert_bundle(data)


def test_bad_tcbm_is_refused(simulated_amd: SimulatedAmd) -> None:
    document = json.loads(simulated_amd.thim_bundle())
    document["tcbm"] = "73080000000000zz"
    with pytest.raises(MalformedCertificates):
        parse_thim_bundle(json.dumps(document).encode())


def test_bundle_roles_are_sorted_by_subject(milan_chain_pem: bytes) -> None:
    chain = parse_pem_chain(milan_chain_pem)
    reordered = b"".join(c.public_bytes(PEM) for c in (chain.ark, chain.vcek, chain.ask))  # type: ignore[union-attr]
    assert parse_pem_chain(reordered) == chain
    with pytest.raises(MalformedCertificates):
        parse_pem_chain(milan_chain_pem + chain.vcek.public_bytes(PEM))  # two VCEKs
    with pytest.raises(MalformedCertificates):
        parse_pem_chain(chain.ark.public_bytes(PEM))  # type: ignore[union-attr]


@pytest.mark.parametrize("product", [Product.GENOA, Product.TURIN])
def test_missing_roots_are_named(product: Product) -> None:
    with pytest.raises(MissingAmdRoot, match=f"ARK-{product.value}"):
        pinned_root(product)


def test_genoa_evidence_names_the_missing_root() -> None:
    genoa = SimulatedAmd.generate(Product.GENOA, rsa_bits=2048)
    chain = genoa.cert_chain()
    with pytest.raises(MissingAmdRoot, match="ARK-Genoa"):
        verify_chain(AmdCertChain(chain.vcek, chain.ask, None), AmdTrust.pinned(), now=NOW)
    # a simulated ARK-Genoa sent along is not AMD's either
    with pytest.raises(MissingAmdRoot):
        verify_chain(chain, AmdTrust.pinned(), now=NOW)
    verify_chain(chain, genoa.trust, now=NOW)


def test_simulated_chain_is_refused_by_amds_root(simulated_amd: SimulatedAmd) -> None:
    with pytest.raises(UntrustedRoot):
        verify_chain(simulated_amd.cert_chain(), AmdTrust.pinned(), now=NOW)
    chain = simulated_amd.cert_chain()
    with pytest.raises(UntrustedRoot):  # and without its ARK, no name matches AMD's
        verify_chain(AmdCertChain(chain.vcek, chain.ask, None), AmdTrust.pinned(), now=NOW)


def test_to_pem_round_trip(simulated_amd: SimulatedAmd) -> None:
    chain = simulated_amd.cert_chain()
    assert parse_pem_chain(chain.to_pem()) == chain


def test_certificate_with_an_invalid_version_is_malformed(milan_chain_pem: bytes) -> None:
    # found by the long fuzz run: cryptography raises InvalidVersion, not ValueError
    der = parse_pem_chain(milan_chain_pem).vcek.public_bytes(serialization.Encoding.DER)
    version = der.index(bytes.fromhex("a003020102"))
    broken = der[: version + 4] + b"\x42" + der[version + 5 :]
    pem = (
        b"-----BEGIN CERTIFICATE-----\n"
        + base64.encodebytes(broken)
        + b"-----END CERTIFICATE-----\n"
    )
    with pytest.raises(MalformedCertificates):
        parse_pem_chain(pem)


def test_a_shipped_root_that_does_not_match_its_pin_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import gateway.trust.amd as amd

    monkeypatch.setitem(amd._SHIPPED_ROOTS, Product.MILAN, ("ark-milan.pem", "00" * 32))
    with pytest.raises(UntrustedRoot, match="pinned hash"):
        pinned_root(Product.MILAN)


def test_pinned_ark_milan_is_amds() -> None:
    ark = pinned_root(Product.MILAN)
    assert ark.subject == ark.issuer
    assert ark.subject.rfc4514_string() == (
        "CN=ARK-Milan,O=Advanced Micro Devices,ST=CA,L=Santa Clara,C=US,OU=Engineering"
    )
    assert ark.not_valid_after_utc.year == 2045
