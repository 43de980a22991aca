"""The demo backend's shared fixture: one phrase-list backend child process per test module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from gateway.demo.backend import BackendProcess, BackendSettings, RunningBackend
from tests.demo.helpers import PHRASES


@pytest.fixture(scope="module")
def phrase_backend() -> Iterator[RunningBackend]:
    """One phrase-list backend per test module, as a child process on a free loopback port."""
    with BackendProcess(BackendSettings(port=0, phrases=PHRASES, stream_pace=0.2)) as backend:
        yield backend
