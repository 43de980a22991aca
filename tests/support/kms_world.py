"""Real emulators on loopback for the KMS tests: MAA, Entra ID, Key Vault and the confidential KMS.

Everything is HTTPS on 127.0.0.1 with the generated CA (the confidential KMS with its own service
identity, as CCF). Tokens come from the MAA emulator for real simulated SNP evidence whose runtime
data carries the test's wrapping key, so every release in the tests is the full chain: evidence ->
MAA -> token -> KMS policy -> wrapped key.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from gateway.emulators.attestation_tokens import TokenVerifier
from gateway.emulators.ccf_kms import CcfKmsEmulator
from gateway.emulators.ccf_ledger import Ledger
from gateway.emulators.entra import EntraEmulator, FederatedIssuer
from gateway.emulators.keyvault import KeyVaultEmulator
from gateway.emulators.keyvault_signing import ReleaseSigner
from gateway.emulators.maa import MaaEmulator
from gateway.emulators.maa_signing import TokenSigner
from gateway.emulators.maa_verify import MaaPolicy, MaaVerifier
from gateway.emulators.release_policy import ReleasePolicy
from gateway.emulators.server import BackgroundServers, ServerGroup, bind_loopback, socket_url
from gateway.emulators.tls import EmulatorTls
from gateway.protocol.keys import KeyRing
from gateway.protocol.ohttp import decapsulate_request, encapsulate_request
from gateway.trust.binding import report_data_for
from gateway.trust.evidence.simulated import AZURE_GUEST_POLICY, ReportFields, SimulatedAmd
from gateway.trust.kms import KmsBackend, ReleasedKey, WrappingKey
from gateway.trust.maa import MaaClient
from gateway.trust.maa_wire import SevSnpVmRequest, SnpEvidence
from gateway.trust.policy import SnpPolicy
from gateway.trust.snp import POLICY_DEBUG

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
CLIENT_ID = "3c4a5b6d-0000-4000-8000-00000000a11c"
SUBJECT = "system:serviceaccount:whisper:ohttp-gateway"
KEY_NAME = "ohttp-hpke"
MEASUREMENT = "5a" * 48  # the simulated reports' launch measurement


def sevsnp_policy(authority: str, *conditions: dict[str, Any]) -> ReleasePolicy:
    """The confidential-containers policy shape, with extra conditions."""
    base = [
        {"claim": "x-ms-attestation-type", "equals": "sevsnpvm"},
        {"claim": "x-ms-sevsnpvm-is-debuggable", "equals": "false"},
        {"claim": "x-ms-sevsnpvm-vmpl", "equals": "0"},
    ]
    return ReleasePolicy.parse(
        {"version": "1.0.0", "anyOf": [{"authority": authority, "allOf": base + list(conditions)}]}
    )


@dataclass
class World:
    """The running emulators and what a client needs to reach them."""

    amd: SimulatedAmd
    tls: EmulatorTls
    maa: MaaEmulator
    other_maa: MaaEmulator
    entra: EntraEmulator
    federated: FederatedIssuer
    vault: KeyVaultEmulator
    signer: ReleaseSigner
    kms: CcfKmsEmulator
    ledger: Ledger
    urls: dict[str, str]

    @property
    def ca(self) -> Path:
        return self.tls.ca_path

    def token(
        self,
        wrapping_key: WrappingKey,
        *,
        debug: bool = False,
        measurement: bytes | None = None,
        maa: str = "maa",
    ) -> str:
        """A real MAA token for simulated evidence binding ``wrapping_key`` in its runtime data."""
        runtime = json.dumps({"keys": [wrapping_key.jwk()]}).encode()
        fields = ReportFields(report_data=report_data_for(runtime))
        if debug:
            fields = replace(fields, policy=AZURE_GUEST_POLICY | POLICY_DEBUG)
        if measurement is not None:
            fields = replace(fields, measurement=measurement)
        evidence = SnpEvidence(self.amd.report(fields), self.amd.cert_chain_pem())
        request = SevSnpVmRequest(evidence, runtime, nonce=uuid.uuid4().hex)

        async def attest() -> str:
            async with MaaClient(self.urls[maa], ca_bundle=self.ca) as client:
                return await client.attest_sev_snp_vm(request)

        return asyncio.run(attest())

    def workload_identity(self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
        """The environment the AKS workload-identity webhook injects, pointing at Entra."""
        token_file = tmp_path / "azure-identity-token"
        token_file.write_text(self.federated.issue(SUBJECT))
        monkeypatch.setenv("AZURE_CLIENT_ID", CLIENT_ID)
        monkeypatch.setenv("AZURE_TENANT_ID", TENANT)
        monkeypatch.setenv("AZURE_FEDERATED_TOKEN_FILE", str(token_file))
        monkeypatch.setenv("AZURE_AUTHORITY_HOST", self.urls["entra"] + "/")


B = TypeVar("B", bound=KmsBackend)
T = TypeVar("T")


def run_backend(backend: B, call: Callable[[B], Awaitable[T]]) -> T:
    """``call(backend)`` in a fresh event loop, the backend closed afterwards."""

    async def go() -> T:
        try:
            return await call(backend)
        finally:
            await backend.aclose()

    return asyncio.run(go())


def release(backend: KmsBackend, token: str, wrapping_key: WrappingKey) -> list[ReleasedKey]:
    return list(run_backend(backend, lambda b: b.release(token, wrapping_key)))


def assert_decrypts(released: ReleasedKey, published_hex: str | None = None) -> None:
    """The released key decapsulates a request encapsulated to its config (RFC 9458)."""
    key = released.gateway_key()
    if published_hex is not None:
        # The served config is byte for byte the one the KMS published (and its receipt binds).
        assert key.config.encode().hex() == published_hex
    request = b"\x00\x04POST\x05https\x09localhost\x06/score"
    encapsulated, _ = encapsulate_request(key.config, key.suites[0], request)
    plaintext, context = decapsulate_request(KeyRing([key]), encapsulated)
    assert plaintext == request
    assert context.header.key_id == released.key_id


def rsa_wrapping_key(kid: str = "gateway-transfer-key", bits: int = 2048) -> WrappingKey:
    return WrappingKey.from_private_key(kid, rsa.generate_private_key(65537, bits))


@contextmanager
def running_world(amd: SimulatedAmd, tls: EmulatorTls, state_dir: Path) -> Iterator[World]:
    group = ServerGroup()
    sockets = {name: bind_loopback() for name in ("maa", "other_maa", "entra", "vault", "kms")}
    urls = {name: socket_url(sock, tls=True) for name, sock in sockets.items()}
    # MAA's default policy passes debuggable guests (and reports it), so KMS policies decide.
    maa_policy = MaaPolicy(snp=SnpPolicy(allow_debug=True))
    maa = MaaEmulator(TokenSigner(urls["maa"]), MaaVerifier(amd.trust, maa_policy))
    other = MaaEmulator(TokenSigner(urls["other_maa"]), MaaVerifier(amd.trust, maa_policy))
    federated = FederatedIssuer()
    entra = EntraEmulator(urls["entra"], TENANT, federated, {CLIENT_ID: SUBJECT})
    signer = ReleaseSigner("127.0.0.1")
    vault = KeyVaultEmulator(
        urls["vault"], entra, TokenVerifier(tls.ca_path), signer, release_clients={CLIENT_ID}
    )
    ledger = Ledger(state_dir / "ccf")
    kms = CcfKmsEmulator(ledger, TokenVerifier(tls.ca_path), sevsnp_policy(urls["maa"]))
    apps = {"maa": maa.app, "other_maa": other.app, "entra": entra.app, "vault": vault.app}
    for name, app in apps.items():
        group.add(app, sockets[name], tls)
    group.add(kms.app, sockets["kms"], ledger.tls)
    with ExitStack() as stack:
        stack.enter_context(BackgroundServers(group))
        yield World(amd, tls, maa, other, entra, federated, vault, signer, kms, ledger, urls)
