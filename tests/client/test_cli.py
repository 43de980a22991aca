"""``ohttp-client`` as a user runs it (a child process), against the real dev gateway behind the
tap and the dev relay: output, exit codes and one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.demo.backend import SAMPLE_AUDIO, SAMPLE_TEXT
from tests.support.attested_gateway import AttestationWorld, GatewayTap
from tests.support.gateway_process import ROOT, GatewayProcess
from tests.support.listening import Listening
from tests.support.upstream_double import free_port


@pytest.fixture(scope="module")
def relay(
    tmp_path_factory: pytest.TempPathFactory, gateway: GatewayProcess, good_document: Any
) -> Iterator[tuple[GatewayTap, Listening]]:
    with GatewayTap(gateway.url, good_document) as tap:
        log = tmp_path_factory.mktemp("cli-relay") / "relay.log"
        with Listening(log, "gateway.cli", "relay", "--gateway", tap.url, "--port", "0") as running:
            yield tap, running


@pytest.fixture(scope="module")
def policy_file(tmp_path_factory: pytest.TempPathFactory, world: AttestationWorld) -> Path:
    path = tmp_path_factory.mktemp("policy") / "policy.json"
    path.write_text(json.dumps(world.policy_document()))
    return path


def ohttp_client(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway.client.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _route(relay: Any, gateway: GatewayProcess, policy: Path | None) -> list[str]:
    trust = ["--policy", str(policy)] if policy else ["--allow-simulated"]
    return ["--gateway", gateway.url, "--relay", relay[1].url, *trust]


def test_keys_prints_the_configs_through_the_relay(
    relay: Any, gateway: GatewayProcess, gateway_keys: bytes
) -> None:
    done = ohttp_client("keys", "--gateway", gateway.url, "--relay", relay[1].url)
    assert done.returncode == 0, done.stderr
    configs = json.loads(done.stdout)["key_configs"]
    assert {c["kem"] for c in configs} >= {"X25519_SHA256", "P384_SHA384"}


def test_verify_with_a_policy_file(relay: Any, gateway: GatewayProcess, policy_file: Path) -> None:
    done = ohttp_client("verify", *_route(relay, gateway, policy_file))
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["verified"] is True
    assert summary["simulated"] is False
    assert summary["attestation_type"] == "sevsnpvm"


def test_transcribe_json(relay: Any, gateway: GatewayProcess, policy_file: Path) -> None:
    done = ohttp_client("transcribe", str(SAMPLE_AUDIO), *_route(relay, gateway, policy_file))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["text"] == SAMPLE_TEXT


@pytest.mark.parametrize("response_format", ["text", "srt", "vtt", "verbose_json"])
def test_transcribe_formats(
    relay: Any, gateway: GatewayProcess, policy_file: Path, response_format: str
) -> None:
    route = _route(relay, gateway, policy_file)
    done = ohttp_client("transcribe", str(SAMPLE_AUDIO), "--format", response_format, *route)
    assert done.returncode == 0, done.stderr
    words = SAMPLE_TEXT.split()
    assert words[0] in done.stdout
    assert words[-1] in done.stdout
    if response_format == "vtt":
        assert done.stdout.startswith("WEBVTT")
    if response_format == "srt":
        assert "-->" in done.stdout


def test_transcribe_stream_prints_deltas(
    relay: Any, gateway: GatewayProcess, policy_file: Path
) -> None:
    route = _route(relay, gateway, policy_file)
    done = ohttp_client("transcribe", str(SAMPLE_AUDIO), "--stream", "--language", "en", *route)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == SAMPLE_TEXT


def test_transcribe_azure_path_shape(
    relay: Any, gateway: GatewayProcess, policy_file: Path
) -> None:
    route = _route(relay, gateway, policy_file)
    done = ohttp_client("transcribe", str(SAMPLE_AUDIO), "--azure-deployment", "whisper", *route)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["text"] == SAMPLE_TEXT
    assert relay[0].seen[-1].path == "/gateway"


def test_transcribe_through_azure_score_profile(
    relay: Any, gateway: GatewayProcess, policy_file: Path
) -> None:
    route = _route(relay, gateway, policy_file)
    args = ("transcribe", str(SAMPLE_AUDIO), "--azure-deployment", "whisper", "--score")
    done = ohttp_client(*args, *route)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["text"] == SAMPLE_TEXT
    assert relay[0].seen[-1].path == "/score"


def test_request_reports_an_inner_http_error_with_exit_1(
    relay: Any, gateway: GatewayProcess, policy_file: Path
) -> None:
    done = ohttp_client("request", "/v1/models", *_route(relay, gateway, policy_file))
    assert done.returncode == 1
    assert "status 403" in done.stderr


def test_request_chunked(relay: Any, gateway: GatewayProcess, policy_file: Path) -> None:
    route = _route(relay, gateway, policy_file)
    done = ohttp_client("request", "--chunked", "-X", "POST", "-d", "x", "/v1/models", *route)
    assert done.returncode == 1
    assert "status 403" in done.stderr


def test_a_dev_mode_gateway_needs_allow_simulated(
    tmp_path: Path,
    world: AttestationWorld,
    gateway: GatewayProcess,
    gateway_keys: bytes,
    policy_file: Path,
) -> None:
    dev = world.document(gateway_keys, dev_mode=True, provider="simulated")
    with GatewayTap(gateway.url, dev) as tap:
        route = ["--gateway", gateway.url, "--relay", tap.url]
        refused = ohttp_client(
            "transcribe", str(SAMPLE_AUDIO), *route, "--policy", str(policy_file)
        )
        assert refused.returncode == 3
        assert refused.stderr.strip().splitlines() == [
            "ohttp-client transcribe: Gateway runs in dev mode with simulated evidence; only"
            " --allow-simulated accepts it. [SimulatedEvidenceNotAllowed]"
        ]
        assert not [seen for seen in tap.seen if seen.method == "POST"]
        ca = ["--ca-bundle", str(world.tls.ca_path)]
        accepted = ohttp_client("transcribe", str(SAMPLE_AUDIO), *route, *ca, "--allow-simulated")
        assert accepted.returncode == 0, accepted.stderr
        assert "NOT CONFIDENTIAL" in accepted.stderr
        assert json.loads(accepted.stdout)["text"] == SAMPLE_TEXT


def test_usage_errors_exit_2(policy_file: Path, tmp_path: Path) -> None:
    both = ohttp_client(
        "verify",
        "--gateway",
        "http://127.0.0.1:1",
        "--policy",
        str(policy_file),
        "--allow-simulated",
    )
    assert both.returncode == 2
    bad_policy = tmp_path / "bad.json"
    bad_policy.write_text(json.dumps({"maa_issuer": "https://maa.example", "debug": True}))
    done = ohttp_client("verify", "--gateway", "http://127.0.0.1:1", "--policy", str(bad_policy))
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1
    missing = ohttp_client(
        "transcribe",
        str(tmp_path / "missing.wav"),
        "--gateway",
        "http://127.0.0.1:1",
        "--allow-simulated",
    )
    assert missing.returncode == 2


def test_an_unreachable_relay_exits_4(policy_file: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    done = ohttp_client("verify", "--gateway", url, "--policy", str(policy_file))
    assert done.returncode == 4
    assert done.stderr.strip().endswith("[ClientConnectionFailed]")
    assert len(done.stderr.strip().splitlines()) == 1
