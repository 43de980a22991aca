"""Key agreement in a child process of the worker: the P-384 ECDH away from the worker's GIL.

Why a process: a P-384 ECDH costs about 0.4 ms. In a thread it leaves the event loop free, but
the thread's own Python (the handoff, the call around the exchange) and the loop share one GIL,
and that shared lock, not the cores, capped a one-worker P-384 gateway at about 0.4 of the plain
proxy. A child process has its own interpreter: the loop only writes one datagram per request
and reads one back (``python -m bench.offload_bench`` compares inline, thread and process).

The child gets only what it computes with: the private keys of the expensive KEM, each sent once
over the socketpair (never through a file, an argument or the environment), and each request's
``enc``. It returns DH(skR, pkE); the HPKE key schedule, the decryption and everything else stay
in the worker, so the child never sees a request's content.

The child and its wire format: :mod:`gateway.server.agreement_child`.

Failure: the child exits when the socket closes (the worker ended, however it ended) and on any
message it does not expect. When it is gone, :class:`AgreementProcess` fails its waiting jobs
with :class:`AgreementProcessGone`, which the caller answers by computing in a thread: a request
is never lost to a dead child.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import os
import socket
import subprocess
import sys
import weakref
from collections.abc import Mapping

from gateway.errors import DecryptionFailed
from gateway.protocol._dh import serialize_private_key
from gateway.protocol.keys import GatewayKey
from gateway.server import agreement_child
from gateway.server.agreement_child import (
    AGREE,
    AGREE_HEAD,
    DONE,
    FORGET,
    LOAD,
    LOAD_HEAD,
    MAX_MESSAGE,
    READY,
    U32,
)

MAX_KEYS = 16
"""Keys the child holds at once, a bound: it forgets each key the worker drops (rotation), and
the oldest beyond this many."""
EXIT_TIMEOUT = 2.0


_CHILD_ENVIRONMENT = ("PATH", "LANG", "TZ")
_CHILD_ENVIRONMENT_PREFIXES = ("PYTHON", "OPENSSL_", "LC_")


def child_environment(environment: Mapping[str, str]) -> dict[str, str]:
    """What the child inherits: how to find and run Python and OpenSSL, nothing else (no
    credentials the worker's environment may hold, such as a workload identity's)."""
    return {
        name: value
        for name, value in environment.items()
        if name in _CHILD_ENVIRONMENT or name.startswith(_CHILD_ENVIRONMENT_PREFIXES)
    }


class AgreementProcessGone(Exception):
    """The child ended or cannot take work: compute this agreement elsewhere. Never leaves the
    server package (the caller falls back to a thread)."""


class AgreementProcess:
    """One child process that computes key agreements for this event loop; ``close`` it."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self._process = subprocess.Popen(  # noqa: S603 - our own module, no shell
                [sys.executable, "-m", agreement_child.__name__, str(theirs.fileno())],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
                env=child_environment(os.environ),
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        ours.setblocking(False)
        self._socket: socket.socket | None = ours
        self._jobs: dict[int, asyncio.Future[bytes]] = {}
        self._job_ids = itertools.count(1)
        # id(key) → (a weak reference to the key, its handle in the child)
        self._handles: dict[int, tuple[weakref.ref[GatewayKey], int]] = {}
        self._handle_ids = itertools.count(1)
        self.ready = False
        loop.add_reader(ours.fileno(), self._on_readable)

    @property
    def alive(self) -> bool:
        return self._socket is not None

    @property
    def pid(self) -> int:
        return self._process.pid

    @property
    def exit_code(self) -> int | None:
        return self._process.poll()

    async def agree(self, key: GatewayKey, enc: bytes) -> bytes:
        """DH(skR, pkE) from the child; DecryptionFailed for an unusable ``enc``,
        AgreementProcessGone if the child cannot answer."""
        handle = self._handle_of(key)
        job = next(self._job_ids) & 0xFFFFFFFF
        future: asyncio.Future[bytes] = self._loop.create_future()
        self._send(AGREE + AGREE_HEAD.pack(job, handle) + enc)
        self._jobs[job] = future
        try:
            return await future
        finally:
            self._jobs.pop(job, None)

    def _handle_of(self, key: GatewayKey) -> int:
        known = self._handles.get(id(key))
        if known is not None and known[0]() is key:
            return known[1]
        if len(self._handles) >= MAX_KEYS:
            oldest, (_key, old_handle) = next(iter(self._handles.items()))
            self._forget(oldest, old_handle)
        handle = next(self._handle_ids) & 0xFFFFFFFF
        secret = serialize_private_key(key.kem_id, key.private_key.raw)
        self._send(LOAD + LOAD_HEAD.pack(handle, key.kem_id) + secret)
        # A weak reference: when the worker drops a retired key, the child forgets it too.
        dropped = functools.partial(self._dropped, id(key), handle)
        self._handles[id(key)] = (weakref.ref(key, dropped), handle)
        return handle

    def _dropped(self, identity: int, handle: int, _reference: object) -> None:
        self._forget(identity, handle)

    def _forget(self, identity: int, handle: int) -> None:
        # Also runs in whichever thread drops a key's last reference (a weakref callback): a
        # plain send, no loop calls. If the child is behind, it keeps the key until it ends.
        known = self._handles.get(identity)
        if known is not None and known[1] == handle:
            del self._handles[identity]
        channel = self._socket
        if channel is not None:
            with contextlib.suppress(OSError):
                channel.send(FORGET + U32.pack(handle))

    def _send(self, message: bytes) -> None:
        if self._socket is None:
            raise AgreementProcessGone()
        try:
            self._socket.send(message)
        except OSError as error:  # BlockingIOError: the child is that far behind; else it ended
            if not isinstance(error, BlockingIOError):
                self._gone()
            raise AgreementProcessGone() from None

    def _on_readable(self) -> None:
        while self._socket is not None:
            try:
                message = self._socket.recv(MAX_MESSAGE)
            except BlockingIOError:
                return
            except OSError:
                message = b""
            if not message:
                self._gone()
                return
            kind = message[:1]
            if kind == READY:
                self.ready = True
                continue
            future = self._jobs.pop(U32.unpack_from(message, 1)[0], None)
            if future is None or future.done():  # its request was cancelled meanwhile
                continue
            if kind == DONE:
                future.set_result(message[1 + U32.size :])
            else:
                future.set_exception(DecryptionFailed())

    def _gone(self) -> None:
        if self._socket is None:
            return
        self._loop.remove_reader(self._socket.fileno())
        self._socket.close()
        self._socket = None
        self.ready = False
        self._handles.clear()
        jobs, self._jobs = self._jobs, {}
        for future in jobs.values():
            if not future.done():
                future.set_exception(AgreementProcessGone())

    def close(self) -> None:
        """Close the socket (the child exits on that) and reap the child."""
        self._gone()
        try:
            self._process.wait(EXIT_TIMEOUT)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()

    def __repr__(self) -> str:
        return f"AgreementProcess(pid={self._process.pid}, alive={self.alive})"
