"""Evidence providers: where the gateway's SEV-SNP evidence comes from.

The contract every provider meets (``azure-vtpm``, ``sev-guest``, ``simulated``)::

    class EvidenceProvider(Protocol):
        name: str
        def collect(self, user_data: bytes) -> Evidence: ...

``collect`` takes the 64-byte user-data the gateway wants bound (see
:func:`gateway.trust.binding.user_data_for`: SHA-256 of the served ``application/ohttp-keys``
‖ SHA-256 of a nonce) and returns :class:`Evidence` whose report commits to it:

* ``AZURE_HCL``: ``report`` is the whole HCL report (vTPM NV 0x01400001); its runtime claims
  (``runtime_data``) carry ``"user-data": hex(user_data)`` and REPORT_DATA = SHA-256(runtime
  claims) ‖ zeros. MAA's SevSnpVm route takes ``snp_report`` + ``runtime_data``.
* ``SEV_SNP``: ``report`` is a bare 1184-byte SNP report; ``runtime_data`` is our JSON
  ``{"keys": [<RSA wrapping key JWK>], "user-data": hex(user_data)}`` and REPORT_DATA =
  SHA-256(runtime_data) ‖ zeros. ``wrapping_key`` is the private half of that JWK.

``cert_chain`` is PEM (VCEK ‖ ASK ‖ ARK) when the provider has it, else empty and the caller
fetches it from THIM. Providers may subclass :class:`Evidence` (a frozen dataclass) to carry
more, e.g. the vTPM quote, AIK certificate and event log.

Providers block (ioctl, TPM, files): call them from a worker thread in async code. Failures
raise :class:`~gateway.errors.EvidenceError` subclasses.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from cryptography.hazmat.primitives.asymmetric import rsa

from gateway.errors import ConfigError
from gateway.trust.binding import USER_DATA_SIZE
from gateway.trust.hcl import HEADER_SIZE, IGVM_REQUEST_OFFSET
from gateway.trust.jwk import rsa_public_jwk


class EvidenceKind(enum.Enum):
    SEV_SNP = "sev-snp"
    AZURE_HCL = "azure-hcl"


@dataclass(frozen=True)
class Evidence:
    kind: EvidenceKind
    report: bytes = field(repr=False)
    runtime_data: bytes = field(repr=False)
    user_data: bytes
    cert_chain: bytes = field(default=b"", repr=False)
    wrapping_key: rsa.RSAPrivateKey | None = field(default=None, repr=False, compare=False)

    @property
    def snp_report(self) -> bytes:
        """The bare 1184-byte SNP report, whichever kind this is (MAA's ``SnpReport``)."""
        if self.kind is EvidenceKind.AZURE_HCL:
            return self.report[HEADER_SIZE:IGVM_REQUEST_OFFSET]
        return self.report


@runtime_checkable
class EvidenceProvider(Protocol):
    name: str

    def collect(self, user_data: bytes) -> Evidence: ...


def require_user_data(user_data: bytes) -> bytes:
    """Providers call this first: user-data is exactly 64 bytes."""
    if not isinstance(user_data, bytes) or len(user_data) != USER_DATA_SIZE:
        raise ConfigError("evidence user-data must be exactly 64 bytes")
    return user_data


def runtime_data_for(wrapping_key: rsa.RSAPublicKey, user_data: bytes) -> bytes:
    """The ``SEV_SNP`` runtime data: our wrapping key as a JWK and the bound user-data.

    Compact JSON, so the bytes hashed into REPORT_DATA are exactly the bytes sent to MAA.
    """
    document = {"keys": [rsa_public_jwk(wrapping_key)], "user-data": user_data.hex().upper()}
    return json.dumps(document, separators=(",", ":")).encode("ascii")
