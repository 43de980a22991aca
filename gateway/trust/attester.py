"""One attestation, end to end: evidence binding given bytes → MAA token → verified token.

Accepts an evidence provider, an MAA client, an optional THIM URL for the VCEK chain, and a
``record`` callback for per-service latency and errors. The MAA route follows the evidence
(:func:`gateway.trust.maa.attest_evidence`): ``AzureGuest`` for the vTPM, whose token names the
TPM's ephemeral key; ``SevSnpVm`` otherwise, whose runtime data names our own RSA key.
:meth:`Attester.attest` takes the exact bytes to bind (the served ``application/ohttp-keys``, or
nothing yet) and returns an :class:`~gateway.trust.attestation_document.Attestation`.

Guarantees: a fresh 32-byte nonce per attestation; user-data = :func:`user_data_for(key_configs,
nonce)`; the token is verified (RS256, the pinned issuer's ``/certs``, times) and must carry
exactly that user-data in its runtime claims, else :class:`ReportDataMismatch`; the wrapping key
is the one the evidence's runtime data names (our fresh RSA key on the SNP route, the TPM's
ephemeral key on the vTPM route), so a KMS can only wrap to a key this process holds. Blocking
provider calls run in a worker thread. Failures raise :class:`~gateway.errors.TrustError`
subclasses. Never: logs evidence, nonces or tokens.
"""

from __future__ import annotations

import asyncio
import hmac
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any, TypeVar

from cryptography.hazmat.primitives.asymmetric import rsa

from gateway.errors import (
    EvidenceError,
    ReportDataMismatch,
    TokenKeyUnknown,
    TrustError,
)
from gateway.trust import tpm_verify
from gateway.trust.attestation_document import Attestation
from gateway.trust.binding import user_data_for
from gateway.trust.evidence import Evidence, EvidenceProvider
from gateway.trust.evidence.azure_vtpm import AzureVtpmEvidence, AzureVtpmProvider
from gateway.trust.jwk import rsa_thumbprint
from gateway.trust.kms import WrappingKey
from gateway.trust.maa import MaaClient, attest_evidence
from gateway.trust.thim import fetch_vcek_chain
from gateway.trust.token import AttestationToken, verify_token

SEV_SNP_VM = "SevSnpVm"
AZURE_GUEST = "AzureGuest"
NONCE_SIZE = 32

# (service, seconds, error or None): how the lifecycle's metrics see each trust call.
Record = Callable[[str, float, TrustError | None], None]
T = TypeVar("T")


def _ignore(service: str, seconds: float, error: TrustError | None) -> None:
    return None


class Attester:
    """Produces :class:`Attestation` objects; see the module docstring."""

    def __init__(
        self,
        provider: EvidenceProvider,
        maa: MaaClient,
        *,
        thim_url: str | None = None,
        record: Record = _ignore,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.provider, self.maa = provider, maa
        self._thim_url = thim_url
        self._record = record
        self._clock = clock
        self._jwks: dict[str, Any] | None = None
        self._vcek_chain: bytes | None = None

    async def aclose(self) -> None:
        await self.maa.close()

    async def _timed(self, service: str, call: Awaitable[T]) -> T:
        started = time.perf_counter()
        try:
            result = await call
        except TrustError as error:
            self._record(service, time.perf_counter() - started, error)
            raise
        self._record(service, time.perf_counter() - started, None)
        return result

    async def collect(self, key_configs: bytes) -> tuple[Evidence, bytes]:
        """Step "evidence": evidence binding ``key_configs`` and a fresh nonce."""
        nonce = secrets.token_bytes(NONCE_SIZE)
        user_data = user_data_for(key_configs, nonce)
        evidence = await self._timed(
            "evidence", asyncio.to_thread(self.provider.collect, user_data)
        )
        return evidence, nonce

    async def attest(self, key_configs: bytes) -> Attestation:
        """Evidence, then token: an attestation binding exactly ``key_configs``."""
        evidence, nonce = await self.collect(key_configs)
        return await self.token_for(evidence, key_configs, nonce)

    async def token_for(self, evidence: Evidence, key_configs: bytes, nonce: bytes) -> Attestation:
        """Step "token": MAA's token for ``evidence``, verified and checked to bind it."""
        chain = evidence.cert_chain or await self._chain()
        raw = await self._timed("maa", self._request_token(evidence, chain, nonce))
        token = await self._timed("maa", self._verify(raw))
        bound = token.user_data
        if bound is None or not hmac.compare_digest(bound, evidence.user_data):
            raise ReportDataMismatch("the MAA token does not carry the bound user-data")
        return Attestation(
            provider=self.provider.name,
            route=AZURE_GUEST if isinstance(evidence, AzureVtpmEvidence) else SEV_SNP_VM,
            token=token,
            evidence=evidence,
            cert_chain=chain,
            key_configs=key_configs,
            nonce=nonce,
            wrapping_key=self._wrapping_key(evidence),
        )

    async def _chain(self) -> bytes:
        if self._vcek_chain is None:
            if self._thim_url is None:
                raise EvidenceError("the evidence has no VCEK chain and no THIM URL is set")
            chain = await self._timed("imds", fetch_vcek_chain(self._thim_url))
            self._vcek_chain = chain.to_pem()
        return self._vcek_chain

    async def _request_token(self, evidence: Evidence, chain: bytes, nonce: bytes) -> str:
        provider = self.provider
        decrypt = None
        if isinstance(provider, AzureVtpmProvider):
            decrypt = lambda sealed_key: provider.decrypt(sealed_key, "rsaes")  # noqa: E731
        return await attest_evidence(
            self.maa,
            replace(evidence, cert_chain=chain),
            nonce=nonce.hex(),
            decrypt_inner_key=decrypt,
        )

    async def _verify(self, raw: str) -> AttestationToken:
        if self._jwks is None:
            self._jwks = await self.maa.signing_keys()
        try:
            return verify_token(raw, jwks=self._jwks, issuer=self.maa.issuer, now=self._clock())
        except TokenKeyUnknown:
            # MAA rolled its signing keys: fetch them again, once.
            self._jwks = await self.maa.signing_keys()
            return verify_token(raw, jwks=self._jwks, issuer=self.maa.issuer, now=self._clock())

    def _wrapping_key(self, evidence: Evidence) -> WrappingKey:
        provider = self.provider
        if isinstance(evidence, AzureVtpmEvidence) and isinstance(provider, AzureVtpmProvider):
            public_key = tpm_verify.parse_public(evidence.encryption_key_public).public_key
            if not isinstance(public_key, rsa.RSAPublicKey):
                raise EvidenceError("the vTPM ephemeral key is not an RSA key")
            return WrappingKey.from_tpm(public_key, provider.decrypt)
        private_key = evidence.wrapping_key
        if not isinstance(private_key, rsa.RSAPrivateKey):
            raise EvidenceError("the evidence names no wrapping key")
        return WrappingKey.from_private_key(rsa_thumbprint(private_key.public_key()), private_key)
