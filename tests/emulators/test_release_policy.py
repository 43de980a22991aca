"""Release-policy evaluation (Key Vault's grammar): one table of (condition, claims, verdict)."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.emulators.release_policy import ReleasePolicy
from gateway.errors import ConfigError

MAA = "https://sharedeus.eus.attest.azure.net"
CLAIMS = {
    "x-ms-attestation-type": "sevsnpvm",
    "x-ms-sevsnpvm-is-debuggable": False,
    "x-ms-sevsnpvm-vmpl": 0,
    "x-ms-sevsnpvm-guestsvn": 3,
    "x-ms-isolation-tee": {"x-ms-compliance-status": "azure-compliant-cvm"},
}


def policy(
    *conditions: dict[str, Any], group: str = "allOf", authority: str = MAA
) -> ReleasePolicy:
    return ReleasePolicy.parse(
        {"version": "1.0.0", "anyOf": [{"authority": authority, group: list(conditions)}]}
    )


@pytest.mark.parametrize(
    ("condition", "allowed"),
    [
        ({"claim": "x-ms-attestation-type", "equals": "sevsnpvm"}, True),
        ({"claim": "x-ms-attestation-type", "equals": "SEVSNPVM"}, False),
        ({"claim": "x-ms-attestation-type", "notEquals": "azurevm"}, True),
        ({"claim": "x-ms-sevsnpvm-is-debuggable", "equals": "false"}, True),
        ({"claim": "x-ms-sevsnpvm-is-debuggable", "equals": False}, True),
        ({"claim": "x-ms-sevsnpvm-is-debuggable", "equals": "true"}, False),
        ({"claim": "x-ms-sevsnpvm-is-debuggable", "equals": 0}, False),
        ({"claim": "x-ms-sevsnpvm-vmpl", "equals": "0"}, True),
        ({"claim": "x-ms-sevsnpvm-vmpl", "equals": 0}, True),
        ({"claim": "x-ms-sevsnpvm-guestsvn", "greaterOrEquals": 3}, True),
        ({"claim": "x-ms-sevsnpvm-guestsvn", "greater": "3"}, False),
        ({"claim": "x-ms-sevsnpvm-guestsvn", "less": 4}, True),
        ({"claim": "x-ms-sevsnpvm-guestsvn", "lessOrEquals": 2}, False),
        ({"claim": "x-ms-attestation-type", "greater": 1}, False),
        ({"claim": "x-ms-runtime", "exists": False}, True),
        ({"claim": "x-ms-sevsnpvm-vmpl", "exists": True}, True),
        ({"claim": "x-ms-missing", "equals": "x"}, False),
        ({"claim": "x-ms-missing", "notEquals": "x"}, False),
        (
            {"claim": "x-ms-isolation-tee.x-ms-compliance-status", "equals": "azure-compliant-cvm"},
            True,
        ),
        (
            {
                "anyOf": [
                    {"claim": "x-ms-sevsnpvm-vmpl", "equals": 1},
                    {"claim": "x-ms-sevsnpvm-vmpl", "equals": 0},
                ]
            },
            True,
        ),
        (
            {
                "allOf": [
                    {"claim": "x-ms-sevsnpvm-vmpl", "equals": 1},
                    {"claim": "x-ms-sevsnpvm-vmpl", "equals": 0},
                ]
            },
            False,
        ),
    ],
)
def test_condition(condition: dict[str, Any], allowed: bool) -> None:
    decision = policy(condition).evaluate(CLAIMS, MAA)
    assert decision.allowed is allowed
    assert bool(decision.reason) is not allowed


def test_reason_names_the_claim_and_operator_not_the_value() -> None:
    decision = policy({"claim": "x-ms-sevsnpvm-guestsvn", "greater": 99}).evaluate(CLAIMS, MAA)
    assert decision.reason == "claim x-ms-sevsnpvm-guestsvn fails greater"


def test_authority_must_match_the_issuer() -> None:
    ok = policy({"claim": "x-ms-sevsnpvm-vmpl", "equals": 0}, authority=MAA + "/")
    assert ok.evaluate(CLAIMS, MAA).allowed
    refused = ok.evaluate(CLAIMS, "https://attacker.attest.azure.net")
    assert refused.reason == "no policy authority matches the token issuer"


def test_any_group_at_top_level() -> None:
    conditions = [
        {"claim": "x-ms-sevsnpvm-vmpl", "equals": 2},
        {"claim": "x-ms-sevsnpvm-vmpl", "equals": 0},
    ]
    assert policy(*conditions, group="anyOf").evaluate(CLAIMS, MAA).allowed


@pytest.mark.parametrize(
    "document",
    [
        "not json",
        {"anyOf": []},
        {"version": "1.0.0", "anyOf": [{"allOf": [{"claim": "a", "equals": 1}]}]},
        {"version": "1.0.0", "anyOf": [{"authority": MAA}]},
        {"version": "1.0.0", "anyOf": [{"authority": MAA, "allOf": []}]},
        {"version": "1.0.0", "anyOf": [{"authority": MAA, "allOf": [{"claim": "a"}]}]},
        {"version": "1.0.0", "anyOf": [{"authority": MAA, "allOf": [{"claim": "a", "like": 1}]}]},
        {
            "version": "1.0.0",
            "anyOf": [{"authority": MAA, "allOf": [{"claim": "a", "equals": 1, "less": 2}]}],
        },
    ],
)
def test_malformed_policies_are_refused(document: object) -> None:
    with pytest.raises(ConfigError):
        ReleasePolicy.parse(document if isinstance(document, dict) else str(document))
