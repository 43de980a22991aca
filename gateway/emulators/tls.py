"""A throwaway certificate authority and a loopback server certificate for the emulators.

Accepts a state directory. Guarantees: the CA certificate is written to ``ca.pem`` (what clients
are pointed at with ``OHTTP_GATEWAY_CA_BUNDLE``), the server certificate and key to
``server.pem`` / ``server-key.pem`` (mode 0600), and the server certificate names exactly
``127.0.0.1``, ``::1`` and ``localhost``. An existing, still valid set in the directory is reused,
so a shell that sourced ``ohttp-gateway emulate --print-env`` keeps working across restarts.
Never: writes anything outside the state directory, or issues a certificate for a non-loopback
name.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from gateway.emulators.certs import certificate_builder, common_name
from gateway.errors import ConfigError

CA_FILE = "ca.pem"
SERVER_CERT_FILE = "server.pem"
SERVER_KEY_FILE = "server-key.pem"
LOOPBACK_NAMES = ("localhost",)
LOOPBACK_ADDRESSES = ("127.0.0.1", "::1")
# Long enough for a dev session, short enough that a leaked dev CA soon stops mattering.
VALIDITY = datetime.timedelta(days=30)
# Reissue rather than serve a certificate about to expire mid-session.
RENEW_BEFORE = datetime.timedelta(days=1)


@dataclass(frozen=True)
class EmulatorTls:
    """Paths of the emulators' TLS material on disk."""

    ca_path: Path
    cert_path: Path
    key_path: Path = field(repr=False)


def ensure_tls(state_dir: Path) -> EmulatorTls:
    """Reuse the CA and server certificate in ``state_dir`` if valid, or generate new ones."""
    state_dir.mkdir(parents=True, exist_ok=True)
    tls = EmulatorTls(
        ca_path=state_dir / CA_FILE,
        cert_path=state_dir / SERVER_CERT_FILE,
        key_path=state_dir / SERVER_KEY_FILE,
    )
    if not _still_valid(tls):
        _generate(tls)
    return tls


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _still_valid(tls: EmulatorTls) -> bool:
    if not (tls.ca_path.is_file() and tls.cert_path.is_file() and tls.key_path.is_file()):
        return False
    try:
        ca = x509.load_pem_x509_certificate(tls.ca_path.read_bytes())
        cert = x509.load_pem_x509_certificate(tls.cert_path.read_bytes())
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, OSError):
        return False
    deadline = _now() + RENEW_BEFORE
    return min(ca.not_valid_after_utc, cert.not_valid_after_utc) > deadline


def _generate(tls: EmulatorTls) -> None:
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = common_name("ohttp-gateway emulators CA")
    ca = (
        certificate_builder(ca_name, ca_name, ca_key.public_key(), ca_key.public_key(), VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    server_key = ec.generate_private_key(ec.SECP256R1())
    server_name = common_name("localhost")
    names: list[x509.GeneralName] = [x509.DNSName(n) for n in LOOPBACK_NAMES]
    names += [x509.IPAddress(ipaddress.ip_address(a)) for a in LOOPBACK_ADDRESSES]
    server = (
        certificate_builder(
            server_name, ca_name, server_key.public_key(), ca_key.public_key(), VALIDITY
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    write_private(tls.key_path, _key_pem(server_key))
    tls.cert_path.write_bytes(server.public_bytes(serialization.Encoding.PEM))
    tls.ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=not cert_sign,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def write_private(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data``, readable by its owner only (the emulators' dev keys)."""
    try:
        path.unlink(missing_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as error:
        raise ConfigError("cannot write a key file in the emulators' state directory") from error
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
