"""Shared trust fixtures: the real public evidence, and one simulated AMD per session."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from gateway.trust.evidence.simulated import SimulatedAmd

DATA = Path(__file__).parent / "data"
# A fixed clock inside every certificate's validity: the real VCEK is valid until 2030.
NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="session")
def hcl_report_bytes() -> bytes:
    return (DATA / "azure-cvm-hcl-report.bin").read_bytes()


@pytest.fixture(scope="session")
def milan_chain_pem() -> bytes:
    return (DATA / "amd-milan-vcek-ask-ark.pem").read_bytes()


@pytest.fixture(scope="session")
def example_token() -> str:
    return (DATA / "maa-sevsnpvm-example-token-unsigned.txt").read_text().strip()


@pytest.fixture(scope="session")
def simulated_amd() -> SimulatedAmd:
    # 4096-bit like AMD's ARK/ASK: about a second, once per session.
    return SimulatedAmd.generate(now=NOW)


@pytest.fixture(scope="session")
def other_simulated_amd() -> SimulatedAmd:
    return SimulatedAmd.generate(now=NOW, rsa_bits=2048)
