"""The key-release emulators ``ohttp-gateway emulate`` adds: Entra ID, Key Vault, confidential KMS.

Accepts the :class:`~gateway.emulators.runner.Emulators` being built (its MAA is the release
policies' authority). Guarantees:

* Entra ID (HTTPS) federates one client id with the service account ``SUBJECT``; a projected
  service-account token for it is written to ``azure-identity-token`` in the state directory;
* Key Vault (HTTPS) holds the exportable P-384 key ``KEY_NAME`` with the confidential-containers
  release policy (emulator MAA, ``sevsnpvm``, not debuggable, VMPL 0); its release-signing root
  joins the emulator CA in ``ca-bundle.pem``, which becomes ``OHTTP_GATEWAY_CA_BUNDLE``;
* the confidential KMS (HTTPS with its own CCF-style service identity, ``ccf-service.pem``) has
  one key, under the same policy;
* the settings gain the workload-identity environment (``AZURE_*``, as the AKS webhook injects)
  and ``OHTTP_GATEWAY_AKV_*`` / ``OHTTP_GATEWAY_CCF_*``.

Never: binds beyond loopback; writes anything outside the state directory.
"""

from __future__ import annotations

import os
import uuid
from typing import TYPE_CHECKING

from starlette.types import ASGIApp

from gateway.emulators.attestation_tokens import TokenVerifier
from gateway.emulators.ccf_kms import CcfKmsEmulator
from gateway.emulators.ccf_ledger import Ledger
from gateway.emulators.entra import EntraEmulator, FederatedIssuer
from gateway.emulators.keyvault import KeyVaultEmulator
from gateway.emulators.keyvault_signing import ReleaseSigner
from gateway.emulators.release_policy import ReleasePolicy
from gateway.emulators.server import bind_loopback, socket_url

if TYPE_CHECKING:
    from gateway.emulators.runner import Emulators

SUBJECT = "system:serviceaccount:default:ohttp-gateway"
KEY_NAME = "ohttp-hpke"
IDENTITY_FILE = "azure-identity-token"
BUNDLE_FILE = "ca-bundle.pem"


def default_policy(authority: str) -> ReleasePolicy:
    conditions = [
        {"claim": "x-ms-attestation-type", "equals": "sevsnpvm"},
        {"claim": "x-ms-sevsnpvm-is-debuggable", "equals": "false"},
        {"claim": "x-ms-sevsnpvm-vmpl", "equals": "0"},
    ]
    return ReleasePolicy.parse(
        {"version": "1.0.0", "anyOf": [{"authority": authority, "allOf": conditions}]}
    )


def add_kms_emulators(emulators: Emulators) -> None:
    """Serve the three emulators in ``emulators.group`` and record their settings."""
    state, tls = emulators.state_dir, emulators.tls
    tenant, client_id = str(uuid.uuid4()), str(uuid.uuid4())
    federated = FederatedIssuer()
    holder: dict[str, EntraEmulator] = {}

    def entra_app(url: str) -> ASGIApp:
        holder["entra"] = EntraEmulator(url, tenant, federated, {client_id: SUBJECT})
        return holder["entra"].app

    entra_url = emulators.add("entra", entra_app, tls=True)
    token_file = state / IDENTITY_FILE
    token_file.write_text(federated.issue(SUBJECT, lifetime=24 * 3600))
    policy = default_policy(emulators.maa_url)
    signer = ReleaseSigner("127.0.0.1")
    vaults: dict[str, KeyVaultEmulator] = {}

    def vault_app(url: str) -> ASGIApp:
        verifier = TokenVerifier(tls.ca_path)
        vaults["vault"] = KeyVaultEmulator(url, holder["entra"], verifier, signer)
        vaults["vault"].create_key(KEY_NAME, policy)
        return vaults["vault"].app

    emulators.add("keyvault", vault_app, tls=True, setting="OHTTP_GATEWAY_AKV_VAULT_URL")
    emulators.vault = vaults["vault"]
    ledger = Ledger(state)
    kms = CcfKmsEmulator(ledger, TokenVerifier(tls.ca_path), policy)
    kms.refresh()
    emulators.ccf_kms = kms
    sock = bind_loopback()
    kms_url = socket_url(sock, tls=True)
    emulators.group.add(kms.app, sock, ledger.tls)
    from gateway.emulators.runner import Endpoint  # runner imports this module

    emulators.endpoints.append(Endpoint("ccf-kms", kms_url))
    bundle = state / BUNDLE_FILE
    bundle.write_bytes(tls.ca_path.read_bytes() + signer.root_pem())
    os.chmod(bundle, 0o644)
    emulators.setting("OHTTP_GATEWAY_CA_BUNDLE", str(bundle))
    emulators.setting("OHTTP_GATEWAY_AKV_KEY_NAME", KEY_NAME)
    emulators.setting("OHTTP_GATEWAY_CCF_URL", kms_url)
    emulators.setting("OHTTP_GATEWAY_CCF_SERVICE_CERT", str(ledger.tls.ca_path))
    emulators.setting("AZURE_CLIENT_ID", client_id)
    emulators.setting("AZURE_TENANT_ID", tenant)
    emulators.setting("AZURE_FEDERATED_TOKEN_FILE", str(token_file))
    emulators.setting("AZURE_AUTHORITY_HOST", entra_url + "/")
