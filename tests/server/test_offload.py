"""Which thread opens a request: P-384 in the key-agreement pool, everything else on the loop."""

from __future__ import annotations

import asyncio
import threading

import pytest

from gateway.errors import DecryptionFailed
from gateway.protocol import ohttp
from gateway.protocol.keys import KemId
from gateway.server.keysource import dev_key_ring
from gateway.server.offload import KeyAgreementPool, default_threads


def _opened_where(ring: object, body: bytes) -> tuple[str, bytes]:
    plaintext, _context = ohttp.decapsulate_request(ring, body)  # type: ignore[arg-type]
    return threading.current_thread().name, plaintext


def test_p384_requests_open_in_a_pool_thread_and_x25519_on_the_loop() -> None:
    ring = dev_key_ring(b"offload-test-seed")
    pool = KeyAgreementPool(2)
    try:
        for config in ring.configs:
            body, _ = ohttp.encapsulate_request(config, config.suites[0], b"inner")
            offload = pool.wanted(ring, body[0])

            async def open_it() -> tuple[str, bytes]:
                return await pool.run(offload, _opened_where, ring, body)  # noqa: B023

            thread, plaintext = asyncio.run(open_it())
            assert plaintext == b"inner"
            if config.kem_id is KemId.P384_SHA384:
                assert offload
                assert thread.startswith("key-agreement")
            else:
                assert not offload
                assert thread == threading.main_thread().name
    finally:
        pool.close()


def test_unknown_or_missing_key_ids_stay_on_the_loop() -> None:
    """The inline call then raises the usual clear error (unknown key, malformed header)."""
    ring = dev_key_ring(b"offload-test-seed")
    assert not KeyAgreementPool.wanted(ring, None)
    assert not KeyAgreementPool.wanted(ring, 0xEE)


def test_errors_raised_in_a_pool_thread_reach_the_caller_unchanged() -> None:
    ring = dev_key_ring(b"offload-test-seed")
    p384 = next(c for c in ring.configs if c.kem_id is KemId.P384_SHA384)
    body, _ = ohttp.encapsulate_request(p384, p384.suites[0], b"inner")
    tampered = body[:-1] + bytes([body[-1] ^ 1])
    pool = KeyAgreementPool(1)
    try:

        async def open_it() -> object:
            return await pool.run(True, ohttp.decapsulate_request, ring, tampered)

        with pytest.raises(DecryptionFailed):
            asyncio.run(open_it())
    finally:
        pool.close()


def test_pool_size_follows_the_cores_this_process_may_use() -> None:
    assert 1 <= default_threads() <= 4


def test_many_requests_in_flight_each_get_their_own_answer() -> None:
    ring = dev_key_ring(b"offload-test-seed")
    p384 = next(c for c in ring.configs if c.kem_id is KemId.P384_SHA384)
    bodies = [
        ohttp.encapsulate_request(p384, p384.suites[0], bytes([n]) * 10)[0] for n in range(12)
    ]
    pool = KeyAgreementPool(2)

    async def open_all() -> list[bytes]:
        opened = await asyncio.gather(
            *(pool.run(True, ohttp.decapsulate_request, ring, body) for body in bodies)
        )
        return [plaintext for plaintext, _context in opened]

    try:
        assert asyncio.run(open_all()) == [bytes([n]) * 10 for n in range(12)]
    finally:
        pool.close()


def test_a_cancelled_request_leaves_the_pool_serving() -> None:
    """The thread finishes the job; its answer is dropped, and the next request is served."""
    started, release = threading.Event(), threading.Event()

    def slow() -> str:
        started.set()
        release.wait(10)
        return "late"

    pool = KeyAgreementPool(1)

    async def scenario() -> str:
        waiting = asyncio.ensure_future(pool.run(True, slow))
        while not started.is_set():
            await asyncio.sleep(0.001)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        release.set()
        return await pool.run(True, str.upper, "next")

    try:
        assert asyncio.run(scenario()) == "NEXT"
    finally:
        pool.close()


def test_close_ends_the_threads() -> None:
    pool = KeyAgreementPool(2)
    threads = list(pool._threads)
    pool.close()
    for thread in threads:
        thread.join(5)
        assert not thread.is_alive()
