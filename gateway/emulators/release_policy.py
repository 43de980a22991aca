"""Key release policies in Key Vault's grammar, evaluated as the KMS emulators' gatekeeper.

Accepts a policy document (``{"version": "1.0.0", "anyOf": [{"authority": URL, "allOf" |
"anyOf": [condition...]}...]}``; a condition is ``{"claim": "<dotted path>", "<op>": value}``
or a nested ``allOf``/``anyOf``; ops ``equals``, ``notEquals``, ``less``, ``lessOrEquals``,
``greater``, ``greaterOrEquals``, ``exists``), the verified token claims and the token's issuer.

Guarantees: :meth:`ReleasePolicy.parse` refuses any other shape (:class:`ConfigError`), so a
policy that is accepted is evaluated exactly as written; :meth:`ReleasePolicy.evaluate` allows
only if an ``anyOf`` entry's ``authority`` equals the issuer (trailing ``/`` ignored) and its
conditions hold; otherwise it returns the first reason it failed, naming the claim and the
operator (never the claim's value), e.g. ``claim x-ms-sevsnpvm-is-debuggable fails equals``.

Comparison rules (Key Vault's policies write booleans and numbers both bare and as strings):
a boolean claim equals ``true``/``"true"`` (any case); a numeric claim compares numerically with a
number or a numeric string; strings compare exactly; ``less``/``greater`` on non-numbers fail.
Dotted paths first try the whole name, then walk nested objects
(``x-ms-isolation-tee.x-ms-attestation-type``).
"""

from __future__ import annotations

import json
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from gateway.errors import ConfigError

_ORDERING: Mapping[str, Callable[[float, float], bool]] = {
    "less": operator.lt,
    "lessOrEquals": operator.le,
    "greater": operator.gt,
    "greaterOrEquals": operator.ge,
}
OPERATORS = frozenset({"equals", "notEquals", "exists", *_ORDERING})
_MISSING = object()
MAX_DEPTH = 8


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str = ""


def _lookup(claims: Mapping[str, Any], path: str) -> Any:
    if path in claims:
        return claims[path]
    value: Any = claims
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return _MISSING
        value = value[part]
    return value


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _equal(claim: Any, expected: Any) -> bool:
    if isinstance(claim, bool):
        if isinstance(expected, str):
            return expected.lower() == str(claim).lower()
        return isinstance(expected, bool) and claim is expected
    if isinstance(claim, int | float):
        number = _number(expected)
        return number is not None and float(claim) == number
    return bool(claim == expected)


def _holds(condition: Mapping[str, Any], claims: Mapping[str, Any]) -> str:
    """'' when the condition holds, else the reason."""
    for group in ("allOf", "anyOf"):
        if group in condition:
            return _group(group, condition[group], claims)
    path = condition["claim"]
    (op,) = (key for key in condition if key != "claim")
    expected, value = condition[op], _lookup(claims, path)
    if op == "exists":
        ok = (value is not _MISSING) == _truthy(expected)
    elif value is _MISSING:
        ok = False
    elif op == "equals":
        ok = _equal(value, expected)
    elif op == "notEquals":
        ok = not _equal(value, expected)
    else:
        left, right = _number(value), _number(expected)
        ok = left is not None and right is not None and _ORDERING[op](left, right)
    return "" if ok else f"claim {path} fails {op}"


def _truthy(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.lower() == "true")


def _group(kind: str, conditions: list[Mapping[str, Any]], claims: Mapping[str, Any]) -> str:
    reasons = [_holds(condition, claims) for condition in conditions]
    failed = [reason for reason in reasons if reason]
    if kind == "allOf":
        return failed[0] if failed else ""
    return failed[0] if len(failed) == len(reasons) else ""


def _check_condition(condition: object, depth: int) -> None:
    if not isinstance(condition, dict) or depth > MAX_DEPTH:
        raise ConfigError("release policy condition is malformed")
    groups = [key for key in ("allOf", "anyOf") if key in condition]
    if groups:
        if len(condition) != 1:
            raise ConfigError("release policy condition is malformed")
        _check_conditions(condition[groups[0]], depth + 1)
        return
    ops = [key for key in condition if key != "claim"]
    if not isinstance(condition.get("claim"), str) or len(ops) != 1 or ops[0] not in OPERATORS:
        raise ConfigError("release policy condition is malformed")


def _check_conditions(conditions: object, depth: int) -> None:
    if not isinstance(conditions, list) or not conditions:
        raise ConfigError("release policy condition list is malformed")
    for condition in conditions:
        _check_condition(condition, depth)


@dataclass(frozen=True)
class ReleasePolicy:
    """A parsed, well-formed policy; :attr:`document` is what the KMS returns with a key."""

    document: Mapping[str, Any]

    @classmethod
    def parse(cls, data: str | bytes | Mapping[str, Any]) -> ReleasePolicy:
        try:
            document = json.loads(data) if isinstance(data, str | bytes) else dict(data)
        except (ValueError, UnicodeDecodeError) as error:
            raise ConfigError("release policy is not JSON") from error
        entries = document.get("anyOf") if isinstance(document, dict) else None
        if document.get("version") not in ("1.0.0", "0.2") or not isinstance(entries, list):
            raise ConfigError("release policy must have a version and an anyOf list")
        for entry in entries:
            if not isinstance(entry, dict) or not isinstance(entry.get("authority"), str):
                raise ConfigError("release policy entries need an authority")
            groups = [key for key in entry if key != "authority"]
            if len(groups) != 1 or groups[0] not in ("allOf", "anyOf"):
                raise ConfigError("release policy entries need one allOf or anyOf")
            _check_conditions(entry[groups[0]], 1)
        return cls(document)

    @property
    def authorities(self) -> list[str]:
        return [entry["authority"].rstrip("/") for entry in self.document["anyOf"]]

    def evaluate(self, claims: Mapping[str, Any], issuer: str) -> Decision:
        reasons = []
        for entry in self.document["anyOf"]:
            if entry["authority"].rstrip("/") != issuer.rstrip("/"):
                continue
            group = "allOf" if "allOf" in entry else "anyOf"
            reason = _group(group, entry[group], claims)
            if not reason:
                return Decision(True)
            reasons.append(reason)
        if not reasons:
            return Decision(False, "no policy authority matches the token issuer")
        return Decision(False, reasons[0])
