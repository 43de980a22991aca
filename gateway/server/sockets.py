"""Listening sockets for our uvicorn servers (the gateway's workers, the demo backend).

Accepts a host (IPv4 or IPv6 literal, or a name that resolves to IPv4) and a port (0: the kernel
picks one). Guarantees: a bound, inheritable TCP socket created with ``IPPROTO_TCP`` and
``SO_REUSEADDR``. Never listens (uvicorn does, with its backlog) and never raises anything but
:class:`gateway.errors.ConfigError`.
"""

from __future__ import annotations

import socket

from gateway.errors import ConfigError


def bind_tcp(host: str, port: int) -> socket.socket:
    """A bound TCP socket whose accepted connections asyncio gives TCP_NODELAY."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY on accepted connections only when the
    # listening socket's proto says TCP (proto 0, as from uvicorn's bind_socket() or
    # socket.create_server(), leaves Nagle on: ~40 ms per kept-alive response).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        raise ConfigError("cannot bind the listening host and port") from error
    sock.set_inheritable(True)  # the gateway's spawned workers receive it
    return sock
