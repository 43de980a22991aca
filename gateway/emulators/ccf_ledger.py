"""A miniature CCF ledger for the confidential-KMS emulator: a Merkle tree and real receipts.

Accepts a state directory (for the node's TLS key, which uvicorn reads from a file) and
transactions given by their claims digest. Guarantees:

* a service identity (P-384, self-signed, CA) and a node identity (P-384) endorsed by it; the
  node certificate is also the emulator's TLS server certificate (SAN 127.0.0.1, ::1,
  localhost), so a client trusting only the pinned service certificate verifies TLS, as with CCF;
* each transaction's leaf is SHA-256(write_set_digest || SHA-256(commit_evidence) ||
  claims_digest); the tree is RFC 6962-shaped (split at the largest power of two) with inner
  nodes SHA-256(left || right), as CCF's;
* :meth:`receipt` proves a transaction against the current root, which the node signs with
  ECDSA over the prehashed SHA-256 root; the result is exactly what
  :func:`gateway.trust.receipts.verify_receipt` accepts.

Never: shows keys in ``repr``; writes anything but the node key and certificates.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, utils
from cryptography.x509.oid import ExtendedKeyUsageOID

from gateway.emulators.certs import certificate_builder, common_name
from gateway.emulators.tls import EmulatorTls


@dataclass(frozen=True)
class Transaction:
    write_set_digest: bytes
    commit_evidence: str
    claims_digest: bytes

    @property
    def leaf(self) -> bytes:
        evidence = hashlib.sha256(self.commit_evidence.encode()).digest()
        return hashlib.sha256(self.write_set_digest + evidence + self.claims_digest).digest()


def _hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(left + right).digest()


def merkle_root(leaves: list[bytes]) -> bytes:
    if len(leaves) == 1:
        return leaves[0]
    split = 1 << ((len(leaves) - 1).bit_length() - 1)
    return _hash(merkle_root(leaves[:split]), merkle_root(leaves[split:]))


def merkle_path(index: int, leaves: list[bytes]) -> list[dict[str, str]]:
    """Siblings from the leaf up: ``{"left": hex}`` or ``{"right": hex}``."""
    if len(leaves) == 1:
        return []
    split = 1 << ((len(leaves) - 1).bit_length() - 1)
    if index < split:
        return [*merkle_path(index, leaves[:split]), {"right": merkle_root(leaves[split:]).hex()}]
    return [
        *merkle_path(index - split, leaves[split:]),
        {"left": merkle_root(leaves[:split]).hex()},
    ]


class Ledger:
    """The service and node identities and the transactions; see the module docstring."""

    def __init__(self, state_dir: Path) -> None:
        state_dir.mkdir(parents=True, exist_ok=True)
        self._service_key = ec.generate_private_key(ec.SECP384R1())
        service, service_public = common_name("CCF Service"), self._service_key.public_key()
        self.service_cert = (
            certificate_builder(service, service, service_public, service_public)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .sign(self._service_key, hashes.SHA384())
        )
        self._node_key = ec.generate_private_key(ec.SECP384R1())
        names: list[x509.GeneralName] = [x509.DNSName("localhost")]
        names += [x509.IPAddress(ipaddress.ip_address(a)) for a in ("127.0.0.1", "::1")]
        self.node_cert = (
            certificate_builder(
                common_name("CCF Node"), service, self._node_key.public_key(), service_public
            )
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(self._service_key, hashes.SHA384())
        )
        self.node_id = hashlib.sha256(
            self.node_cert.public_key().public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        ).hexdigest()
        self.tls = self._write_tls(state_dir)
        self.transactions: list[Transaction] = []

    def __repr__(self) -> str:
        return f"Ledger(transactions={len(self.transactions)})"

    def _write_tls(self, state_dir: Path) -> EmulatorTls:
        pem = serialization.Encoding.PEM
        tls = EmulatorTls(
            ca_path=state_dir / "ccf-service.pem",
            cert_path=state_dir / "ccf-node.pem",
            key_path=state_dir / "ccf-node-key.pem",
        )
        tls.ca_path.write_bytes(self.service_cert.public_bytes(pem))
        tls.cert_path.write_bytes(self.node_cert.public_bytes(pem))
        key = self._node_key.private_bytes(
            pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        tls.key_path.unlink(missing_ok=True)
        fd = os.open(tls.key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(key)
        return tls

    def service_cert_pem(self) -> str:
        return self.service_cert.public_bytes(serialization.Encoding.PEM).decode()

    def append(self, claims_digest: bytes) -> int:
        """Record a transaction binding ``claims_digest``; returns its index."""
        seqno = len(self.transactions) + 1
        self.transactions.append(
            Transaction(
                write_set_digest=hashlib.sha256(secrets.token_bytes(32)).digest(),
                commit_evidence=f"ce:2.{seqno}:{secrets.token_hex(32)}",
                claims_digest=claims_digest,
            )
        )
        return seqno - 1

    def receipt(self, index: int) -> dict[str, Any]:
        """A receipt for transaction ``index`` against the current, freshly signed root."""
        leaves = [transaction.leaf for transaction in self.transactions]
        root = merkle_root(leaves)
        signature = self._node_key.sign(root, ec.ECDSA(utils.Prehashed(hashes.SHA256())))
        transaction = self.transactions[index]
        return {
            "cert": self.node_cert.public_bytes(serialization.Encoding.PEM).decode(),
            "is_signature_transaction": False,
            "leaf_components": {
                "claims_digest": transaction.claims_digest.hex(),
                "commit_evidence": transaction.commit_evidence,
                "write_set_digest": transaction.write_set_digest.hex(),
            },
            "node_id": self.node_id,
            "proof": merkle_path(index, leaves),
            "signature": base64.b64encode(signature).decode(),
        }
