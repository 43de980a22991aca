"""The gateway's settings: one frozen, typed object built from flags and environment variables.

Contract (docs/configuration.md): every setting has a flag and an ``OHTTP_GATEWAY_*`` variable of
the same meaning; a flag given on the command line wins over the variable, which wins over the
default. Every value is parsed and checked here, once: a bad value raises :class:`ConfigError`
with a one-line message naming the setting, never the offending value (it may be a secret).
Nothing falls back silently. Secrets are :class:`Secret` values, masked in ``repr`` and in
:meth:`Settings.masked`, which is what ``check-config`` prints.
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from gateway.errors import ConfigError

ENV_PREFIX = "OHTTP_GATEWAY_"
MASK = "********"

DEFAULT_ALLOWED_PATHS = (
    "/v1/audio/transcriptions",
    "/v1/audio/translations",
    "/openai/deployments/{name}/audio/transcriptions",
    "/openai/deployments/{name}/audio/translations",
    # What Microsoft's attested-ohttp-client targets through the Azure profile (/score).
    "/whisper/transcriptions",
    "/whisper/translations",
)

EVIDENCE_PROVIDERS = ("azure-vtpm", "sev-guest", "simulated")
SEV_GUEST_TRANSPORTS = ("auto", "configfs", "ioctl", "legacy-ioctl")
KMS_BACKENDS = ("akv", "ccf", "dev")
LOG_LEVELS = ("debug", "info", "warning", "error")
KEY_AGREEMENT_PLACES = ("process", "thread")
KUBERNETES_EVENTS = ("auto", "on", "off")
SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
_PATH_PATTERN = re.compile(r"^(/([A-Za-z0-9._~-]+|\{name\}))+$")


class Secret:
    """A string that never shows itself in ``repr``, ``str`` or f-strings."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret({MASK})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True)
class Settings:
    """The effective configuration. Build it with :func:`load_settings`."""

    host: str = "127.0.0.1"
    port: int = 8080
    metrics_port: int = 9090
    workers: int = 1
    upstream: str = "http://127.0.0.1:8000"
    allowed_paths: tuple[str, ...] = DEFAULT_ALLOWED_PATHS
    max_body_bytes: int = 27_262_976
    max_header_bytes: int = 65_536
    max_concurrency: int = 64
    upstream_connect_timeout: float = 5.0
    upstream_read_timeout: float = 600.0
    replay_window: float = 60.0
    replay_capacity: int = 1 << 19
    drain_timeout: float = 30.0
    body_idle_timeout: float = 30.0
    body_min_rate: int = 100
    body_rate_grace: float = 30.0
    key_agreement: str = "process"
    log_level: str = "info"
    dev: bool = False
    dev_seed: Secret | None = None
    evidence_provider: str = "azure-vtpm"
    maa_url: str | None = None
    thim_url: str = "http://169.254.169.254/metadata/THIM/amd/certification"
    simulated_amd: Path | None = None
    tpm_tcti: str = "device:/dev/tpmrm0"
    tpm_pcrs: tuple[int, ...] = (0, 1, 2, 3, 4, 5, 6, 7)
    tpm_event_log: Path = Path("/sys/kernel/security/tpm0/binary_bios_measurements")
    hcl_refresh_timeout: float = 3.0
    sev_guest_transport: str = "auto"
    sev_guest_device: Path = Path("/dev/sev-guest")
    sev_guest_legacy_device: Path = Path("/dev/sev")
    tsm_report_dir: Path = Path("/sys/kernel/config/tsm/report")
    sev_guest_vmpl: int = 0
    host_amd_certs: Path | None = None
    kms_backend: str = "akv"
    akv_vault_url: str | None = None
    akv_key_name: str | None = None
    akv_key_id: int | None = None
    ccf_url: str | None = None
    ccf_service_cert: Path | None = None
    ca_bundle: Path | None = None
    key_refresh_interval: float = 300.0
    key_grace_period: float = 3600.0
    trust_retry_max_delay: float = 60.0
    kubernetes_events: str = "auto"
    pod_name: str | None = None
    pod_namespace: str | None = None
    kubernetes_token_file: Path = SERVICE_ACCOUNT_DIR / "token"
    kubernetes_ca_file: Path = SERVICE_ACCOUNT_DIR / "ca.crt"

    def masked(self) -> dict[str, object]:
        """The settings as plain values for display, secrets replaced by a mask."""
        shown: dict[str, object] = {}
        for spec in SPECS:
            value = getattr(self, spec.name)
            if isinstance(value, Secret):
                value = MASK
            elif isinstance(value, tuple):
                value = list(value)
            elif isinstance(value, Path):
                value = str(value)
            shown[spec.name] = value
        return shown


# --- parsers: text -> typed value, or ValueError with a fixed reason ---------------------------


def _integer(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        if not re.fullmatch(r"\s*\d+\s*", text):
            raise ValueError("must be a whole number")
        value = int(text)
        if not low <= value <= high:
            raise ValueError(f"must be between {low} and {high}")
        return value

    return parse


def _seconds(low: float, high: float) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise ValueError("must be a number of seconds") from None
        if not low <= value <= high or value != value:
            raise ValueError(f"must be between {low:g} and {high:g} seconds")
        return value

    return parse


def _boolean(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError("must be true or false")


def _choice(options: tuple[str, ...]) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text not in options:
            raise ValueError("must be one of " + ", ".join(options))
        return text

    return parse


def _host(text: str) -> str:
    if not text or not re.fullmatch(r"[A-Za-z0-9.:\-\[\]]+", text):
        raise ValueError("must be an IP address or host name")
    return text


def _http_url(text: str, *, https_only: bool = False, bare: bool = False) -> str:
    parts = urlsplit(text)
    allowed = ("https",) if https_only else ("http", "https")
    if parts.scheme not in allowed or not parts.hostname:
        raise ValueError("must be an " + " or ".join(allowed) + " URL with a host")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise ValueError("must not carry credentials, a query or a fragment")
    if bare and parts.path not in ("", "/"):
        raise ValueError("must not carry a path")
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise ValueError("has an invalid port") from None
    return text.rstrip("/") if bare else text


def _upstream(text: str) -> str:
    return _http_url(text, bare=True)


def _https_url(text: str) -> str:
    return _http_url(text, https_only=True)


def _paths(text: str) -> tuple[str, ...]:
    paths = tuple(p.strip() for p in text.split(",") if p.strip())
    if not paths:
        raise ValueError("must name at least one path")
    for path in paths:
        if not _PATH_PATTERN.fullmatch(path):
            raise ValueError("each path must be /segment/... with only {name} as a placeholder")
    return paths


def _pcrs(text: str) -> tuple[int, ...]:
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts or not all(p.isdigit() and int(p) <= 23 for p in parts):
        raise ValueError("must be comma-separated PCR indexes within 0..23")
    pcrs = tuple(int(p) for p in parts)
    if len(set(pcrs)) != len(pcrs):
        raise ValueError("must not repeat a PCR")
    return pcrs


def _path(text: str) -> Path:
    if not text.strip():
        raise ValueError("must not be empty")
    return Path(text.strip())


def _file(text: str) -> Path:
    path = Path(text)
    if not path.is_file():
        raise ValueError("must be an existing file")
    return path


def _secret(text: str) -> Secret:
    if len(text) < 16:
        raise ValueError("must be at least 16 characters")
    return Secret(text)


def _switch(text: str) -> str:
    """auto, on or off; true/false (and the other boolean spellings) mean on/off."""
    if text.strip().lower() == "auto":
        return "auto"
    return "on" if _boolean(text) else "off"


def _dns_label(text: str) -> str:
    if not re.fullmatch(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?", text):
        raise ValueError("must be a Kubernetes object name (lowercase DNS subdomain)")
    return text


def _text(text: str) -> str:
    if not text.strip():
        raise ValueError("must not be empty")
    return text.strip()


@dataclass(frozen=True)
class Spec:
    """One setting: its field, flag, parser and help line."""

    name: str
    parse: Callable[[str], Any]
    help: str
    is_flag: bool = False
    repeatable: bool = False

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-").removesuffix("s" if self.repeatable else "")

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.name.upper()


SPECS: tuple[Spec, ...] = (
    Spec("host", _host, "listen address"),
    Spec("port", _integer(0, 65535), "listen port"),
    Spec("metrics_port", _integer(0, 65535), "Prometheus metrics port (0 disables)"),
    Spec("workers", _integer(1, 64), "worker processes"),
    Spec("upstream", _upstream, "the Whisper container's base URL, fixed"),
    Spec("allowed_paths", _paths, "inner path allowlist (repeatable)", repeatable=True),
    Spec("max_body_bytes", _integer(1024, 1 << 34), "largest encapsulated request, bytes"),
    Spec("max_header_bytes", _integer(1024, 1 << 20), "largest header section, bytes"),
    Spec("max_concurrency", _integer(1, 100_000), "requests processed at once"),
    Spec("upstream_connect_timeout", _seconds(0.01, 3600), "upstream connect timeout"),
    Spec("upstream_read_timeout", _seconds(0.01, 86_400), "upstream read timeout"),
    Spec("replay_window", _seconds(1, 86_400), "Date skew accepted and enc memory, seconds"),
    Spec("replay_capacity", _integer(1024, 1 << 26), "enc values remembered, all workers"),
    Spec("drain_timeout", _seconds(0, 3600), "seconds to drain in-flight requests on SIGTERM"),
    Spec("body_idle_timeout", _seconds(0.05, 3600), "longest wait for the next body bytes"),
    Spec("body_min_rate", _integer(0, 1 << 30), "least body bytes/s after the grace (0: off)"),
    Spec("body_rate_grace", _seconds(1, 86_400), "seconds of body waiting before the rate counts"),
    Spec("key_agreement", _choice(KEY_AGREEMENT_PLACES), "where P-384 ECDH runs, per worker"),
    Spec("log_level", _choice(LOG_LEVELS), "log level"),
    Spec("dev", _boolean, "dev mode: in-memory keys, NOT confidential", is_flag=True),
    Spec("dev_seed", _secret, "secret seed so dev replicas share keys"),
    Spec("evidence_provider", _choice(EVIDENCE_PROVIDERS), "attestation evidence provider"),
    Spec("maa_url", _https_url, "Microsoft Azure Attestation endpoint"),
    Spec("thim_url", _http_url, "IMDS THIM endpoint for the VCEK chain"),
    Spec("simulated_amd", _file, "simulated provider: the AMD bundle shared with `emulate`"),
    Spec("tpm_tcti", _text, "azure-vtpm: TPM transport (TCTI), e.g. device:/dev/tpmrm0"),
    Spec("tpm_pcrs", _pcrs, "azure-vtpm: sha256 PCRs quoted and bound into the key policy"),
    Spec("tpm_event_log", _path, "azure-vtpm: TCG event log (absent: sent empty)"),
    Spec("hcl_refresh_timeout", _seconds(0, 60), "azure-vtpm: wait for the HCL report refresh"),
    Spec("sev_guest_transport", _choice(SEV_GUEST_TRANSPORTS), "sev-guest: report interface"),
    Spec("sev_guest_device", _path, "sev-guest: SNP guest device (Linux 6.x)"),
    Spec("sev_guest_legacy_device", _path, "sev-guest: SNP guest device (Linux 5.x)"),
    Spec("tsm_report_dir", _path, "sev-guest: configfs-tsm report directory"),
    Spec("sev_guest_vmpl", _integer(0, 3), "sev-guest: VMPL to request the report at"),
    Spec("host_amd_certs", _file, "sev-guest: host VCEK chain (THIM JSON or PEM), else THIM"),
    Spec("kms_backend", _choice(KMS_BACKENDS), "key release backend"),
    Spec("akv_vault_url", _https_url, "Key Vault or Managed HSM URL"),
    Spec("akv_key_name", _text, "the released key's name"),
    Spec("akv_key_id", _integer(0, 255), "fixed OHTTP key id (default: per key version)"),
    Spec("ccf_url", _https_url, "Azure confidential KMS URL"),
    Spec("ccf_service_cert", _file, "pinned KMS service certificate (PEM file)"),
    Spec("ca_bundle", _file, "extra CA bundle for MAA/KMS TLS"),
    Spec("key_refresh_interval", _seconds(0.1, 86_400), "seconds between key release refreshes"),
    Spec("key_grace_period", _seconds(0, 7 * 86_400), "seconds a superseded key still decrypts"),
    Spec("trust_retry_max_delay", _seconds(0.1, 3600), "cap of the MAA/KMS retry backoff"),
    Spec("kubernetes_events", _switch, "Kubernetes events and pod annotations: auto, on, off"),
    Spec("pod_name", _dns_label, "this pod's name (downward API), the events' subject"),
    Spec("pod_namespace", _dns_label, "this pod's namespace (downward API)"),
    Spec("kubernetes_token_file", _path, "service account token (in-cluster config)"),
    Spec("kubernetes_ca_file", _path, "the API server's CA (in-cluster config)"),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register every setting's flag. Defaults stay unset so that env and defaults apply later."""
    for spec in SPECS:
        if spec.is_flag:
            parser.add_argument(
                spec.flag, dest=spec.name, action="store_const", const="true", help=spec.help
            )
        elif spec.repeatable:
            parser.add_argument(spec.flag, dest=spec.name, action="append", help=spec.help)
        else:
            parser.add_argument(spec.flag, dest=spec.name, help=spec.help)


def load_settings(
    args: argparse.Namespace | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Flags over environment over defaults; raises ConfigError on the first bad value."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for spec in SPECS:
        raw = getattr(args, spec.name, None) if args is not None else None
        source = spec.flag
        if isinstance(raw, list):
            raw = ",".join(raw)
        if raw is None and spec.env in environ:
            raw, source = environ[spec.env], spec.env
        if raw is None:
            continue
        try:
            values[spec.name] = spec.parse(raw)
        except ValueError as error:
            raise ConfigError(f"{source}: {error}") from None
    settings = Settings(**values)
    _check_consistency(settings)
    return settings


def _check_consistency(settings: Settings) -> None:
    """Rules that involve more than one setting."""
    if settings.dev_seed is not None and not settings.dev:
        raise ConfigError("--dev-seed: only allowed with --dev")
    if settings.kms_backend == "dev" and not settings.dev:
        raise ConfigError("--kms-backend: dev is only allowed with --dev")
    if settings.metrics_port and settings.metrics_port == settings.port:
        raise ConfigError("--metrics-port: must differ from --port")
    if settings.kubernetes_events == "on" and not (settings.pod_name and settings.pod_namespace):
        raise ConfigError("--kubernetes-events: on needs --pod-name and --pod-namespace")
    if not settings.dev:
        _require_trust_settings(settings)


def _require_trust_settings(settings: Settings) -> None:
    required = {"akv": ("akv_vault_url", "akv_key_name"), "ccf": ("ccf_url",)}
    needed = ("maa_url", *required.get(settings.kms_backend, ()))
    for name in needed:
        if getattr(settings, name) is None:
            spec = next(s for s in SPECS if s.name == name)
            raise ConfigError(f"{spec.flag}: required unless --dev")


def setting_names() -> tuple[str, ...]:
    """Every setting's field name, for tests and documentation checks."""
    return tuple(f.name for f in fields(Settings))
