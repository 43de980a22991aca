"""The Key Vault and Entra emulators on the wire (plain HTTPS requests, TLS verified against the
generated CA): the challenge flow, the SDK's empty version segment, and each refusal's shape.
The real SDK clients' flows are in tests/trust/test_kms_akv.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from gateway.emulators.tls import EmulatorTls, ensure_tls
from gateway.trust.evidence.simulated import SimulatedAmd
from tests.support.kms_world import (
    CLIENT_ID,
    KEY_NAME,
    SUBJECT,
    TENANT,
    World,
    rsa_wrapping_key,
    running_world,
    sevsnp_policy,
)

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    state = Path(tmp_path_factory.mktemp("kv-wire"))
    tls: EmulatorTls = ensure_tls(state)
    amd = SimulatedAmd.generate(rsa_bits=2048)
    with running_world(amd, tls, state) as world:
        world.vault.create_key(KEY_NAME, sevsnp_policy(world.urls["maa"]))
        yield world


def _token_request(world: World, **changes: str) -> requests.Response:
    form = {
        "grant_type": "client_credentials",
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": world.federated.issue(SUBJECT),
        "client_id": CLIENT_ID,
        "scope": "https://vault.azure.net/.default",
    }
    form.update(changes)
    tenant = changes.pop("tenant", TENANT)
    url = f"{world.urls['entra']}/{tenant}/oauth2/v2.0/token"
    return requests.post(url, data=form, verify=str(world.ca), timeout=10)


def _access_token(world: World) -> str:
    answer = _token_request(world)
    assert answer.status_code == 200
    body = answer.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 3599
    return str(body["access_token"])


def _release(
    world: World,
    path: str,
    *,
    token: str | None,
    body: object = None,
    query: str = "?api-version=7.4",
) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.post(
        f"{world.urls['vault']}/keys/{path}{query}",
        json=body,
        headers=headers,
        verify=str(world.ca),
        timeout=10,
    )


def test_unauthenticated_probe_gets_the_challenge(world: World) -> None:
    answer = _release(world, f"{KEY_NAME}/release", token=None)
    assert answer.status_code == 401
    challenge = answer.headers["WWW-Authenticate"]
    assert challenge == (
        f'Bearer authorization="{world.urls["entra"]}/{TENANT}", resource="https://vault.azure.net"'
    )


@pytest.mark.parametrize("path", [f"{KEY_NAME}/release", f"{KEY_NAME}//release"])
def test_release_paths_including_the_sdks_empty_segment(world: World, path: str) -> None:
    wrapping = rsa_wrapping_key()
    body = {"target": world.token(wrapping), "nonce": "n-1", "enc": "RSA_AES_KEY_WRAP_256"}
    answer = _release(world, path, token=_access_token(world), body=body)
    assert answer.status_code == 200
    assert answer.json()["value"].count(".") == 2


@pytest.mark.parametrize(
    ("path", "body", "query", "status", "code"),
    [
        (f"{KEY_NAME}/release", {"target": "x"}, "", 400, "BadParameter"),
        (f"{KEY_NAME}/release", {"nonce": "no target"}, "?api-version=7.4", 400, "BadParameter"),
        (
            f"{KEY_NAME}/release",
            {"target": "x", "enc": "RSA1_5"},
            "?api-version=7.4",
            400,
            "BadParameter",
        ),
        (f"{KEY_NAME}/release", {"target": "not.a.token"}, "?api-version=7.4", 400, "BadParameter"),
        ("missing/release", {"target": "x"}, "?api-version=7.4", 404, "KeyNotFound"),
        (f"{KEY_NAME}/v1/v2/release", {"target": "x"}, "?api-version=7.4", 404, "NotFound"),
    ],
)
def test_bad_requests_get_key_vault_errors(
    world: World, path: str, body: object, query: str, status: int, code: str
) -> None:
    answer = _release(world, path, token=_access_token(world), body=body, query=query)
    assert answer.status_code == status
    assert answer.json()["error"]["code"] == code


def test_invalid_bearer_is_rechallenged(world: World) -> None:
    answer = _release(world, f"{KEY_NAME}/release", token="not-a-token", body={"target": "x"})
    assert answer.status_code == 401
    assert "WWW-Authenticate" in answer.headers


def test_client_without_release_permission_is_forbidden(world: World) -> None:
    world.vault.release_clients = {"someone-else"}
    try:
        answer = _release(
            world, f"{KEY_NAME}/release", token=_access_token(world), body={"target": "x"}
        )
    finally:
        world.vault.release_clients = {CLIENT_ID}
    assert answer.status_code == 403


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"client_assertion": "garbage"}, "invalid_client"),
        ({"client_id": "unknown"}, "unauthorized_client"),
        ({"grant_type": "password"}, "unsupported_grant_type"),
        ({"client_assertion_type": "secret"}, "invalid_client"),
        ({"scope": "https://vault.azure.net"}, "invalid_scope"),
        ({"tenant": "other-tenant"}, "invalid_request"),
    ],
)
def test_entra_refusals_are_oauth_errors(world: World, change: dict[str, str], error: str) -> None:
    answer = _token_request(world, **change)
    assert answer.status_code == 400
    body = answer.json()
    assert body["error"] == error
    assert body["error_description"].startswith("AADSTS")


def test_assertion_for_another_audience_is_refused(world: World) -> None:
    assertion = world.federated.issue(SUBJECT, audience="api://other")
    assert _token_request(world, client_assertion=assertion).json()["error"] == "invalid_client"


def test_entra_metadata_endpoints(world: World) -> None:
    base = world.urls["entra"]
    openid = requests.get(
        f"{base}/{TENANT}/v2.0/.well-known/openid-configuration", verify=str(world.ca), timeout=10
    )
    assert openid.json()["token_endpoint"] == f"{base}/{TENANT}/oauth2/v2.0/token"
    keys = requests.get(openid.json()["jwks_uri"], verify=str(world.ca), timeout=10).json()
    assert keys["keys"][0]["kty"] == "RSA"
    discovery = requests.get(f"{base}/common/discovery/instance", verify=str(world.ca), timeout=10)
    assert discovery.json()["tenant_discovery_endpoint"].endswith("/openid-configuration")
