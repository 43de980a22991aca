"""The replay memory shared by all worker processes of one gateway (RFC 9458 §6.5).

:class:`ReplayTable` keeps the :class:`gateway.server.replay.EncMemory` contract across
processes. The supervisor creates it before it spawns the workers; each worker receives it as a
``Process`` argument, like the listening socket, and every worker refuses an ``enc`` that any
worker has remembered within ``window`` seconds.

How:

* The table lives in an anonymous memory file (``memfd_create``), not under a name in
  ``/dev/shm``: it is passed to the workers as a file descriptor and the kernel frees it when
  the last process holding it ends, whether the gateway exits, is killed or crashes. Nothing can
  leak and there is nothing to unlink.
* A slot holds a 16-byte digest of ``enc`` (BLAKE2b keyed with a random per-gateway key kept in
  the table's header, so a client cannot aim values at one place in the table) and its expiry in
  ``time.monotonic`` seconds (CLOCK_MONOTONIC: one clock for every process of the host). Memory
  is allocated in full at creation: 24 bytes per slot, two slots per entry of ``capacity``
  (24 MiB for the default 2**19 entries); a lack of memory stops startup.
* Open addressing with a bounded probe: a digest lives in one of the ``probe`` slots from its
  start slot. A slot whose expiry has passed is free again; a lookup always reads the whole
  probe, so freed slots never hide an entry. When every slot of the probe holds an unexpired
  entry the request is refused with :class:`ReplayMemoryFull` (503, fail closed). At half load
  (``capacity`` live entries) a 64-slot probe practically never fills (none in 1.2 million
  simulated steady-state requests); past it refusals grow gradually.
* Each process locks its own open file description of the table with ``flock`` while it probes
  (about a microsecond, no I/O). The kernel drops the lock of a process that dies, so a crashed
  worker cannot wedge the others, which a semaphore would.

One thread per process may use a table: ``flock`` excludes processes, not threads of one
process (the worker's event loop is that one thread).
"""

from __future__ import annotations

import fcntl
import hashlib
import mmap
import os
import secrets
import struct
import time
from multiprocessing.context import get_spawning_popen
from multiprocessing.reduction import DupFd
from typing import Any

from gateway.errors import ReplayDetected, ReplayMemoryError, ReplayMemoryFull

PROBE = 64
SLOTS_PER_ENTRY = 2
DIGEST_SIZE = 16
# A slot: the digest, then the expiry (0.0 in a slot never used).
_SLOT = struct.Struct("<16sd")
_EXPIRY = struct.Struct("<d")
_START = struct.Struct("<Q")  # the start slot, from the digest's first 8 bytes
# magic, start slots, probe, window, hash key; the slots start at HEADER_SIZE.
_HEADER = struct.Struct("<8sQQd32s")
HEADER_SIZE = 64
_MAGIC = b"OHTTPRT2"
_CHUNK = 8  # expiries read per step while looking for a free slot


def table_size(capacity: int, probe: int = PROBE) -> int:
    """Bytes of the memory file for ``capacity`` entries."""
    starts = capacity * SLOTS_PER_ENTRY
    return HEADER_SIZE + (starts + min(probe, starts) - 1) * _SLOT.size


class ReplayTable:
    """Remembered enc digests in a memory file shared by the processes that hold it."""

    def __init__(self, fd: int) -> None:
        """Map the table behind ``fd`` (an open file description of this process's own)."""
        self._fd = fd
        try:
            size = os.fstat(fd).st_size
            # Page tables filled now: no page faults on the request path.
            self._map = mmap.mmap(fd, size, mmap.MAP_SHARED | mmap.MAP_POPULATE)
        except (OSError, ValueError) as failure:
            raise ReplayMemoryError("Replay table not mappable") from failure
        if size < HEADER_SIZE:
            raise ReplayMemoryError("Replay table layout invalid")
        magic, starts, probe, window, key = _HEADER.unpack_from(self._map, 0)
        if magic != _MAGIC or not 1 <= probe <= starts or size != table_size(starts // 2, probe):
            raise ReplayMemoryError("Replay table layout invalid")
        self.window: float = window
        self._starts, self._probe = starts, probe
        self._hasher = hashlib.blake2b(key=key, digest_size=DIGEST_SIZE)
        self._step = _CHUNK if probe % _CHUNK == 0 else probe
        # The expiries of ``_step`` consecutive slots, read in one call.
        self._expiries = struct.Struct("<" + "16xd" * self._step)

    @classmethod
    def create(
        cls, window: float, capacity: int, *, probe: int = PROBE, key: bytes | None = None
    ) -> ReplayTable:
        """A new, empty table: ``capacity`` entries are held with room to spare (see above)."""
        if capacity < 1 or probe < 1:
            raise ReplayMemoryError("Replay table capacity invalid")
        starts = capacity * SLOTS_PER_ENTRY
        probe = min(probe, starts)
        header = _HEADER.pack(_MAGIC, starts, probe, window, key or secrets.token_bytes(32))
        try:
            fd = os.memfd_create("ohttp-gateway-replay", os.MFD_CLOEXEC)
        except OSError as failure:
            raise ReplayMemoryError("Replay table not created") from failure
        try:
            # Allocated now, so a lack of memory stops startup instead of killing a worker with
            # SIGBUS on the request path.
            os.posix_fallocate(fd, 0, table_size(capacity, probe))
            os.pwrite(fd, header, 0)
            return cls(fd)
        except BaseException as failure:
            os.close(fd)
            if isinstance(failure, OSError):
                raise ReplayMemoryError("Replay table not created") from failure
            raise

    def __repr__(self) -> str:
        return f"ReplayTable(window={self.window}, slots={self._starts}, probe={self._probe})"

    def __reduce__(self) -> tuple[Any, ...]:
        # The descriptor travels to a spawned worker like the listening socket's does.
        if get_spawning_popen() is None:
            raise ReplayMemoryError("Replay table passes to spawned workers only")
        return _attach, (DupFd(self._fd),)

    def close(self) -> None:
        self._map.close()
        os.close(self._fd)

    def check_and_remember(self, enc: bytes, now: float | None = None) -> None:
        """Remember ``enc``; ReplayDetected if remembered and live; ReplayMemoryFull if full."""
        now = time.monotonic() if now is None else now
        hasher = self._hasher.copy()
        hasher.update(enc)
        digest = hasher.digest()
        low = HEADER_SIZE + _START.unpack_from(digest)[0] % self._starts * _SLOT.size
        table = self._map
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            # One copy of the probe; bytes.find is fast where mmap.find crawls over zeros.
            probe = table[low : low + self._probe * _SLOT.size]
            found = probe.find(digest)
            while found >= 0 and found % _SLOT.size:
                # A match not at a slot's start is none: a digest is only ever stored whole.
                found = probe.find(digest, found + 1)
            if found < 0:
                at = low + self._free_slot(probe, now) * _SLOT.size
                table[at : at + _SLOT.size] = _SLOT.pack(digest, now + self.window)
            elif _EXPIRY.unpack_from(probe, found + DIGEST_SIZE)[0] > now:
                raise ReplayDetected
            else:
                _EXPIRY.pack_into(table, low + found + DIGEST_SIZE, now + self.window)
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def _free_slot(self, probe: bytes, now: float) -> int:
        """The first slot of ``probe`` whose entry has expired, else ReplayMemoryFull."""
        for offset in range(0, self._probe, self._step):
            expiries = self._expiries.unpack_from(probe, offset * _SLOT.size)
            for index, expiry in enumerate(expiries):
                if expiry <= now:
                    return offset + index
        raise ReplayMemoryFull("Replay memory full")


def _attach(descriptor: Any) -> ReplayTable:
    """A worker's view of the table: its own open file description, so ``flock`` excludes."""
    inherited = descriptor.detach()
    try:
        fd = os.open(f"/proc/self/fd/{inherited}", os.O_RDWR | os.O_CLOEXEC)
    except OSError as failure:
        raise ReplayMemoryError("Replay table not attachable") from failure
    finally:
        os.close(inherited)
    return ReplayTable(fd)
