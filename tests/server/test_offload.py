"""Where a request's key agreement runs: P-384 away from the loop (child process or threads),
everything else inline in the decapsulation."""

from __future__ import annotations

import asyncio
import threading

import pytest

from gateway.errors import DecryptionFailed, MalformedRequestHeader, UnknownKeyId
from gateway.protocol import ohttp
from gateway.protocol.keys import KemId
from gateway.server.keysource import dev_key_ring
from gateway.server.offload import KeyAgreementPool, default_threads

RING = dev_key_ring(b"offload-test-seed")
P384 = next(c for c in RING.configs if c.kem_id is KemId.P384_SHA384)
X25519 = next(c for c in RING.configs if c.kem_id is KemId.X25519_SHA256)


def _request(config: ohttp.KeyConfig, inner: bytes = b"inner") -> bytes:
    return ohttp.encapsulate_request(config, config.suites[0], inner)[0]


@pytest.mark.parametrize("process", [False, True], ids=["threads", "process"])
def test_p384_agrees_away_from_the_loop_and_x25519_inline(process: bool) -> None:
    pool = KeyAgreementPool(2, process=process)

    async def scenario() -> None:
        if process:
            assert await pool.start_process()
        for config in (P384, X25519):
            body = _request(config)
            agreed = await pool.agreement(RING, body, ohttp.REQUEST_LABEL)
            if config is X25519:
                assert agreed is None  # the decapsulation agrees inline: cheaper than a handoff
            else:
                assert agreed is not None
                found = ohttp.agreement_input(RING, body, ohttp.REQUEST_LABEL)
                assert found is not None
                assert agreed == found.agree()
            plaintext, _context = ohttp.decapsulate_request(RING, body, agreed)
            assert plaintext == b"inner"

    try:
        asyncio.run(scenario())
    finally:
        pool.close()


def test_the_thread_path_runs_in_a_pool_thread() -> None:
    pool = KeyAgreementPool(1, process=False)

    async def where() -> str:
        return await pool._in_thread(lambda: threading.current_thread().name)

    try:
        assert asyncio.run(where()).startswith("key-agreement")
    finally:
        pool.close()


def test_unknown_missing_or_short_inputs_are_left_to_the_decapsulation() -> None:
    """It then raises the usual clear error (unknown key, malformed header)."""
    pool = KeyAgreementPool(1, process=False)
    body = _request(P384)

    async def agreements() -> list[object]:
        return [
            await pool.agreement(RING, b"", ohttp.REQUEST_LABEL),
            await pool.agreement(RING, b"\xee" + body[1:], ohttp.REQUEST_LABEL),
            await pool.agreement(RING, body[:50], ohttp.REQUEST_LABEL),  # enc incomplete
        ]

    try:
        assert asyncio.run(agreements()) == [None, None, None]
    finally:
        pool.close()
    with pytest.raises(UnknownKeyId):
        ohttp.decapsulate_request(RING, b"\xee" + body[1:])
    with pytest.raises(MalformedRequestHeader):
        ohttp.decapsulate_request(RING, body[:50])
    assert not KeyAgreementPool.wanted(RING, None)
    assert not KeyAgreementPool.wanted(RING, 0xEE)


@pytest.mark.parametrize("process", [False, True], ids=["threads", "process"])
def test_an_unusable_enc_is_a_decryption_failure_wherever_it_is_computed(process: bool) -> None:
    body = bytearray(_request(P384))
    body[7 + 40] ^= 1  # a coordinate of pkE: no longer a point of the curve
    pool = KeyAgreementPool(1, process=process)

    async def scenario() -> None:
        if process:
            assert await pool.start_process()
        with pytest.raises(DecryptionFailed):
            await pool.agreement(RING, bytes(body), ohttp.REQUEST_LABEL)
        good = _request(P384)  # and the next request is served
        agreed = await pool.agreement(RING, good, ohttp.REQUEST_LABEL)
        assert ohttp.decapsulate_request(RING, good, agreed)[0] == b"inner"

    try:
        asyncio.run(scenario())
    finally:
        pool.close()


def test_a_tampered_ciphertext_still_fails_after_an_agreement_elsewhere() -> None:
    body = _request(P384)
    tampered = body[:-1] + bytes([body[-1] ^ 1])
    pool = KeyAgreementPool(1, process=False)

    async def scenario() -> None:
        agreed = await pool.agreement(RING, tampered, ohttp.REQUEST_LABEL)
        with pytest.raises(DecryptionFailed):
            ohttp.decapsulate_request(RING, tampered, agreed)

    try:
        asyncio.run(scenario())
    finally:
        pool.close()


def test_pool_size_follows_the_cores_this_process_may_use() -> None:
    assert 1 <= default_threads() <= 4


@pytest.mark.parametrize("process", [False, True], ids=["threads", "process"])
def test_many_requests_in_flight_each_get_their_own_answer(process: bool) -> None:
    bodies = [_request(P384, bytes([n]) * 10) for n in range(24)]
    pool = KeyAgreementPool(2, process=process)

    async def open_all() -> list[bytes]:
        if process:
            assert await pool.start_process()

        async def open_one(body: bytes) -> bytes:
            agreed = await pool.agreement(RING, body, ohttp.REQUEST_LABEL)
            return ohttp.decapsulate_request(RING, body, agreed)[0]

        return list(await asyncio.gather(*(open_one(body) for body in bodies)))

    try:
        assert asyncio.run(open_all()) == [bytes([n]) * 10 for n in range(24)]
    finally:
        pool.close()


def test_a_cancelled_request_leaves_the_pool_serving() -> None:
    """The thread finishes the job; its answer is dropped, and the next request is served."""
    started, release = threading.Event(), threading.Event()

    def slow() -> str:
        started.set()
        release.wait(10)
        return "late"

    pool = KeyAgreementPool(1, process=False)

    async def scenario() -> str:
        waiting = asyncio.ensure_future(pool._in_thread(slow))
        while not started.is_set():
            await asyncio.sleep(0.001)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        release.set()
        return await pool._in_thread(lambda: "NEXT")

    try:
        assert asyncio.run(scenario()) == "NEXT"
    finally:
        pool.close()


def test_close_ends_the_threads_and_the_child() -> None:
    pool = KeyAgreementPool(2)
    threads = list(pool._threads)
    assert asyncio.run(pool.start_process())
    process = pool._process
    assert process is not None
    pool.close()
    assert process.exit_code == 0  # it ended on its own when its socket closed
    for thread in threads:
        thread.join(5)
        assert not thread.is_alive()
