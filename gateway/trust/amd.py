"""AMD's VCEK certificate chain and the SNP report signature (pure).

Accepts: a PEM chain (VCEK, then SEV-<product> ASK, optionally the ARK, in any order), THIM's
JSON bundle ``{"vcekCert", "certificateChain", "tcbm", ...}`` (also base64-wrapped, as ACI and
Kata deliver it), and a parsed :class:`~gateway.trust.snp.SnpReport`.

Guarantees, in :func:`verify_report` order:

1. the ARK is one of the roots in the :class:`AmdTrust` (by exact DER) and validly
   self-signed; the default trust pins AMD's real ARK-Milan shipped in ``roots/`` and checked
   against a hard-coded SHA-256. Genoa and Turin roots are not shipped here: evidence for them
   raises :class:`MissingAmdRoot` naming the root;
2. ARK → ASK → VCEK each RSASSA-PSS, SHA-384, MGF1-SHA-384, salt length 48, with issuer
   names chained, and every certificate valid at the caller's ``now``;
3. the report signature: ECDSA P-384/SHA-384 over bytes 0x000..0x29F with the VCEK key, R and S
   read as 72-byte little-endian fields, the rest of the signature area zero;
4. the VCEK's AMD extensions (OIDs 1.3.6.1.4.1.3704.1.3.x for the TCB, .4 for hwID) equal the
   report's REPORTED_TCB and CHIP_ID.

Each failure raises its own :class:`CertificateChainError` / :class:`VerificationError`
subclass. Never does: I/O (fetching certificates is the MAA/THIM client's job), or accept a
certificate because of its name alone.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.utils import CryptographyDeprecationWarning
from cryptography.x509.oid import NameOID, SignatureAlgorithmOID

from gateway.errors import (
    AskSignatureInvalid,
    CertificateChainError,
    CertificateNotValidNow,
    ChipIdMismatch,
    MalformedCertificates,
    MissingAmdRoot,
    ReportSignatureInvalid,
    RootSignatureInvalid,
    SigningKeyNotAllowed,
    TcbMismatch,
    UntrustedRoot,
    VcekExtensionsInvalid,
    VcekSignatureInvalid,
)
from gateway.trust.snp import (
    SIGNATURE_ALGO_ECDSA_P384_SHA384,
    SIGNATURE_COMPONENT_SIZE,
    SIGNED_LENGTH,
    Product,
    SigningKey,
    SnpReport,
    TcbLayout,
    TcbVersion,
)

AMD_OID = "1.3.6.1.4.1.3704.1."
OID_STRUCT_VERSION = AMD_OID + "1"
OID_PRODUCT_NAME = AMD_OID + "2"
OID_HWID = AMD_OID + "4"
# TCB SPL extensions: .3.1 bootloader, .3.2 TEE, .3.3 SNP, .3.4-.3.7 spl_4..7, .3.8 microcode,
# .3.9 FMC (Turin)
OID_SPL = {
    name: AMD_OID + "3." + str(n)
    for n, name in enumerate(
        ("bootloader", "tee", "snp", "spl4", "spl5", "spl6", "spl7", "microcode", "fmc"), start=1
    )
}

# Byte position of each SPL extension in a TCB_VERSION, per layout.
_VCEK_TCB_BYTES = {
    TcbLayout.ZEN3_ZEN4: {
        "bootloader": 0,
        "tee": 1,
        "spl4": 2,
        "spl5": 3,
        "spl6": 4,
        "spl7": 5,
        "snp": 6,
        "microcode": 7,
    },
    TcbLayout.ZEN5: {"fmc": 0, "bootloader": 1, "tee": 2, "snp": 3, "microcode": 7},
}

PSS_SHA384 = padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=48)

# AMD's published roots we ship, pinned by the SHA-256 of their DER.
_SHIPPED_ROOTS = {
    Product.MILAN: (
        "ark-milan.pem",
        "69d063b45344d26a2e94e1f4210de49ef555308287d4c174445c95639a540bcd",
    ),
}


def load_pem_certificates(data: bytes) -> list[x509.Certificate]:
    # AMD's VCEKs have serial number 0, which cryptography deprecates but still parses.
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message="Parsed a serial number", category=CryptographyDeprecationWarning
        )
        try:
            return x509.load_pem_x509_certificates(data)
        except (ValueError, x509.InvalidVersion) as error:
            raise MalformedCertificates() from error


def self_signed(data: bytes) -> list[x509.Certificate]:
    """The self-signed certificates (candidate ARKs) of a PEM file; none is an error."""
    roots = [c for c in load_pem_certificates(data) if c.subject == c.issuer]
    if not roots:
        raise MalformedCertificates("no self-signed certificate found")
    return roots


@dataclass(frozen=True)
class AmdCertChain:
    """The certificates that came with the evidence: the VCEK and whatever of ASK/ARK was sent."""

    vcek: x509.Certificate
    ask: x509.Certificate | None
    ark: x509.Certificate | None
    tcbm: int | None = None  # THIM's hex TCB of the VCEK, informational

    def to_pem(self) -> bytes:
        """VCEK ‖ ASK ‖ ARK as PEM: MAA's ``VcekCertChain``."""
        certs = [c for c in (self.vcek, self.ask, self.ark) if c is not None]
        return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def _common_name(cert: x509.Certificate, *, issuer: bool = False) -> str:
    try:  # cryptography parses names lazily
        name = cert.issuer if issuer else cert.subject
        attrs = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    except ValueError as error:
        raise MalformedCertificates() from error
    value = attrs[0].value if attrs else ""
    return value if isinstance(value, str) else ""


def parse_pem_chain(data: bytes) -> AmdCertChain:
    """Sort a PEM bundle into VCEK / ASK / ARK by role (subject CN), not by order."""
    certs = load_pem_certificates(data)
    vcek = ask = ark = None
    for cert in certs:
        cn = _common_name(cert)
        if cn == "SEV-VCEK" and vcek is None:
            vcek = cert
        elif cn.startswith("ARK-") and ark is None:
            ark = cert
        elif cn.startswith(("SEV-", "ASK-")) and cn != "SEV-VCEK" and ask is None:
            ask = cert
        else:
            raise MalformedCertificates("certificate bundle has an unexpected certificate")
    if vcek is None:
        raise MalformedCertificates("certificate bundle has no VCEK")
    return AmdCertChain(vcek=vcek, ask=ask, ark=ark)


def parse_thim_bundle(data: bytes) -> AmdCertChain:
    """Parse THIM's ``/metadata/THIM/amd/certification`` JSON (or its base64 form)."""
    document = _json_object(data)
    if document is None:
        try:
            document = _json_object(base64.b64decode(data, validate=True))
        except (binascii.Error, ValueError):
            document = None
    if document is None:
        raise MalformedCertificates("THIM certificate bundle is not a JSON object")
    vcek_pem, chain_pem = document.get("vcekCert"), document.get("certificateChain")
    if not isinstance(vcek_pem, str) or not isinstance(chain_pem, str):
        raise MalformedCertificates("THIM certificate bundle lacks vcekCert or certificateChain")
    chain = parse_pem_chain((vcek_pem + "\n" + chain_pem).encode("ascii", "replace"))
    return AmdCertChain(chain.vcek, chain.ask, chain.ark, tcbm=_tcbm(document.get("tcbm")))


def _json_object(data: bytes) -> dict[str, Any] | None:
    try:
        document = json.loads(data)
    except (ValueError, RecursionError):
        return None
    return document if isinstance(document, dict) else None


def _tcbm(value: object) -> int | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) != 16:
        raise MalformedCertificates("THIM tcbm is not 16 hex digits")
    try:
        return int(value, 16)
    except ValueError as error:
        raise MalformedCertificates("THIM tcbm is not 16 hex digits") from error


def parse_cert_bundle(data: bytes) -> AmdCertChain:
    """A PEM chain or THIM's JSON, whichever ``data`` is."""
    if b"-----BEGIN CERTIFICATE-----" in data and not data.lstrip().startswith(b"{"):
        return parse_pem_chain(data)
    return parse_thim_bundle(data)


# --- roots ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class AmdTrust:
    """The ARKs a verifier accepts: ``pinned()`` is AMD's; simulated chains bring their own."""

    roots: tuple[x509.Certificate, ...]
    amd_pinned: bool = False

    @classmethod
    def pinned(cls) -> AmdTrust:
        return cls(roots=tuple(pinned_root(p) for p in _SHIPPED_ROOTS), amd_pinned=True)

    @classmethod
    def of(cls, roots: Iterable[x509.Certificate]) -> AmdTrust:
        return cls(roots=tuple(roots))

    def find(self, cert: x509.Certificate) -> x509.Certificate | None:
        der = cert.public_bytes(serialization.Encoding.DER)
        return next(
            (r for r in self.roots if r.public_bytes(serialization.Encoding.DER) == der), None
        )

    def by_subject(self, name: x509.Name) -> x509.Certificate | None:
        return next((r for r in self.roots if r.subject == name), None)


def pinned_root(product: Product) -> x509.Certificate:
    """AMD's ARK for ``product``, from the package, checked against its pinned hash."""
    entry = _SHIPPED_ROOTS.get(product)
    if entry is None:
        raise MissingAmdRoot(_missing_root_message(product))
    filename, sha256 = entry
    pem = resources.files("gateway.trust").joinpath("roots", filename).read_bytes()
    (root,) = load_pem_certificates(pem)
    digest = hashlib.sha256(root.public_bytes(serialization.Encoding.DER)).hexdigest()
    if not hmac.compare_digest(digest, sha256):
        raise UntrustedRoot("shipped AMD root does not match its pinned hash")
    return root


def _missing_root_message(product: Product) -> str:
    return {
        Product.MILAN: "no pinned ARK-Milan root is shipped",
        Product.GENOA: "no pinned ARK-Genoa root is shipped; AMD Genoa evidence cannot be verified",
        Product.TURIN: "no pinned ARK-Turin root is shipped; AMD Turin evidence cannot be verified",
    }[product]


# --- the chain ------------------------------------------------------------------------------


@dataclass(frozen=True)
class VcekExtensions:
    struct_version: int | None
    product_name: str | None
    product: Product | None
    tcb: TcbVersion
    hwid: bytes

    def to_json(self) -> dict[str, Any]:
        return {
            "struct_version": self.struct_version,
            "product_name": self.product_name,
            "tcb": self.tcb.to_json(),
            "hwid": self.hwid.hex(),
        }


@dataclass(frozen=True)
class VerifiedChain:
    ark: x509.Certificate
    ask: x509.Certificate
    vcek: x509.Certificate
    extensions: VcekExtensions


def verify_chain(chain: AmdCertChain, trust: AmdTrust, *, now: datetime) -> VerifiedChain:
    """ARK pinned and self-signed → ASK → VCEK, all RSASSA-PSS SHA-384 salt 48, valid at ``now``."""
    if chain.ask is None:
        raise MalformedCertificates("certificate chain has no ASK")
    ark = _trusted_ark(chain.ark, chain.ask, trust)
    _verify_pss(ark, ark, RootSignatureInvalid)
    _verify_pss(ark, chain.ask, AskSignatureInvalid)
    _verify_pss(chain.ask, chain.vcek, VcekSignatureInvalid)
    for cert in (ark, chain.ask, chain.vcek):
        if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
            raise CertificateNotValidNow()
    return VerifiedChain(ark, chain.ask, chain.vcek, vcek_extensions(chain.vcek))


def _trusted_ark(
    sent: x509.Certificate | None, ask: x509.Certificate, trust: AmdTrust
) -> x509.Certificate:
    ark = trust.find(sent) if sent is not None else trust.by_subject(ask.issuer)
    if ark is not None:
        return ark
    product = Product.from_product_name(_common_name(ask, issuer=True).removeprefix("ARK-"))
    if trust.amd_pinned and product is not None and product not in _SHIPPED_ROOTS:
        raise MissingAmdRoot(_missing_root_message(product))
    raise UntrustedRoot()


def _verify_pss(
    issuer: x509.Certificate, cert: x509.Certificate, error: type[CertificateChainError]
) -> None:
    try:  # cryptography parses names, keys and algorithms lazily
        key = issuer.public_key()
        refused = (
            cert.issuer != issuer.subject
            or cert.signature_algorithm_oid != SignatureAlgorithmOID.RSASSA_PSS
            or not isinstance(cert.signature_hash_algorithm, hashes.SHA384)
            or not isinstance(key, rsa.RSAPublicKey)
        )
    except (ValueError, x509.UnsupportedGeneralNameType) as failure:
        raise error() from failure
    if refused or not isinstance(key, rsa.RSAPublicKey):
        raise error()
    try:
        key.verify(cert.signature, cert.tbs_certificate_bytes, PSS_SHA384, hashes.SHA384())
    except InvalidSignature as failure:
        raise error() from failure


def vcek_extensions(vcek: x509.Certificate) -> VcekExtensions:
    """Read the AMD TCB and hwID extensions of a VCEK."""
    try:  # cryptography parses extensions lazily
        extensions = list(vcek.extensions)
    except ValueError as error:
        raise VcekExtensionsInvalid() from error
    raw = {
        ext.oid.dotted_string: ext.value.value
        for ext in extensions
        if isinstance(ext.value, x509.UnrecognizedExtension)
        and ext.oid.dotted_string.startswith(AMD_OID)
    }
    product_name = _der_ia5(raw.get(OID_PRODUCT_NAME))
    product = None if product_name is None else Product.from_product_name(product_name)
    layout = (product or Product.MILAN).tcb_layout
    tcb = 0
    for name, index in _VCEK_TCB_BYTES[layout].items():
        value = raw.get(OID_SPL[name])
        if value is None and name.startswith("spl"):
            continue  # spl_4..7 are optional
        tcb |= _der_small_int(value) << (8 * index)
    hwid = raw.get(OID_HWID)
    if hwid is None:
        raise VcekExtensionsInvalid()
    version = raw.get(OID_STRUCT_VERSION)
    return VcekExtensions(
        struct_version=None if version is None else _der_small_int(version),
        product_name=product_name,
        product=product,
        tcb=TcbVersion(tcb, layout),
        hwid=_unwrap_octets(hwid),
    )


def _der_small_int(value: bytes | None) -> int:
    """A DER INTEGER 0..255, as AMD encodes each SPL."""
    if value is None or len(value) < 3 or value[0] != 0x02 or value[1] != len(value) - 2:
        raise VcekExtensionsInvalid()
    number = int.from_bytes(value[2:], "big", signed=True)
    if not 0 <= number <= 0xFF:
        raise VcekExtensionsInvalid()
    return number


def _der_ia5(value: bytes | None) -> str | None:
    if value is None:
        return None
    if len(value) < 2 or value[0] != 0x16 or value[1] != len(value) - 2:
        raise VcekExtensionsInvalid()
    return value[2:].decode("ascii", "replace")


def _unwrap_octets(value: bytes) -> bytes:
    # KDS VCEKs carry hwID as the raw bytes; tolerate an OCTET STRING wrapping too.
    if len(value) in (66, 10) and value[0] == 0x04 and value[1] == len(value) - 2:
        return value[2:]
    if len(value) not in (64, 8):
        raise VcekExtensionsInvalid()
    return value


# --- the report -----------------------------------------------------------------------------


def verify_report_signature(report: SnpReport, vcek: x509.Certificate) -> None:
    """ECDSA P-384/SHA-384 over bytes 0..0x29F, R and S little-endian 72-byte fields."""
    try:
        key = vcek.public_key()
    except ValueError as error:
        raise VcekExtensionsInvalid("VCEK key is not ECDSA P-384") from error
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP384R1):
        raise VcekExtensionsInvalid("VCEK key is not ECDSA P-384")
    if report.signature_algo != SIGNATURE_ALGO_ECDSA_P384_SHA384:
        raise ReportSignatureInvalid("SNP report signature algorithm is not ECDSA P-384")
    if any(report.raw[SIGNED_LENGTH + 2 * SIGNATURE_COMPONENT_SIZE :]):
        raise ReportSignatureInvalid()
    signature = encode_dss_signature(report.signature_r, report.signature_s)
    try:
        key.verify(signature, report.signed_bytes, ec.ECDSA(hashes.SHA384()))
    except InvalidSignature as failure:
        raise ReportSignatureInvalid() from failure


def check_report_matches_vcek(report: SnpReport, extensions: VcekExtensions) -> None:
    """CHIP_ID == hwID and REPORTED_TCB == the VCEK's TCB."""
    hwid = extensions.hwid
    chip_id_matches = hmac.compare_digest(report.chip_id[: len(hwid)], hwid) and not any(
        report.chip_id[len(hwid) :]
    )
    if report.mask_chip_key or not chip_id_matches:
        raise ChipIdMismatch()
    if (
        report.reported_tcb.layout != extensions.tcb.layout
        or report.reported_tcb.raw != extensions.tcb.raw
    ):
        raise TcbMismatch()


def verify_report(
    report: SnpReport, chain: AmdCertChain, trust: AmdTrust, *, now: datetime
) -> VerifiedChain:
    """The whole AMD side: chain, report signature, chip id and TCB."""
    if report.signing_key != SigningKey.VCEK:
        raise SigningKeyNotAllowed()
    verified = verify_chain(chain, trust, now=now)
    # Chip id and TCB first: they say whether this VCEK is the key that could have signed at all.
    check_report_matches_vcek(report, verified.extensions)
    verify_report_signature(report, verified.vcek)
    return verified


def chain_summary(verified: VerifiedChain) -> dict[str, Any]:
    return {
        "ark": _common_name(verified.ark),
        "ask": _common_name(verified.ask),
        "vcek": verified.extensions.to_json(),
    }


__all__: Sequence[str] = (
    "AmdCertChain",
    "AmdTrust",
    "VcekExtensions",
    "VerifiedChain",
    "chain_summary",
    "check_report_matches_vcek",
    "load_pem_certificates",
    "parse_cert_bundle",
    "parse_pem_chain",
    "parse_thim_bundle",
    "pinned_root",
    "self_signed",
    "vcek_extensions",
    "verify_chain",
    "verify_report",
    "verify_report_signature",
)
