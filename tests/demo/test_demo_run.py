"""`ohttp-gateway demo` end to end: backend, gateway and client, real transcripts printed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gateway.demo.backend import SAMPLE_TEXT

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_demo_prints_the_transcript_for_every_profile() -> None:
    finished = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "demo"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert finished.returncode == 0, finished.stderr[-2000:]
    output = finished.stdout
    assert output.count(f"transcript: {SAMPLE_TEXT!r}") == 3  # plain, chunked, Azure
    assert f"transcript.text.done: {SAMPLE_TEXT!r}" in output  # streamed
    assert output.count("transcript.text.delta") == len(SAMPLE_TEXT.split())
    assert "NOT CONFIDENTIAL" in output
    assert "gateway stopped (exit 0)" in output
