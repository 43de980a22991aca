"""Serving emulator apps with uvicorn on loopback sockets, in the foreground or a thread.

Accepts ASGI apps, each with a socket bound by :func:`bind_loopback` (so its port, and hence its
URL and, for MAA, its token issuer, is known before serving) and optional TLS material.
Guarantees: HTTPS when TLS is given, plain HTTP otherwise; all servers of a group start and stop
together; signals are handled once for the group by its owner, not by each uvicorn server.
Never: binds a non-loopback address.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import threading
from collections.abc import Iterator
from types import TracebackType

import uvicorn
from starlette.types import ASGIApp

from gateway.emulators.tls import EmulatorTls
from gateway.errors import ConfigError

START_TIMEOUT = 10.0


def bind_loopback(host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    """A listening-ready TCP socket on a loopback address (port 0: the kernel picks one)."""
    address = ipaddress.ip_address(host)
    if not address.is_loopback:
        raise ConfigError("emulators bind only to loopback addresses")
    family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only on sockets whose proto says TCP, and
    # without it every response on a kept-alive connection waited ~40 ms for a delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        raise ConfigError("cannot bind the emulator port") from error
    return sock


def socket_url(sock: socket.socket, *, tls: bool) -> str:
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"{'https' if tls else 'http'}://{shown}:{port}"


class _GroupServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # The group's owner handles signals once for all servers; nested per-server handlers
        # would each replace the previous one.
        yield


class ServerGroup:
    """Several uvicorn servers sharing one event loop."""

    def __init__(self) -> None:
        self._servers: list[tuple[_GroupServer, socket.socket]] = []

    def add(self, app: ASGIApp, sock: socket.socket, tls: EmulatorTls | None) -> str:
        config = uvicorn.Config(
            app,
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=2,
            ssl_certfile=str(tls.cert_path) if tls else None,
            ssl_keyfile=str(tls.key_path) if tls else None,
        )
        self._servers.append((_GroupServer(config), sock))
        return socket_url(sock, tls=tls is not None)

    @property
    def started(self) -> bool:
        return all(server.started for server, _ in self._servers)

    async def serve(self) -> None:
        try:
            await asyncio.gather(*(server.serve(sockets=[sock]) for server, sock in self._servers))
        finally:
            # uvicorn closes its sockets on shutdown, but not when it fails to start.
            for _, sock in self._servers:
                sock.close()

    def stop(self) -> None:
        for server, _ in self._servers:
            server.should_exit = True


class BackgroundServers:
    """Runs a :class:`ServerGroup` in a daemon thread: for tests and ``ohttp-gateway demo``."""

    def __init__(self, group: ServerGroup) -> None:
        self.group = group
        self._thread = threading.Thread(target=self._run, name="emulators", daemon=True)
        self._failure: BaseException | None = None

    def _run(self) -> None:
        try:
            asyncio.run(self.group.serve())
        except BaseException as error:  # noqa: BLE001 - handed to the starting thread, raised there
            self._failure = error

    def __enter__(self) -> BackgroundServers:
        self._thread.start()
        for _ in range(int(START_TIMEOUT / 0.01)):
            if self.group.started or self._failure or not self._thread.is_alive():
                break
            threading.Event().wait(0.01)
        if not self.group.started:
            self.group.stop()
            self._thread.join(START_TIMEOUT)
            raise ConfigError("the emulators did not start") from self._failure
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.group.stop()
        self._thread.join(START_TIMEOUT)
