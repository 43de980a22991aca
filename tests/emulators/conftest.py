"""Fixtures for the emulator tests: one CA and server certificate per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.emulators.tls import EmulatorTls, ensure_tls


@pytest.fixture(scope="session")
def emulator_tls(tmp_path_factory: pytest.TempPathFactory) -> EmulatorTls:
    return ensure_tls(Path(tmp_path_factory.mktemp("emulator-state")))
