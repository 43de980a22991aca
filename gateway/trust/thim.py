"""The VCEK certificate chain from Azure's IMDS THIM endpoint.

``GET http://169.254.169.254/metadata/THIM/amd/certification`` with ``Metadata: true`` answers
``{"vcekCert": PEM, "certificateChain": PEM ASK + PEM ARK, "tcbm": 16 hex digits,
"cacheControl": seconds}``. :func:`parse_thim_response` is pure: it accepts those bytes and
guarantees a :class:`VcekCertChain` with one PEM certificate for the VCEK and two for the chain,
or an :class:`EvidenceError`. It checks shape only: whether the chain is AMD's and matches the
report is decided by the verifier (``gateway.trust.amd``) or by MAA. :func:`fetch_vcek_chain`
adds the HTTP call (plain HTTP, like the real link-local IMDS; the URL is configurable).

Never: follows redirects or proxies, or trusts the chain because it came from IMDS.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from typing import Any

from gateway.errors import EvidenceError
from gateway.trust.rest import RestClient, RetryPolicy

THIM_URL = "http://169.254.169.254/metadata/THIM/amd/certification"
_PEM_CERT = re.compile(
    rb"-----BEGIN CERTIFICATE-----\r?\n([A-Za-z0-9+/=\r\n]+?)-----END CERTIFICATE-----"
)
_TCBM = re.compile(r"[0-9A-Fa-f]{16}")


@dataclass(frozen=True)
class VcekCertChain:
    """The VCEK and its ASK/ARK chain, as PEM, and the TCB they are issued for."""

    vcek_pem: bytes
    chain_pem: bytes
    tcbm: int

    def pem(self) -> bytes:
        """VCEK, then ASK, then ARK: what MAA expects as ``VcekCertChain``."""
        return self.vcek_pem + self.chain_pem


def pem_certificates(data: bytes) -> list[bytes]:
    """The PEM certificate blocks in ``data``, each checked to be valid base64 DER framing."""
    blocks = []
    for match in _PEM_CERT.finditer(data):
        try:
            der = base64.b64decode(re.sub(rb"\s", b"", match.group(1)), validate=True)
        except binascii.Error as error:
            raise EvidenceError("a PEM certificate is not valid base64") from error
        if not der.startswith(b"\x30"):
            raise EvidenceError("a PEM certificate is not DER")
        blocks.append(match.group(0) + b"\n")
    return blocks


def parse_thim_response(body: bytes) -> VcekCertChain:
    try:
        document: Any = json.loads(body)
    except (ValueError, UnicodeDecodeError) as error:
        raise EvidenceError("THIM answer is not JSON") from error
    if not isinstance(document, dict):
        raise EvidenceError("THIM answer is not a JSON object")
    vcek = _text(document, "vcekCert")
    chain = _text(document, "certificateChain")
    tcbm = _text(document, "tcbm").strip()
    if not _TCBM.fullmatch(tcbm):
        raise EvidenceError("THIM tcbm is not 16 hex digits")
    vcek_blocks = pem_certificates(vcek.encode())
    chain_blocks = pem_certificates(chain.encode())
    if len(vcek_blocks) != 1:
        raise EvidenceError("THIM vcekCert must hold exactly one certificate")
    if len(chain_blocks) != 2:
        raise EvidenceError("THIM certificateChain must hold the ASK and the ARK")
    return VcekCertChain(vcek_blocks[0], b"".join(chain_blocks), int(tcbm, 16))


def _text(document: dict[str, Any], name: str) -> str:
    value = document.get(name)
    if not isinstance(value, str):
        raise EvidenceError(f"THIM answer lacks {name}")
    return value


async def fetch_vcek_chain(
    url: str = THIM_URL, *, timeout: float = 10.0, retry: RetryPolicy | None = None
) -> VcekCertChain:
    """GET the chain from THIM (plain HTTP), with the retries of :mod:`gateway.trust.rest`."""
    async with RestClient(error=EvidenceError, timeout=timeout, retry=retry) as client:
        response = await client.request("GET", url, headers={"Metadata": "true"})
    if response.status != 200:
        raise EvidenceError("THIM refused the request for the VCEK chain")
    return parse_thim_response(response.body)
