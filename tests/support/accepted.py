"""The server's side of a loopback connection, in any of our processes: which process holds it
(:func:`serving_process`: which worker accepted a connection, :func:`wait_for_each_worker`: until
every worker has accepted one; :func:`gateway_workers`: a supervisor's workers) and its
TCP_NODELAY.

:func:`server_nodelay` finds, among the open file descriptors of the given processes, the
accepted socket whose peer is the client's socket, takes a copy of it with ``pidfd_getfd``
(Linux 5.6+; we are its parent or the process itself) and reads ``TCP_NODELAY``: the option
asyncio sets only on connections accepted from a listening socket created with IPPROTO_TCP.
"""

from __future__ import annotations

import ctypes
import http.client
import os
import socket
import time
from collections.abc import Iterable
from pathlib import Path

REPLAY_TABLE = "/memfd:ohttp-gateway-replay"
_SYS_PIDFD_GETFD = 438  # the same number on x86_64 and aarch64
_libc = ctypes.CDLL(None, use_errno=True)


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (a supervisor and its workers)."""
    found = [pid]
    for task in Path(f"/proc/{pid}/task").iterdir():
        children = (task / "children").read_text().split()
        for child in children:
            found += descendants(int(child))
    return found


def gateway_workers(supervisor: int) -> list[int]:
    """The workers under ``supervisor``: the processes that map the shared replay table."""
    family = descendants(supervisor)
    return [pid for pid in family if REPLAY_TABLE in Path(f"/proc/{pid}/maps").read_text()]


def _copy_fd(pidfd: int, fd: int) -> int | None:
    copied = int(_libc.syscall(_SYS_PIDFD_GETFD, pidfd, fd, 0))
    return copied if copied >= 0 else None


def _accepted(pids: Iterable[int], client: socket.socket) -> tuple[int, socket.socket]:
    """The process holding the accepted socket whose peer is ``client``, and a copy of it."""
    wanted = client.getsockname()[:2]
    for pid in pids:
        pidfd = os.pidfd_open(pid)
        try:
            for entry in Path(f"/proc/{pid}/fd").iterdir():
                try:
                    target = os.readlink(entry)
                except FileNotFoundError:  # closed since the listing: a process still starting
                    continue
                if not target.startswith("socket:"):
                    continue
                copied = _copy_fd(pidfd, int(entry.name))
                if copied is None:
                    continue
                sock = socket.socket(fileno=copied)
                if sock.type == socket.SOCK_STREAM and sock.family == client.family:
                    try:
                        if sock.getpeername()[:2] == wanted:
                            return pid, sock
                    except OSError:  # a listening socket has no peer
                        pass
                sock.close()
        finally:
            os.close(pidfd)
    raise AssertionError("no accepted socket has the client's socket as its peer")


def server_nodelay(pids: Iterable[int], client: socket.socket) -> bool:
    """TCP_NODELAY of the accepted socket whose peer is ``client``; fails if none is found."""
    with _accepted(pids, client)[1] as sock:
        return bool(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))


def serving_process(pids: Iterable[int], client: socket.socket) -> int:
    """The process (a worker) that accepted ``client``'s connection."""
    pid, sock = _accepted(pids, client)
    sock.close()
    return pid


def wait_for_each_worker(port: int, workers: list[int], timeout: float = 20.0) -> None:
    """Until each worker has accepted a connection on ``port``: one may still be starting."""
    seen: set[int] = set()
    deadline = time.monotonic() + timeout
    while seen != set(workers) and time.monotonic() < deadline:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            connection.request("GET", "/livez")
            connection.getresponse().read()
            assert connection.sock is not None
            seen.add(serving_process(workers, connection.sock))
        finally:
            connection.close()
    assert seen == set(workers)
