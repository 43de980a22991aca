"""The replay memory's contract (RFC 9458 §6.5), held by both implementations: the in-process
:class:`ReplayCache` (``--workers 1``) and the shared :class:`ReplayTable` (``--workers N``).

Every contract test runs against both. The table's own tests follow: collisions inside one probe,
its layout guards, real processes sharing one table, a worker killed while holding the lock.
"""

from __future__ import annotations

import fcntl
import hashlib
import multiprocessing
import os
import pickle
import random
import signal
import struct
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.errors import ReplayDetected, ReplayMemoryError, ReplayMemoryFull
from gateway.server.replay import EncMemory, ReplayCache
from gateway.server.replay_table import HEADER_SIZE, SLOTS_PER_ENTRY, ReplayTable, table_size

Factory = Callable[[float, int], EncMemory]


@pytest.fixture(params=["cache", "table"])
def memory(request: pytest.FixtureRequest) -> Iterator[Factory]:
    """Makes a memory of ``capacity`` entries remembered for ``window`` seconds."""
    tables: list[ReplayTable] = []

    def make(window: float, capacity: int) -> EncMemory:
        if request.param == "cache":
            return ReplayCache(window, capacity)
        table = ReplayTable.create(window, capacity)
        tables.append(table)
        return table

    yield make
    for table in tables:
        table.close()


def test_a_second_sighting_within_the_window_is_refused(memory: Factory) -> None:
    replay = memory(10, 1024)
    replay.check_and_remember(b"enc-1", now=0)
    replay.check_and_remember(b"enc-2", now=1)
    with pytest.raises(ReplayDetected):
        replay.check_and_remember(b"enc-1", now=5)
    with pytest.raises(ReplayDetected):
        replay.check_and_remember(b"enc-2", now=10.5)  # remembered until 11
    replay.check_and_remember(b"enc-1", now=10.5)  # forgotten once its window passed
    with pytest.raises(ReplayDetected):
        replay.check_and_remember(b"enc-1", now=20)  # remembered again, from 10.5


def test_a_refused_replay_does_not_extend_the_memory(memory: Factory) -> None:
    replay = memory(10, 1024)
    replay.check_and_remember(b"enc", now=0)
    with pytest.raises(ReplayDetected):
        replay.check_and_remember(b"enc", now=9.9)
    replay.check_and_remember(b"enc", now=10)  # expired at 0 + window, not 9.9 + window


def _fill(replay: EncMemory, now: float) -> list[bytes]:
    """New values until the first ReplayMemoryFull: the ones remembered."""
    remembered: list[bytes] = []
    for index in range(1000):
        try:
            replay.check_and_remember(b"enc-%d" % index, now=now)
        except ReplayMemoryFull:
            return remembered
        remembered.append(b"enc-%d" % index)
    raise AssertionError("never full")


def test_a_full_memory_refuses_and_forgets_nothing_early(memory: Factory) -> None:
    replay = memory(60, 3)
    remembered = _fill(replay, now=0)
    # At least the capacity; the table has room to spare (two start slots per entry, a probe
    # reaching past the last start slot).
    assert 3 <= len(remembered) < 2 * SLOTS_PER_ENTRY * 3
    refused = b"enc-%d" % len(remembered)
    for enc in remembered:
        with pytest.raises(ReplayDetected):
            replay.check_and_remember(enc, now=1)  # still remembered: nothing evicted early
    with pytest.raises(ReplayMemoryFull):
        replay.check_and_remember(refused, now=59)
    replay.check_and_remember(refused, now=60)  # room again once the window passed
    replay.check_and_remember(remembered[0], now=60)  # and no longer a replay


OPERATIONS = st.lists(
    st.tuples(st.integers(0, 11), st.floats(0, 3, allow_nan=False)), min_size=1, max_size=60
)


@settings(max_examples=60, deadline=None)
@given(operations=OPERATIONS)
def test_the_memory_behaves_as_its_model(operations: list[tuple[int, float]]) -> None:
    """Twelve values, a memory of two: many collisions, fills and expiries. Against a model
    (value -> expiry) neither implementation accepts a live value, refuses an expired one as a
    replay, or refuses room while fewer than ``capacity`` values are live."""
    capacity, window = 2, 2.0
    table = ReplayTable.create(window, capacity)
    try:
        for replay in (ReplayCache(window, capacity), table):
            model: dict[bytes, float] = {}
            now = 0.0
            for value, advance in operations:
                now += advance
                enc = b"enc-%d" % value
                live = sum(expiry > now for expiry in model.values())
                try:
                    replay.check_and_remember(enc, now=now)
                except ReplayDetected:
                    assert model.get(enc, 0.0) > now
                except ReplayMemoryFull:
                    assert model.get(enc, 0.0) <= now
                    assert live >= capacity
                else:
                    assert model.get(enc, 0.0) <= now
                    model[enc] = now + window
    finally:
        table.close()


# --- the shared table on its own ----------------------------------------------------------------


def _digest(key: bytes, enc: bytes) -> bytes:
    return hashlib.blake2b(enc, key=key, digest_size=16).digest()


def _start(key: bytes, enc: bytes, starts: int) -> int:
    return int(struct.unpack_from("<Q", _digest(key, enc))[0]) % starts


def test_values_with_one_start_slot_share_its_probe() -> None:
    key = bytes(32)
    table = ReplayTable.create(60, 64, key=key, probe=8)  # 128 start slots
    try:
        encs = [b"enc-%d" % n for n in range(5000)]
        first = _start(key, encs[0], 128)
        colliding = [enc for enc in encs if _start(key, enc, 128) == first][:9]
        assert len(colliding) == 9
        for enc in colliding[:8]:
            table.check_and_remember(enc, now=0)
        for enc in colliding[:8]:
            with pytest.raises(ReplayDetected):
                table.check_and_remember(enc, now=1)
        with pytest.raises(ReplayMemoryFull):  # a ninth: the probe of eight is full, fail closed
            table.check_and_remember(colliding[8], now=1)
        table.check_and_remember(colliding[8], now=60)
    finally:
        table.close()


def test_a_digest_straddling_two_slots_is_no_match() -> None:
    key = bytes(range(32))
    table = ReplayTable.create(60, 1, key=key, probe=2)  # 2 start slots, 3 slots
    try:
        enc = b"victim"
        start = HEADER_SIZE + 24 * _start(key, enc, 2)
        # The digest at byte 4 of the start slot; what a misaligned match would read as its
        # expiry (bytes 20..27) is huge, what the slot really holds as one (16..23) negative.
        raw = table._map
        raw[start + 4 : start + 20] = _digest(key, enc)
        raw[start + 20 : start + 24] = b"\x00\x00\x00\xbf"
        raw[start + 24 : start + 28] = b"\x00\x00\x00\x47"
        assert struct.unpack_from("<d", raw, start + 20)[0] > 1e30
        assert struct.unpack_from("<d", raw, start + 16)[0] < 0
        table.check_and_remember(enc, now=0)  # new, not a replay
        with pytest.raises(ReplayDetected):
            table.check_and_remember(enc, now=1)
    finally:
        table.close()


def test_a_table_with_a_bad_layout_is_refused() -> None:
    fd = os.memfd_create("not-a-table")
    os.ftruncate(fd, table_size(4))
    with pytest.raises(ReplayMemoryError):
        ReplayTable(fd)
    os.close(fd)
    with pytest.raises(ReplayMemoryError):
        ReplayTable.create(60, 0)


def test_a_table_pickles_only_into_a_spawned_worker() -> None:
    table = ReplayTable.create(60, 4)
    try:
        with pytest.raises(ReplayMemoryError):
            pickle.dumps(table)
    finally:
        table.close()


def _hammer(table: ReplayTable, encs: list[bytes], seed: int, start: Any, out: Connection) -> None:
    order = list(encs)
    random.Random(seed).shuffle(order)
    start.wait()
    accepted = []
    for enc in order:
        try:
            table.check_and_remember(enc)
        except ReplayDetected:
            continue
        accepted.append(enc)
    out.send(accepted)


def test_processes_sharing_a_table_accept_each_value_exactly_once() -> None:
    context = multiprocessing.get_context("spawn")
    table = ReplayTable.create(60, 1 << 14)
    encs = [os.urandom(32) for _ in range(8000)]
    start = context.Barrier(3)
    pipes = [context.Pipe(duplex=False) for _ in range(3)]
    workers = [
        context.Process(target=_hammer, args=(table, encs, seed, start, pipes[seed][1]))
        for seed in range(3)
    ]
    try:
        for worker in workers:
            worker.start()
        results = [receiver.recv() for receiver, _ in pipes]
    finally:
        for worker in workers:
            worker.join(30)
        table.close()
    assert [worker.exitcode for worker in workers] == [0, 0, 0]
    accepted = [enc for result in results for enc in result]
    assert sorted(accepted) == sorted(encs)  # each value once, by exactly one process
    assert sum(1 for result in results if result) >= 2  # they really raced


def _lock_and_wait(table: ReplayTable, locked: Connection) -> None:
    fcntl.flock(table._fd, fcntl.LOCK_EX)
    locked.send(True)
    signal.pause()


def test_a_worker_killed_holding_the_lock_does_not_wedge_the_others() -> None:
    context = multiprocessing.get_context("spawn")
    table = ReplayTable.create(60, 64)
    receiver, sender = context.Pipe(duplex=False)
    holder = context.Process(target=_lock_and_wait, args=(table, sender))
    try:
        holder.start()
        assert receiver.poll(30)
        assert receiver.recv()
        with pytest.raises(BlockingIOError):  # really held by the other process
            fcntl.flock(table._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        holder.kill()
        holder.join(30)
        table.check_and_remember(b"enc")  # would block forever on a semaphore
        with pytest.raises(ReplayDetected):
            table.check_and_remember(b"enc")
    finally:
        table.close()
