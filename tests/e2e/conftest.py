"""End-to-end fixtures: ``emulate``'s emulators in this process (real HTTPS servers on loopback)
and one upstream double; the gateways under test are real child processes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.emulators.runner import Emulators
from gateway.emulators.server import BackgroundServers
from tests.support.attested_process import make_emulators
from tests.support.upstream_double import UpstreamDouble


@pytest.fixture(scope="package")
def emulators(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulators]:
    emulators = make_emulators(Path(tmp_path_factory.mktemp("emulators")))
    with BackgroundServers(emulators.group):
        yield emulators


@pytest.fixture(scope="package")
def double() -> Iterator[UpstreamDouble]:
    server = UpstreamDouble().start()
    yield server
    server.stop()
