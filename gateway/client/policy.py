"""The client's attestation policy: what a gateway must prove before anything is sent to it.

Accepts a JSON policy file (see docs/client.md) or :meth:`AttestationPolicy.development`, the
policy of ``--allow-simulated``. Guarantees: every field is type-checked and unknown fields are
refused (:class:`ConfigError`), so a typo never silently weakens the policy; a policy file always
pins its MAA issuer, always refuses debuggable guests, and can never accept simulated evidence:
only :meth:`development` does, and it says so in ``allow_simulated``.

Never does: I/O beyond reading the files the policy names, or fall back to a default for a value
it could not parse.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509

from gateway.errors import ConfigError
from gateway.trust.amd import load_pem_certificates

DEFAULT_MAX_TOKEN_AGE = 9 * 3600.0  # MAA tokens live 8 h; the gateway refreshes before expiry
SVN_NAMES = ("bootloader", "tee", "snp", "microcode", "guest")
_FIELDS = {
    "maa_issuer",
    "maa_ca_bundle",
    "attestation_types",
    "compliance_statuses",
    "debug",
    "launch_measurements",
    "host_data",
    "id_key_digests",
    "minimum_svn",
    "max_token_age",
    "amd_roots",
}


@dataclass(frozen=True)
class AttestationPolicy:
    """One verification policy; allowlists of ``None`` mean "any value"."""

    maa_issuer: str | None
    attestation_types: frozenset[str] = frozenset({"sevsnpvm"})
    compliance_statuses: frozenset[str] = frozenset({"azure-compliant-cvm"})
    launch_measurements: frozenset[str] | None = None
    host_data: frozenset[str] | None = None
    id_key_digests: frozenset[str] | None = None
    minimum_svn: dict[str, int] = field(default_factory=dict)
    max_token_age: float = DEFAULT_MAX_TOKEN_AGE
    # None: AMD's pinned roots (gateway/trust/roots). Tests pin a simulated AMD root here.
    amd_roots: tuple[x509.Certificate, ...] | None = field(default=None, repr=False)
    maa_ca_bundle: Path | None = None
    allow_simulated: bool = False

    @classmethod
    def development(cls) -> AttestationPolicy:
        """``--allow-simulated``: a dev-mode gateway's own issuer and simulated AMD chain.

        The document is still checked end to end (token signature, binding, evidence signature,
        debug off): it proves the keys are the ones the gateway's evidence binds, not that the
        hardware is genuine. NOT CONFIDENTIAL.
        """
        return cls(
            maa_issuer=None,
            attestation_types=frozenset({"sevsnpvm", "azurevm"}),
            compliance_statuses=frozenset({"azure-compliant-cvm"}),
            allow_simulated=True,
        )

    @classmethod
    def from_file(cls, path: Path) -> AttestationPolicy:
        try:
            document = json.loads(path.read_bytes())
        except (OSError, ValueError) as error:
            raise ConfigError("the policy file cannot be read as JSON") from error
        return cls.from_json(document, base=path.parent)

    @classmethod
    def from_json(cls, document: Any, *, base: Path = Path()) -> AttestationPolicy:
        if not isinstance(document, dict):
            raise ConfigError("the policy must be a JSON object")
        unknown = set(document) - _FIELDS
        if unknown:
            raise ConfigError("the policy has unknown fields: " + ", ".join(sorted(unknown)))
        if document.get("debug", False) is not False:
            raise ConfigError('the policy must keep debug disabled ("debug": false)')
        issuer = document.get("maa_issuer")
        if not isinstance(issuer, str) or not issuer.startswith("https://"):
            raise ConfigError("the policy must pin maa_issuer, an https:// URL")
        return cls(
            maa_issuer=issuer.rstrip("/"),
            attestation_types=_names(document, "attestation_types", cls.attestation_types),
            compliance_statuses=_names(document, "compliance_statuses", cls.compliance_statuses),
            launch_measurements=_hex_list(document, "launch_measurements", 48),
            host_data=_hex_list(document, "host_data", 32),
            id_key_digests=_hex_list(document, "id_key_digests", 48),
            minimum_svn=_svns(document.get("minimum_svn", {})),
            max_token_age=_age(document.get("max_token_age", DEFAULT_MAX_TOKEN_AGE)),
            amd_roots=_roots(document.get("amd_roots"), base),
            maa_ca_bundle=_path(document.get("maa_ca_bundle"), base),
        )


def _names(document: dict[str, Any], name: str, default: frozenset[str]) -> frozenset[str]:
    value = document.get(name)
    if value is None:
        return default
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"policy {name} must be a non-empty list of strings")
    return frozenset(value)


def _hex_list(document: dict[str, Any], name: str, size: int) -> frozenset[str] | None:
    value = document.get(name)
    if value is None:
        return None
    if not isinstance(value, list) or not value:
        raise ConfigError(f"policy {name} must be a non-empty list (omit it to allow any)")
    found: set[str] = set()
    for item in value:
        try:
            raw = bytes.fromhex(item) if isinstance(item, str) else b""
        except ValueError:
            raw = b""
        if len(raw) != size:
            raise ConfigError(f"policy {name} entries must be {size}-byte hex strings")
        found.add(raw.hex())
    return frozenset(found)


def _svns(value: Any) -> dict[str, int]:
    if not isinstance(value, dict) or set(value) - set(SVN_NAMES):
        raise ConfigError("policy minimum_svn names only " + ", ".join(SVN_NAMES))
    for number in value.values():
        if not isinstance(number, int) or isinstance(number, bool) or not 0 <= number < 2**32:
            raise ConfigError("policy minimum_svn values must be non-negative integers")
    return dict(value)


def _age(value: Any) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
        raise ConfigError("policy max_token_age must be a positive number of seconds")
    return float(value)


def _path(value: Any, base: Path) -> Path | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise ConfigError("policy file paths must be strings")
    return base / value


def _roots(value: Any, base: Path) -> tuple[x509.Certificate, ...] | None:
    path = _path(value, base)
    if path is None:
        return None
    try:
        roots = load_pem_certificates(path.read_bytes())
    except OSError as error:
        raise ConfigError("policy amd_roots cannot be read") from error
    if not roots:
        raise ConfigError("policy amd_roots holds no certificate")
    return tuple(roots)
