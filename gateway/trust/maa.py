"""The Microsoft Azure Attestation (MAA) client: evidence in, a signed token string out.

Accepts an MAA instance URL (``https://...``; also the token issuer, which is pinned), an
optional extra CA bundle, a timeout and a retry policy. Guarantees:

* ``attest_sev_snp_vm``: ``POST {maa}/attest/SevSnpVm?api-version=2022-08-01`` with the SNP
  report, its VCEK chain, the runtime data (JSON, whose SHA-256 the report's REPORT_DATA must
  hold), optional init-time data and a nonce; returns the JWT;
* ``attest_azure_guest``: ``POST {maa}/attest/AzureGuest?api-version=2020-10-01`` with the vTPM
  evidence; the answer is sealed to the TPM's ephemeral key, and is opened with the
  ``decrypt_inner_key`` callable the vTPM provider supplies (TPM2_RSA_Decrypt under the PCR
  policy) followed by AES-GCM with AAD ``"Transport Key"``; returns the JWT;
* ``signing_keys``: the JWKS from ``{maa}/certs`` (the pinned issuer's, never a token's ``jku``);
* :func:`attest_evidence`: any evidence provider's output to a token, picking the route and
  fetching the VCEK chain from THIM when the evidence carries none;
* TLS is verified; 429/5xx are retried with jittered backoff (:mod:`gateway.trust.rest`);
  4xx refusals raise :class:`AttestationRefused` with MAA's error code.

Never: verifies the token (that is :mod:`gateway.trust.token`, given these signing keys), logs
evidence or tokens, or sends credentials (MAA's attest endpoints are anonymous).

Why not azure-security-attestation 1.0.0: it has no SEV-SNP or AzureGuest call (its attest
methods are SGX, OpenEnclave and TPM, pinned to api-version 2020-10-01), it fails to import
without the undeclared ``six``, and its token validation has known quirks (research §1.3). It
does work for ``/certs`` and the OpenID metadata, which is what tests use it for, against the
emulator.
"""

from __future__ import annotations

import asyncio
import random
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from gateway.errors import AttestationRefused, AttestationServiceError, ConfigError
from gateway.trust.evidence import Evidence
from gateway.trust.evidence.azure_vtpm import AzureVtpmEvidence
from gateway.trust.maa_wire import (
    AzureGuestRequest,
    SealedToken,
    SevSnpVmRequest,
    SnpEvidence,
    TpmEvidence,
    client_payload_for,
    decode_cloud_error,
    decode_token_answer,
)
from gateway.trust.rest import RestClient, RestResponse, RetryPolicy
from gateway.trust.thim import THIM_URL, fetch_vcek_chain

SEV_SNP_VM_API_VERSION = "2022-08-01"
AZURE_GUEST_API_VERSION = "2020-10-01"
_JWT = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")

DecryptInnerKey = Callable[[bytes], bytes]


def maa_base_url(url: str) -> str:
    """The instance URL normalised as MAA's ``iss``: https, no path, no trailing slash."""
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        raise ConfigError("the MAA URL must be an https:// URL")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ConfigError("the MAA URL must have no path, query or fragment")
    return f"https://{parts.netloc}"


class MaaClient:
    """Calls one MAA instance. Use as ``async with MaaClient(url) as maa``."""

    def __init__(
        self,
        url: str,
        *,
        ca_bundle: Path | None = None,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.issuer = maa_base_url(url)
        self._rest = RestClient(
            error=AttestationServiceError,
            ca_bundle=ca_bundle,
            timeout=timeout,
            retry=retry,
            rng=rng,
        )

    async def __aenter__(self) -> MaaClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._rest.close()

    @property
    def attempts_made(self) -> int:
        """HTTP attempts so far, retries included (for metrics and tests)."""
        return self._rest.attempts_made

    async def attest_sev_snp_vm(self, request: SevSnpVmRequest) -> str:
        url = f"{self.issuer}/attest/SevSnpVm?api-version={SEV_SNP_VM_API_VERSION}"
        token = await self._attest(url, request.encode())
        if not _JWT.fullmatch(token):
            raise AttestationServiceError("MAA answered with a malformed token")
        return token

    async def attest_azure_guest(
        self, request: AzureGuestRequest, decrypt_inner_key: DecryptInnerKey
    ) -> str:
        url = f"{self.issuer}/attest/AzureGuest?api-version={AZURE_GUEST_API_VERSION}"
        sealed = SealedToken.decode(await self._attest(url, request.encode()))
        # The TPM is blocking I/O; the provider serialises access to it.
        inner_key = await asyncio.to_thread(decrypt_inner_key, sealed.encrypted_inner_key)
        token = sealed.open(inner_key)
        if not _JWT.fullmatch(token):
            raise AttestationServiceError("MAA answered with a malformed token")
        return token

    async def signing_keys(self) -> dict[str, Any]:
        """The issuer's JWKS, checked for shape only."""
        jwks = await self._get_json(f"{self.issuer}/certs")
        keys = jwks.get("keys")
        if not isinstance(keys, list) or not all(isinstance(k, dict) for k in keys):
            raise AttestationServiceError("MAA signing keys are malformed")
        return jwks

    async def openid_metadata(self) -> dict[str, Any]:
        return await self._get_json(f"{self.issuer}/.well-known/openid-configuration")

    async def _attest(self, url: str, body: dict[str, Any]) -> str:
        response = await self._rest.request(
            "POST", url, json_body=body, headers={"Accept": "application/json"}
        )
        _raise_for_refusal(response)
        return decode_token_answer(response.body)

    async def _get_json(self, url: str) -> dict[str, Any]:
        response = await self._rest.request("GET", url, headers={"Accept": "application/json"})
        _raise_for_refusal(response)
        document = response.json()
        if not isinstance(document, dict):
            raise AttestationServiceError("MAA answered with malformed JSON")
        return document


async def attest_evidence(
    maa: MaaClient,
    evidence: Evidence,
    *,
    thim_url: str = THIM_URL,
    nonce: str | None = None,
    decrypt_inner_key: DecryptInnerKey | None = None,
) -> str:
    """Any provider's evidence to an MAA token, by the route that fits it.

    ``azure-vtpm`` evidence goes to AzureGuest, and ``decrypt_inner_key`` (the provider's TPM
    decrypt, RSAES) opens the sealed answer; other evidence (``sev-guest``, ``simulated``, of
    either kind) goes to SevSnpVm with its runtime data and ``nonce``. The VCEK chain is the
    evidence's own when it has one, else THIM's at ``thim_url``.
    """
    chain = evidence.cert_chain or (await fetch_vcek_chain(thim_url)).to_pem()
    if isinstance(evidence, AzureVtpmEvidence):
        if decrypt_inner_key is None:
            raise ConfigError("AzureGuest attestation needs the vTPM's decrypt")
        request = azure_guest_request(evidence, chain)
        return await maa.attest_azure_guest(request, decrypt_inner_key)
    snp = SnpEvidence(evidence.snp_report, chain)
    return await maa.attest_sev_snp_vm(SevSnpVmRequest(snp, evidence.runtime_data, nonce=nonce))


def azure_guest_request(evidence: AzureVtpmEvidence, vcek_cert_chain: bytes) -> AzureGuestRequest:
    """The AzureGuest body for what the vTPM provider collected, with the VCEK chain (PEM) from
    THIM; the quote's qualifying data goes in ``ClientPayload`` (see :mod:`maa_wire`)."""
    tpm = TpmEvidence(
        aik_cert=evidence.aik_certificate,
        aik_pub=evidence.aik_public,
        pcr_quote=evidence.quote,
        pcr_signature=evidence.quote_signature,
        pcrs=tuple((index, evidence.pcr_values[index]) for index in sorted(evidence.pcrs)),
        enc_key_pub=evidence.encryption_key_public,
        enc_key_certify_info=evidence.certify_info,
        enc_key_certify_info_signature=evidence.certify_signature,
    )
    return AzureGuestRequest(
        tpm=tpm,
        snp=SnpEvidence(evidence.snp_report, vcek_cert_chain),
        runtime_data=evidence.runtime_data,
        tcg_logs=evidence.event_log,
        client_payload=client_payload_for(evidence.nonce),
    )


def _raise_for_refusal(response: RestResponse) -> None:
    if response.status == 200:
        return
    code, detail = decode_cloud_error(response.body)
    raise AttestationRefused(
        "MAA refused the request" if 400 <= response.status < 500 else "MAA answered unexpectedly",
        code=code,
        detail=detail,
    )
