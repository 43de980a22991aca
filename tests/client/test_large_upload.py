"""A 25 MiB chunked upload through the CLI, the dev relay and the gateway keeps the client's
memory bounded: peak RSS growth under 64 MiB (measured in a child process from /proc: VmHWM
minus VmRSS before the CLI runs), and every byte arrives (the upstream double counts them)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.client.multipart import FileForm
from gateway.demo.backend import SAMPLE_AUDIO
from tests.client.conftest import key_configs_of
from tests.support.attested_gateway import AttestationWorld, GatewayTap
from tests.support.gateway_process import ROOT, GatewayProcess
from tests.support.listening import Listening
from tests.support.upstream_double import UpstreamDouble

AUDIO_SIZE = 25 * 1024 * 1024 + 12345
LIMIT_MIB = 64


@pytest.fixture(scope="module")
def sink_chain(
    tmp_path_factory: pytest.TempPathFactory, world: AttestationWorld
) -> Iterator[tuple[GatewayProcess, Listening, Path]]:
    logs = tmp_path_factory.mktemp("large")
    double = UpstreamDouble().start()
    gateway = GatewayProcess(double.url, logs / "gateway.log").start()
    try:
        document = world.document(key_configs_of(gateway.url))
        with GatewayTap(gateway.url, document) as tap:
            args = ("relay", "--gateway", tap.url, "--port", "0")
            with Listening(logs / "relay.log", "gateway.cli", *args) as relay:
                yield gateway, relay, logs
    finally:
        gateway.terminate()
        double.stop()


def test_25_mib_upload_keeps_client_rss_growth_under_64_mib(
    sink_chain: Any, world: AttestationWorld, tmp_path: Path
) -> None:
    gateway, relay, _ = sink_chain
    audio = tmp_path / "large.wav"
    digest = hashlib.sha256()
    with audio.open("wb") as sink:
        for _ in range(AUDIO_SIZE // (1 << 20) + 1):
            block = os.urandom(1 << 20)[: AUDIO_SIZE - sink.tell()]
            digest.update(block)
            sink.write(block)
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps(world.policy_document()))
    args = ["--gateway", gateway.url, "--relay", relay.url, "--policy", str(policy)]
    done, growth_mib = _probe(tmp_path, "transcribe", str(audio), "--progress", "always", *args)
    answer = json.loads(done.stdout)
    form = FileForm(audio, {"model": "whisper-1", "response_format": "json"})
    assert answer["received"] == form.content_length  # every byte of the form arrived
    assert answer["headers"]["content-type"].startswith("multipart/form-data; boundary=")
    assert "100%" in done.stderr  # the progress bar reached the end
    _, small_mib = _probe(tmp_path, "transcribe", str(SAMPLE_AUDIO), *args)
    print(
        f"client peak RSS growth: {growth_mib:.1f} MiB for {AUDIO_SIZE / (1 << 20):.1f} MiB,"
        f" {small_mib:.1f} MiB for the {SAMPLE_AUDIO.stat().st_size >> 10} KiB sample"
    )
    assert growth_mib < LIMIT_MIB
    # The fixed cost (TLS contexts, sessions, verification) is most of it: the audio is not held.
    assert growth_mib - small_mib < 16


def _probe(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], float]:
    out = tmp_path / "rss.json"
    done = subprocess.run(
        [sys.executable, "-m", "tests.client.rss_probe", str(out), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    measured = json.loads(out.read_text())
    return done, (measured["peak_kib"] - measured["baseline_kib"]) / 1024
