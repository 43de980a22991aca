"""Attestation documents for client tests, made the way the gateway makes them, and a gateway tap.

:class:`AttestationWorld` runs a real MAA emulator over HTTPS on loopback (generated CA) with a
simulated AMD, and builds version-1 attestation documents (docs/attestation-document.md) for given
key configs: simulated SNP evidence whose runtime data carries user-data = SHA-256(keys) ‖
SHA-256(nonce), a token the MAA emulator issued for it, and the binding. Tampering helpers
re-sign modified claims with the emulator's own key (a genuine signature over a lie) or with
another key.

:class:`GatewayTap` is a small HTTP server the relay forwards to: it records the peer address
and the header names of everything it receives, then forwards to the real gateway unchanged,
streaming both ways. Until the gateway serves its own attestation document it can also answer
``GET /.well-known/ohttp-gateway/attestation`` with a document given by the test.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import secrets
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import jwt
from aiohttp import web
from cryptography.hazmat.primitives import serialization

from gateway.client.policy import AttestationPolicy
from gateway.emulators.maa import MaaEmulator
from gateway.emulators.maa_signing import TokenSigner
from gateway.emulators.maa_verify import MaaPolicy, MaaVerifier
from gateway.emulators.server import BackgroundServers, ServerGroup, bind_loopback, socket_url
from gateway.emulators.tls import EmulatorTls, ensure_tls
from gateway.trust.binding import user_data_for
from gateway.trust.evidence.simulated import ReportFields, SimulatedAmd, SimulatedEvidenceProvider
from gateway.trust.maa import MaaClient
from gateway.trust.maa_wire import SevSnpVmRequest, SnpEvidence
from gateway.trust.policy import SnpPolicy
from tests.support.upstream_double import free_port

MEASUREMENT = "5a" * 48  # the simulated reports' default launch measurement
DOCUMENT_PATH = "/.well-known/ohttp-gateway/attestation"


@dataclass
class AttestationWorld:
    amd: SimulatedAmd
    tls: EmulatorTls
    maa_url: str
    signer: TokenSigner = field(repr=False)
    roots_path: Path

    def document(
        self,
        key_configs: bytes,
        *,
        fields: ReportFields | None = None,
        dev_mode: bool = False,
        provider: str = "sev-guest",
    ) -> dict[str, Any]:
        """A document exactly as the contract says, with a token from the MAA emulator."""
        nonce = secrets.token_bytes(32)
        user_data = user_data_for(key_configs, nonce)
        evidence = SimulatedEvidenceProvider(self.amd, fields=fields).collect(user_data)
        request = SevSnpVmRequest(
            SnpEvidence(evidence.report, evidence.cert_chain), evidence.runtime_data, nonce=None
        )

        async def attest() -> str:
            async with MaaClient(self.maa_url, ca_bundle=self.tls.ca_path) as client:
                return await client.attest_sev_snp_vm(request)

        token = asyncio.run(attest())
        claims = jwt.decode(token, options={"verify_signature": False})
        return {
            "version": 1,
            "dev_mode": dev_mode,
            "evidence_provider": provider,
            "maa": {"issuer": self.maa_url, "route": "SevSnpVm"},
            "token": token,
            "evidence": {
                "kind": "snp",
                "report": _b64(evidence.report),
                "certificates": evidence.cert_chain.decode(),
                "runtime_data": _b64(evidence.runtime_data),
            },
            "binding": {
                "construction": "user-data = SHA-256(application/ohttp-keys) || SHA-256(nonce)",
                "key_configs": _b64(key_configs),
                "key_configs_sha256": hashlib.sha256(key_configs).hexdigest(),
                "nonce": _b64(nonce),
                "user_data": user_data.hex().upper(),
            },
            "issued_at": claims["iat"],
            "expires_at": claims["exp"],
        }

    def resign(
        self,
        document: dict[str, Any],
        changes: dict[str, Any],
        signer: TokenSigner | None = None,
    ) -> dict[str, Any]:
        """The document with its token's claims changed (a value of ``None`` deletes the claim)
        and signed again, by the world's MAA key unless another ``signer`` is given."""
        claims = jwt.decode(document["token"], options={"verify_signature": False})
        for name, value in changes.items():
            if value is None:
                claims.pop(name, None)
            else:
                claims[name] = value
        return {**document, "token": (signer or self.signer).sign(claims)}

    def policy_document(self) -> dict[str, Any]:
        """The production policy for this world: pinned issuer, simulated AMD root pinned."""
        return {
            "maa_issuer": self.maa_url,
            "maa_ca_bundle": str(self.tls.ca_path),
            "amd_roots": str(self.roots_path),
            "debug": False,
            "attestation_types": ["sevsnpvm"],
            "compliance_statuses": ["azure-compliant-cvm"],
            "launch_measurements": [MEASUREMENT],
            "host_data": ["00" * 32],
            "id_key_digests": ["00" * 48],
            "minimum_svn": {"bootloader": 1, "snp": 1, "microcode": 1},
            "max_token_age": 3600,
        }

    def policy(self, **overrides: Any) -> AttestationPolicy:
        return replace(AttestationPolicy.from_json(self.policy_document()), **overrides)


@contextmanager
def attestation_world(state_dir: Path) -> Iterator[AttestationWorld]:
    amd = SimulatedAmd.generate(now=datetime.now(UTC), rsa_bits=2048)
    tls = ensure_tls(state_dir)
    roots = state_dir / "simulated-ark.pem"
    roots.write_bytes(amd.ark.public_bytes(serialization.Encoding.PEM))
    group = ServerGroup()
    sock = bind_loopback()
    url = socket_url(sock, tls=True)
    signer = TokenSigner(url)
    # MAA's default policy passes a debuggable guest and reports it: the client must refuse.
    maa = MaaEmulator(signer, MaaVerifier(amd.trust, MaaPolicy(snp=SnpPolicy(allow_debug=True))))
    group.add(maa.app, sock, tls)
    with ExitStack() as stack:
        stack.enter_context(BackgroundServers(group))
        yield AttestationWorld(amd, tls, url, signer, roots)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def other_signer(world: AttestationWorld) -> TokenSigner:
    """A signer claiming the same issuer with another key: the wrong MAA signer."""
    return TokenSigner(world.maa_url)


@dataclass
class Seen:
    peer: str
    method: str
    path: str
    headers: list[str]


class GatewayTap:
    """Records what reaches the gateway (peer, header names), then forwards it unchanged."""

    def __init__(self, gateway: str, document: dict[str, Any] | None = None) -> None:
        self.gateway = gateway.rstrip("/")
        self.document = document
        self.seen: list[Seen] = []
        self.body_bytes = 0  # request body bytes forwarded so far (streaming is observable)
        # path -> bodies answered to the next GETs of that path instead of the gateway's (stale
        # keys and documents, as a client would see them before a rotation)
        self.overrides: dict[str, list[bytes]] = {}
        self.port = free_port()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> GatewayTap:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def __exit__(self, *exc_info: object) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    async def _start(self) -> None:
        app = web.Application(client_max_size=0)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._session = aiohttp.ClientSession(auto_decompress=False)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def _stop(self) -> None:
        assert self._runner is not None
        await self._runner.cleanup()
        await self._session.close()

    async def _counted(self, request: web.Request) -> AsyncIterator[bytes]:
        async for data in request.content.iter_any():
            self.body_bytes += len(data)
            yield data

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        peer = request.transport.get_extra_info("peername")[0] if request.transport else ""
        names = [name.lower() for name in request.headers]
        self.seen.append(Seen(peer, request.method, request.path, names))
        queued = self.overrides.get(request.path)
        if request.method == "GET" and queued:
            return web.Response(body=queued.pop(0), content_type=_media_type(request.path))
        if request.path == DOCUMENT_PATH and self.document is not None:
            return web.json_response(self.document, headers={"Cache-Control": "no-store"})
        passed = ("Content-Type", "Content-Length", "Incremental")
        headers = {k: request.headers[k] for k in passed if k in request.headers}
        body = self._counted(request) if request.method == "POST" else None
        async with self._session.request(
            request.method, self.gateway + request.path_qs, data=body, headers=headers
        ) as answer:
            response = web.StreamResponse(status=answer.status)
            for name in ("Content-Type", "Content-Length", "Incremental", "Cache-Control"):
                if name in answer.headers:
                    response.headers[name] = answer.headers[name]
            await response.prepare(request)
            async for data in answer.content.iter_any():
                await response.write(data)
            await response.write_eof()
            return response


def _media_type(path: str) -> str:
    return "application/json" if path == DOCUMENT_PATH else "application/ohttp-keys"
