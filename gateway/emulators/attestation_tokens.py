"""How the KMS emulators check an MAA token, as Key Vault and the confidential KMS do.

Accepts the token, the authorities a release policy (or the KMS's issuer list) names, and a CA
bundle. Guarantees: the token's unverified ``iss`` only selects among the given authorities (a
token from any other issuer is refused with :class:`TokenIssuerMismatch` before anything is
fetched); that authority's signing keys come from ``{authority}/certs`` over verified TLS (cached
per authority, refetched once when the token's ``kid`` is unknown, i.e. after a key rollover);
the token is then verified by :func:`gateway.trust.token.verify_token` with the issuer pinned.
Never: follows the token's ``jku``, or logs the token.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from gateway.errors import (
    AttestationServiceError,
    TokenIssuerMismatch,
    TokenKeyUnknown,
)
from gateway.trust.rest import RestClient, RetryPolicy
from gateway.trust.token import AttestationToken, decode_unverified, verify_token


class TokenVerifier:
    """Verifies MAA tokens for an emulated KMS; one per emulator."""

    def __init__(self, ca_bundle: Path | None, clock: Callable[[], float] = time.time) -> None:
        self._ca_bundle = ca_bundle
        self._clock = clock
        self._jwks: dict[str, Any] = {}

    async def _signing_keys(self, authority: str, *, refresh: bool) -> Any:
        if refresh or authority not in self._jwks:
            retry = RetryPolicy(attempts=2, base_delay=0.1, max_delay=0.5)
            async with RestClient(
                error=AttestationServiceError, ca_bundle=self._ca_bundle, retry=retry, timeout=10
            ) as rest:
                response = await rest.request("GET", f"{authority}/certs")
            if response.status != 200:
                raise AttestationServiceError("attestation signing keys unavailable")
            self._jwks[authority] = response.json()
        return self._jwks[authority]

    async def verify(self, token: str, authorities: Iterable[str]) -> AttestationToken:
        issuer = decode_unverified(token).issuer.rstrip("/")
        if issuer not in {authority.rstrip("/") for authority in authorities}:
            raise TokenIssuerMismatch()
        for refresh in (False, True):
            jwks = await self._signing_keys(issuer, refresh=refresh)
            try:
                return verify_token(token, jwks=jwks, issuer=issuer, now=self._clock())
            except TokenKeyUnknown:
                if refresh:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover
