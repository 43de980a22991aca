"""Shared fixtures: one backend double and one real gateway process per test module."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterator
from typing import TypeVar

import pytest

from tests.support.gateway_process import GatewayProcess, module_gateway
from tests.support.upstream_double import UpstreamDouble

T = TypeVar("T")


def run(coroutine: Awaitable[T]) -> T:
    """Drive one async test body on a fresh event loop."""
    return asyncio.run(coroutine)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def double() -> Iterator[UpstreamDouble]:
    server = UpstreamDouble().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def gateway(
    double: UpstreamDouble, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayProcess]:
    with module_gateway(
        double.url, tmp_path_factory, "gateway", "--upstream-read-timeout", "3"
    ) as process:
        yield process
