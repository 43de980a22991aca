"""Verification policy for SNP reports: what a genuine report must also satisfy (pure).

Accepts: an :class:`SnpPolicy` (frozen; build it from settings) and a parsed
:class:`~gateway.trust.snp.SnpReport` whose signature has already been verified.

Guarantees: :func:`check_policy` raises the first violated rule as its own
:class:`PolicyViolation` subclass, with a fixed message:

* :class:`DebugNotAllowed`: GUEST_POLICY.DEBUG set and ``allow_debug`` false (the default);
* :class:`MigrationAgentNotAllowed`: GUEST_POLICY.MIGRATE_MA set and not allowed (default);
* :class:`SmtNotAllowed`: GUEST_POLICY.SMT set and ``allow_smt`` false (Azure sets SMT, so
  the default allows it);
* :class:`VmplNotAllowed`: VMPL not in ``allowed_vmpls`` (default ``{0}``);
* :class:`TcbBelowMinimum`: any SPL of REPORTED_TCB below ``minimum_tcb`` (component-wise);
* :class:`MeasurementNotAllowed`: MEASUREMENT not in ``measurements`` when an allowlist is set;
* :class:`SigningKeyNotAllowed`: the report not signed by a VCEK.

Never does: verify signatures. ``measurements=None`` means no allowlist; an empty allowlist
would refuse everything and is rejected at construction as a configuration error.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from gateway.errors import (
    ConfigError,
    DebugNotAllowed,
    MeasurementNotAllowed,
    MigrationAgentNotAllowed,
    SigningKeyNotAllowed,
    SmtNotAllowed,
    TcbBelowMinimum,
    VmplNotAllowed,
)
from gateway.trust.snp import SigningKey, SnpReport, TcbVersion


@dataclass(frozen=True)
class SnpPolicy:
    allow_debug: bool = False
    allow_migration_agent: bool = False
    allow_smt: bool = True
    allowed_vmpls: frozenset[int] = frozenset({0})
    minimum_tcb: TcbVersion | None = None
    measurements: frozenset[bytes] | None = None  # None: no allowlist

    def __post_init__(self) -> None:
        if not self.allowed_vmpls or not all(0 <= v <= 3 for v in self.allowed_vmpls):
            raise ConfigError("allowed VMPLs must be a non-empty subset of 0..3")
        if self.measurements is not None and (
            not self.measurements or any(len(m) != 48 for m in self.measurements)
        ):
            raise ConfigError("measurement allowlist must hold 48-byte measurements")

    @classmethod
    def with_measurements(cls, hex_measurements: Iterable[str], **kwargs: Any) -> SnpPolicy:
        try:
            measurements = frozenset(bytes.fromhex(m) for m in hex_measurements)
        except ValueError as error:
            raise ConfigError("measurement allowlist must be hex") from error
        return cls(measurements=measurements, **kwargs)

    def to_json(self) -> Mapping[str, Any]:
        return {
            "allow_debug": self.allow_debug,
            "allow_migration_agent": self.allow_migration_agent,
            "allow_smt": self.allow_smt,
            "allowed_vmpls": sorted(self.allowed_vmpls),
            "minimum_tcb": None if self.minimum_tcb is None else self.minimum_tcb.to_json(),
            "measurements": None
            if self.measurements is None
            else sorted(m.hex() for m in self.measurements),
        }


def check_policy(report: SnpReport, policy: SnpPolicy) -> None:
    """Raise the first rule ``report`` violates."""
    if report.signing_key != SigningKey.VCEK:
        raise SigningKeyNotAllowed()
    if report.policy.debug_allowed and not policy.allow_debug:
        raise DebugNotAllowed()
    if report.policy.migrate_ma_allowed and not policy.allow_migration_agent:
        raise MigrationAgentNotAllowed()
    if report.policy.smt_allowed and not policy.allow_smt:
        raise SmtNotAllowed()
    if report.vmpl not in policy.allowed_vmpls:
        raise VmplNotAllowed()
    if policy.minimum_tcb is not None and not report.reported_tcb.at_least(policy.minimum_tcb):
        raise TcbBelowMinimum()
    if policy.measurements is not None and report.measurement not in policy.measurements:
        raise MeasurementNotAllowed()
