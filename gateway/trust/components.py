"""The key lifecycle's parts, built from the gateway's settings (docs/configuration.md).

Accepts :class:`~gateway.config.Settings` for a non-dev gateway, the server's
:class:`~gateway.trust.lifecycle.LifecycleObserver` and an optional notifier. Guarantees: the
evidence provider, its MAA route (``azure-vtpm`` → AzureGuest, whose token names the TPM's
ephemeral key; ``sev-guest`` and ``simulated`` → SevSnpVm, whose runtime data names our own RSA
key), the MAA client and the KMS backend are exactly the configured ones, all over verified TLS
with the CA bundle; MAA and KMS calls retry only briefly inside one attempt, since the lifecycle
owns the long, jittered backoff. A missing or unusable setting raises :class:`ConfigError` here,
before serving starts. Never: builds the ``dev`` backend (dev mode does not run a lifecycle).
"""

from __future__ import annotations

from gateway.config import Settings
from gateway.errors import ConfigError
from gateway.trust.attester import Attester, Record
from gateway.trust.evidence import EvidenceKind, EvidenceProvider
from gateway.trust.kms import KmsBackend
from gateway.trust.lifecycle import KeyLifecycle, LifecycleObserver, LifecycleTiming
from gateway.trust.maa import MaaClient
from gateway.trust.notifier import Notifier
from gateway.trust.rest import RetryPolicy

# One attempt of the lifecycle: a couple of quick tries, then the lifecycle's backoff takes over.
CALL_RETRY = RetryPolicy(attempts=2, base_delay=0.1, max_delay=0.5)
CALL_TIMEOUT = 10.0


def evidence_provider(settings: Settings) -> EvidenceProvider:
    name = settings.evidence_provider
    if name == "simulated":
        from gateway.trust.evidence.simulated import SimulatedAmd, SimulatedEvidenceProvider

        if settings.simulated_amd is None:
            raise ConfigError("--simulated-amd: required by the simulated evidence provider")
        amd = SimulatedAmd.load(settings.simulated_amd.read_bytes())
        return SimulatedEvidenceProvider(amd, EvidenceKind.SEV_SNP)
    if name == "azure-vtpm":
        from gateway.trust.evidence.azure_vtpm import AzureVtpmConfig, AzureVtpmProvider

        return AzureVtpmProvider(AzureVtpmConfig.from_settings(settings))
    if name == "sev-guest":
        from gateway.trust.evidence.sev_guest import SevGuestEvidenceProvider

        return SevGuestEvidenceProvider.from_settings(settings)
    raise ConfigError("--evidence-provider: unknown provider")


def kms_backend(settings: Settings) -> KmsBackend:
    if settings.kms_backend == "ccf":
        from gateway.trust.kms.ccf import CcfBackend, load_service_certificate

        if settings.ccf_url is None or settings.ccf_service_cert is None:
            raise ConfigError("--ccf-service-cert: required by the ccf backend")
        return CcfBackend(
            settings.ccf_url,
            load_service_certificate(settings.ccf_service_cert),
            ca_bundle=settings.ca_bundle,
            timeout=CALL_TIMEOUT,
            retry=CALL_RETRY,
        )
    if settings.kms_backend == "akv":
        from gateway.trust.kms.akv import AkvBackend

        if settings.akv_vault_url is None or settings.akv_key_name is None:
            raise ConfigError("--akv-vault-url: required by the akv backend")
        return AkvBackend(
            settings.akv_vault_url,
            settings.akv_key_name,
            key_id=settings.akv_key_id,
            ca_bundle=settings.ca_bundle,
            timeout=CALL_TIMEOUT,
        )
    raise ConfigError("--kms-backend: dev is only allowed with --dev")


def timing(settings: Settings) -> LifecycleTiming:
    return LifecycleTiming(
        refresh_interval=settings.key_refresh_interval,
        grace_period=settings.key_grace_period,
        retry_cap=settings.trust_retry_max_delay,
        retry_base=min(0.25, settings.trust_retry_max_delay),
    )


def build_attester(settings: Settings, record: Record) -> Attester:
    """The configured evidence provider and MAA client (dev mode too, for its document)."""
    if settings.maa_url is None:
        raise ConfigError("--maa-url: required unless --dev")
    maa = MaaClient(
        settings.maa_url, ca_bundle=settings.ca_bundle, timeout=CALL_TIMEOUT, retry=CALL_RETRY
    )
    return Attester(evidence_provider(settings), maa, thim_url=settings.thim_url, record=record)


def build_lifecycle(
    settings: Settings, observer: LifecycleObserver, notifier: Notifier | None = None
) -> KeyLifecycle:
    """The configured lifecycle, not started (``await lifecycle.run()`` in the event loop)."""
    if settings.dev:
        raise ConfigError("--dev: dev mode serves in-memory keys without a key lifecycle")
    attester = build_attester(settings, observer.record)
    return KeyLifecycle(
        attester, kms_backend(settings), observer, notifier=notifier, timing=timing(settings)
    )
