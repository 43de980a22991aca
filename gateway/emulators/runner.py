"""The set of emulators ``ohttp-gateway emulate`` runs, and the settings that point the gateway
at them.

Accepts a state directory. Guarantees: the emulators' CA and server certificate
(:mod:`gateway.emulators.tls`), one simulated AMD root of trust with one simulated chip
(``simulated-amd.pem``, shared with the gateway's ``simulated`` evidence provider) and the MAA
signing key are created there once and reused; the MAA emulator (HTTPS) trusts exactly that
simulated ARK; the IMDS double (HTTP) serves that chip's VCEK chain; every server binds to
loopback. :meth:`Emulators.settings` is exactly the environment ``ohttp-gateway serve`` needs to
use them. Other emulators (the KMSs) join through :meth:`Emulators.add`.

Never: binds beyond loopback, or lets the simulated root be mistaken for AMD's (the simulated
names say so, and a verifier pinning AMD's roots refuses them).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from starlette.types import ASGIApp

from gateway.emulators.ccf_kms import CcfKmsEmulator
from gateway.emulators.keyvault import KeyVaultEmulator
from gateway.emulators.kms_emulators import add_kms_emulators
from gateway.emulators.maa import MaaEmulator
from gateway.emulators.maa_signing import TokenSigner
from gateway.emulators.maa_verify import MaaPolicy, MaaVerifier
from gateway.emulators.server import ServerGroup, bind_loopback, socket_url
from gateway.emulators.thim import THIM_PATH, thim_app
from gateway.emulators.tls import EmulatorTls, ensure_tls, write_private
from gateway.trust.evidence.simulated import SimulatedAmd

SIMULATED_AMD_FILE = "simulated-amd.pem"
MAA_KEY_FILE = "maa-signing-key.pem"


def default_state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "ohttp-gateway" / "emulators"


def load_or_create_simulated_amd(path: Path) -> SimulatedAmd:
    """The state directory's simulated AMD, generated (a few seconds of RSA-4096) if absent."""
    if path.is_file():
        return SimulatedAmd.load(path.read_bytes())
    amd = SimulatedAmd.generate()
    write_private(path, amd.dump())
    return amd


@dataclass(frozen=True)
class Endpoint:
    name: str
    url: str


class Emulators:
    """Builds the emulators on bound loopback sockets; serve them with :attr:`group`."""

    # Set by add_kms_emulators; tests change their release policies and rotate keys through them.
    vault: KeyVaultEmulator
    ccf_kms: CcfKmsEmulator

    def __init__(
        self,
        state_dir: Path,
        *,
        maa_policy: MaaPolicy | None = None,
        maa_port: int = 0,
        thim_port: int = 0,
    ) -> None:
        state_dir.mkdir(parents=True, exist_ok=True)
        self.state_dir = state_dir
        self.tls: EmulatorTls = ensure_tls(state_dir)
        self.amd_path = state_dir / SIMULATED_AMD_FILE
        self.amd = load_or_create_simulated_amd(self.amd_path)
        self.group = ServerGroup()
        self.endpoints: list[Endpoint] = []
        self._settings: dict[str, str] = {
            "OHTTP_GATEWAY_CA_BUNDLE": str(self.tls.ca_path),
            "OHTTP_GATEWAY_EVIDENCE_PROVIDER": "simulated",
            "OHTTP_GATEWAY_SIMULATED_AMD": str(self.amd_path),
        }
        maa_url = self.add(
            "maa",
            lambda url: self._maa_app(url, maa_policy),
            tls=True,
            port=maa_port,
            setting="OHTTP_GATEWAY_MAA_URL",
        )
        self.maa_url = maa_url
        thim = thim_app(self.amd.thim_bundle())
        base = self.add("imds", lambda url: thim, tls=False, port=thim_port)
        self.thim_url = base + THIM_PATH
        self._settings["OHTTP_GATEWAY_THIM_URL"] = self.thim_url
        add_kms_emulators(self)

    def _maa_app(self, url: str, policy: MaaPolicy | None) -> ASGIApp:
        signer = TokenSigner(url, key_path=self.state_dir / MAA_KEY_FILE)
        self.maa = MaaEmulator(signer, MaaVerifier(self.amd.trust, policy))
        return self.maa.app

    def add(
        self,
        name: str,
        make_app: Callable[[str], ASGIApp],
        *,
        tls: bool,
        port: int = 0,
        setting: str | None = None,
    ) -> str:
        """Serve ``make_app(url)`` on a new loopback socket; returns its URL."""
        sock = bind_loopback(port=port)
        url = socket_url(sock, tls=tls)
        self.group.add(make_app(url), sock, self.tls if tls else None)
        self.endpoints.append(Endpoint(name, url))
        if setting is not None:
            self._settings[setting] = url
        return url

    def setting(self, name: str, value: str) -> None:
        """Record (or replace) one setting, for emulators that join through :meth:`add`."""
        self._settings[name] = value

    def settings(self) -> dict[str, str]:
        """The environment ``ohttp-gateway serve`` needs to use these emulators."""
        return dict(self._settings)
