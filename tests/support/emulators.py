"""Running real emulator servers on loopback for a test: HTTPS with the generated CA."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from starlette.types import ASGIApp

from gateway.emulators.server import BackgroundServers, ServerGroup, bind_loopback, socket_url
from gateway.emulators.tls import EmulatorTls


@dataclass(frozen=True)
class Served:
    url: str
    tls: EmulatorTls | None


@contextlib.contextmanager
def serve(make_app: Callable[[str], ASGIApp], tls: EmulatorTls | None) -> Iterator[Served]:
    """Serve the app ``make_app(url)`` (the URL is known before the app is built, as MAA's
    issuer must be) until the block ends."""
    sock = bind_loopback()
    url = socket_url(sock, tls=tls is not None)
    group = ServerGroup()
    group.add(make_app(url), sock, tls)
    with BackgroundServers(group):
        yield Served(url, tls)


def ca_path(tls: EmulatorTls | None) -> Path | None:
    return None if tls is None else tls.ca_path
