"""The VCEK certificate chain from Azure's IMDS THIM endpoint.

``GET http://169.254.169.254/metadata/THIM/amd/certification`` with ``Metadata: true`` answers
``{"vcekCert": PEM, "certificateChain": PEM ASK + PEM ARK, "tcbm": 16 hex digits,
"cacheControl": seconds}``. :func:`fetch_vcek_chain` accepts the URL (configurable:
``OHTTP_GATEWAY_THIM_URL``), GETs it over plain HTTP like the real link-local IMDS, with the
bounded retries of :mod:`gateway.trust.rest`, and guarantees an
:class:`~gateway.trust.amd.AmdCertChain` parsed by :func:`gateway.trust.amd.parse_thim_bundle`
(so ``tcbm`` is checked, and the VCEK, ASK and ARK are sorted by role), or an
:class:`EvidenceError`. ``chain.to_pem()`` is what MAA takes as ``VcekCertChain``.

Never: follows redirects or proxies, or trusts the chain because it came from IMDS: whether it is
AMD's and matches the report is decided by :mod:`gateway.trust.amd` or by MAA.
"""

from __future__ import annotations

from gateway.errors import EvidenceError
from gateway.trust.amd import AmdCertChain, parse_thim_bundle
from gateway.trust.rest import RestClient, RetryPolicy

THIM_URL = "http://169.254.169.254/metadata/THIM/amd/certification"


async def fetch_vcek_chain(
    url: str = THIM_URL, *, timeout: float = 10.0, retry: RetryPolicy | None = None
) -> AmdCertChain:
    """GET the chain from THIM and parse it."""
    async with RestClient(error=EvidenceError, timeout=timeout, retry=retry) as client:
        response = await client.request("GET", url, headers={"Metadata": "true"})
    if response.status != 200:
        raise EvidenceError("THIM refused the request for the VCEK chain")
    chain = parse_thim_bundle(response.body)
    if chain.ask is None or chain.ark is None:
        raise EvidenceError("THIM answer lacks the ASK or the ARK")
    return chain
