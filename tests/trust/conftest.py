"""Shared trust fixtures: the real public evidence, one simulated AMD per session, and a real
swtpm provisioned like an Azure vTPM."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gateway.trust.evidence.simulated import SimulatedAmd
from tests.support import swtpm

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


@pytest.fixture(scope="session")
def golden(tmp_path_factory: pytest.TempPathFactory, simulated_amd: SimulatedAmd) -> swtpm.Golden:
    """One provisioned vTPM state per session (the AIK's RSA key generation is the slow part),
    its HCL report signed by the session's simulated AMD."""
    if swtpm.SWTPM is None:
        pytest.skip("swtpm is not installed")
    pytest.importorskip("tpm2_pytss")
    directory = tmp_path_factory.mktemp("golden") / "state"
    return swtpm.make_golden(directory, amd=simulated_amd)


@pytest.fixture
def vtpm(golden: swtpm.Golden) -> Iterator[swtpm.Swtpm]:
    """A fresh swtpm per test, started from the golden state; PCRs all zero."""
    with swtpm.Swtpm(golden.state) as tpm:
        yield tpm
