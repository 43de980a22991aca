"""Listening sockets for our uvicorn servers (the gateway's workers, the demo backend).

Accepts a host (IPv4 or IPv6 literal, or a name that resolves to IPv4) and a port (0: the kernel
picks one). Guarantees: a bound, inheritable TCP socket created with ``IPPROTO_TCP`` and
``SO_REUSEADDR``; :func:`bind_tcp_group` gives one such socket per worker, all on one port with
``SO_REUSEPORT``, listening. Never raises anything but :class:`gateway.errors.ConfigError`.

Why a group: with one shared listening socket, the worker that wakes first accepts the whole
burst of pending connections (uvloop accepts in a loop); a load balancer or wrk opening 30
connections at once left one worker with 27 to 29 of them. With one socket per worker the kernel
spreads new connections over the listening sockets by their addresses' hash, and a worker that
exits takes its socket out of the group.
"""

from __future__ import annotations

import socket

from gateway.errors import ConfigError

LISTEN_BACKLOG = 2048


def bind_tcp(host: str, port: int, *, reuse_port: bool = False) -> socket.socket:
    """A bound TCP socket whose accepted connections asyncio gives TCP_NODELAY."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY on accepted connections only when the
    # listening socket's proto says TCP (proto 0, as from uvicorn's bind_socket() or
    # socket.create_server(), leaves Nagle on: ~40 ms per kept-alive response).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        raise ConfigError("cannot bind the listening host and port") from error
    sock.set_inheritable(True)  # the gateway's spawned workers receive it
    return sock


def bind_tcp_group(host: str, port: int, count: int) -> list[socket.socket]:
    """``count`` listening sockets sharing one port (SO_REUSEPORT), one per worker process.

    The port is first claimed without SO_REUSEPORT: that fails if anything already listens there,
    a reuse-port group of another process included, which would otherwise be joined silently and
    share the traffic.
    """
    probe = bind_tcp(host, port)
    port = probe.getsockname()[1]
    probe.close()
    group: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = bind_tcp(host, port, reuse_port=True)
            group.append(sock)
            sock.listen(LISTEN_BACKLOG)
    except (ConfigError, OSError) as error:
        for sock in group:
            sock.close()
        raise ConfigError("cannot bind the listening host and port") from error
    return group
