"""Reads a socket option of the server's side of a loopback connection, in any of our processes.

:func:`server_nodelay` finds, among the open file descriptors of the given processes, the
accepted socket whose peer is the client's socket, takes a copy of it with ``pidfd_getfd``
(Linux 5.6+; we are its parent or the process itself) and reads ``TCP_NODELAY``: the option
asyncio sets only on connections accepted from a listening socket created with IPPROTO_TCP.
"""

from __future__ import annotations

import ctypes
import os
import socket
from collections.abc import Iterable
from pathlib import Path

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


def _copy_fd(pidfd: int, fd: int) -> int | None:
    copied = int(_libc.syscall(_SYS_PIDFD_GETFD, pidfd, fd, 0))
    return copied if copied >= 0 else None


def server_nodelay(pids: Iterable[int], client: socket.socket) -> bool:
    """TCP_NODELAY of the accepted socket whose peer is ``client``; fails if none is found."""
    wanted = client.getsockname()[:2]
    for pid in pids:
        pidfd = os.pidfd_open(pid)
        try:
            for entry in Path(f"/proc/{pid}/fd").iterdir():
                if not os.readlink(entry).startswith("socket:"):
                    continue
                copied = _copy_fd(pidfd, int(entry.name))
                if copied is None:
                    continue
                with socket.socket(fileno=copied) as sock:
                    if sock.type != socket.SOCK_STREAM or sock.family != client.family:
                        continue
                    try:
                        peer = sock.getpeername()[:2]
                    except OSError:  # a listening socket has no peer
                        continue
                    if peer == wanted:
                        return bool(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
        finally:
            os.close(pidfd)
    raise AssertionError("no accepted socket has the client's socket as its peer")
