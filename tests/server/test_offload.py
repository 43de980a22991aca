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
