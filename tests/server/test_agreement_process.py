"""The key-agreement child process: real child processes on real socketpairs.

What must hold: it computes exactly what the worker would, refuses bad ``enc`` values without
dying, never holds a secret outside the socketpair, and a child that stops or dies loses no
request (the worker computes in threads until a new child is ready).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.errors import DecryptionFailed, KeyConfigError
from gateway.protocol import ohttp
from gateway.protocol._dh import deserialize_private_key, diffie_hellman, serialize_private_key
from gateway.protocol.keys import AeadId, GatewayKey, KdfId, KemId, SymmetricSuite
from gateway.server import agreement_child, offload
from gateway.server.agreement_child import AGREE, AGREE_HEAD, FORGET, LOAD, LOAD_HEAD
from gateway.server.agreement_process import MAX_KEYS, AgreementProcess, AgreementProcessGone
from gateway.server.keysource import dev_key_ring
from gateway.server.offload import KeyAgreementPool
from tests.server.conftest import run
from tests.support.gateway_process import GatewayProcess
from tests.support.ohttp_client import inner_request, key_configs, post_plain
from tests.support.upstream_double import UpstreamDouble

RING = dev_key_ring(b"agreement-process-test-seed")
P384_KEY = next(key for key in RING._keys.values() if key.kem_id is KemId.P384_SHA384)
X25519_KEY = next(key for key in RING._keys.values() if key.kem_id is KemId.X25519_SHA256)


def _enc(key: GatewayKey) -> bytes:
    body, _ = ohttp.encapsulate_request(key.config, key.suites[0], b"x")
    return body[7 : 7 + len(body) - 7 - 17]


def _cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


async def _ready_child() -> AgreementProcess:
    child = AgreementProcess(asyncio.get_running_loop())
    deadline = time.monotonic() + 10
    while not child.ready:
        assert child.alive
        assert time.monotonic() < deadline
        await asyncio.sleep(0.01)
    return child


def test_the_child_computes_what_the_worker_would_for_every_kem() -> None:
    async def scenario() -> None:
        child = await _ready_child()
        try:
            before = _cpu_ticks(child.pid)
            for key in (P384_KEY, X25519_KEY):
                for _ in range(3):
                    enc = _enc(key)
                    expected = diffie_hellman(key.kem_id, enc, key.private_key.raw)
                    assert await child.agree(key, enc) == expected
            for _ in range(200):  # enough work that the child's own CPU clock moves
                await child.agree(P384_KEY, _enc(P384_KEY))
            assert _cpu_ticks(child.pid) > before
        finally:
            child.close()

    asyncio.run(scenario())


def test_no_secret_on_the_childs_command_line_or_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AZURE_CLIENT_SECRET", "canary-credential")

    async def scenario() -> None:
        child = await _ready_child()
        try:
            await child.agree(P384_KEY, _enc(P384_KEY))
            secret = serialize_private_key(P384_KEY.kem_id, P384_KEY.private_key.raw)
            cmdline = Path(f"/proc/{child.pid}/cmdline").read_bytes().split(b"\0")
            assert cmdline[1:3] == [b"-m", b"gateway.server.agreement_child"]
            assert cmdline[3].isdigit()  # the socket's fd number, nothing else
            environ = Path(f"/proc/{child.pid}/environ").read_bytes()
            assert secret not in environ
            assert b"canary-credential" not in environ  # the worker's environment stays there
            assert b"PATH=" in environ
            assert secret.hex().encode() not in environ
            assert str(child.pid) in repr(child)
            assert secret.hex() not in repr(child)
        finally:
            child.close()

    asyncio.run(scenario())


@pytest.fixture(scope="module")
def fuzz_child() -> Iterator[tuple[asyncio.AbstractEventLoop, AgreementProcess]]:
    """One child for every fuzz example: its own loop, kept across examples."""
    loop = asyncio.new_event_loop()
    child = loop.run_until_complete(_ready_child())
    yield loop, child
    child.close()
    loop.close()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(min_size=0, max_size=160), st.sampled_from(["p384", "x25519"]))
def test_fuzzed_enc_values_get_the_workers_answer_and_the_child_lives(
    fuzz_child: tuple[asyncio.AbstractEventLoop, AgreementProcess], enc: bytes, which: str
) -> None:
    loop, child = fuzz_child
    key = P384_KEY if which == "p384" else X25519_KEY
    try:
        expected: bytes | None = diffie_hellman(key.kem_id, enc, key.private_key.raw)
    except DecryptionFailed:
        expected = None

    async def scenario() -> None:
        if expected is None:
            with pytest.raises(DecryptionFailed):
                await child.agree(key, enc)
        else:
            assert await child.agree(key, enc) == expected
        assert child.alive

    loop.run_until_complete(scenario())


def test_more_keys_than_the_child_holds_are_forgotten_and_sent_again() -> None:
    suites = [SymmetricSuite(KdfId.HKDF_SHA384, AeadId.AES_256_GCM)]
    keys = [GatewayKey.generate(n, KemId.P384_SHA384, suites) for n in range(MAX_KEYS + 4)]

    async def scenario() -> None:
        child = await _ready_child()
        try:
            for _round in range(2):  # the second round re-sends the keys forgotten meanwhile
                for key in keys:
                    enc = _enc(key)
                    expected = diffie_hellman(key.kem_id, enc, key.private_key.raw)
                    assert await child.agree(key, enc) == expected
            assert len(child._handles) == MAX_KEYS
        finally:
            child.close()

    asyncio.run(scenario())


def test_a_key_the_worker_drops_leaves_the_child_too() -> None:
    """After a rotation the retired key object goes away; the child is told to forget it: asking
    it to agree with the old handle is then out of protocol (it ends, saying KeyError)."""
    suites = [SymmetricSuite(KdfId.HKDF_SHA384, AeadId.AES_256_GCM)]

    async def scenario() -> None:
        child = await _ready_child()
        try:
            retired = GatewayKey.generate(9, KemId.P384_SHA384, suites)
            enc = _enc(retired)
            await child.agree(retired, enc)
            ((_reference, handle),) = child._handles.values()
            del retired
            gc.collect()
            assert child._handles == {}
            child._send(AGREE + AGREE_HEAD.pack(1, handle) + enc)
            deadline = time.monotonic() + 10
            while child.exit_code is None:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.02)
            assert child.exit_code == 1
        finally:
            child.close()

    asyncio.run(scenario())


def test_a_cancelled_agreement_leaves_the_child_serving() -> None:
    async def scenario() -> None:
        child = await _ready_child()
        try:
            os.kill(child.pid, signal.SIGSTOP)
            waiting = asyncio.ensure_future(child.agree(P384_KEY, _enc(P384_KEY)))
            await asyncio.sleep(0.05)
            waiting.cancel()
            os.kill(child.pid, signal.SIGCONT)
            with pytest.raises(asyncio.CancelledError):
                await waiting
            enc = _enc(P384_KEY)  # its late answer is dropped; the next one is right
            expected = diffie_hellman(P384_KEY.kem_id, enc, P384_KEY.private_key.raw)
            assert await child.agree(P384_KEY, enc) == expected
        finally:
            child.close()

    asyncio.run(scenario())


@pytest.mark.parametrize(
    "message",
    [
        b"Z",  # an unknown kind
        AGREE + b"\x00",  # truncated
        LOAD + LOAD_HEAD.pack(7, KemId.P384_SHA384) + bytes(48),  # a zero scalar: no key
        FORGET,  # truncated
    ],
    ids=["unknown", "short-agree", "bad-key", "short-forget"],
)
def test_a_message_out_of_protocol_ends_the_child_and_its_jobs_fail_over(
    message: bytes, capfd: pytest.CaptureFixture[str]
) -> None:
    async def scenario() -> None:
        child = await _ready_child()
        os.kill(child.pid, signal.SIGSTOP)
        child._send(message)  # the child reads this before the job below, and exits
        waiting = asyncio.ensure_future(child.agree(P384_KEY, _enc(P384_KEY)))
        await asyncio.sleep(0.01)
        os.kill(child.pid, signal.SIGCONT)
        with pytest.raises(AgreementProcessGone):
            await asyncio.wait_for(waiting, 10)
        assert not child.alive
        with pytest.raises(AgreementProcessGone):
            await child.agree(P384_KEY, _enc(P384_KEY))
        child.close()
        assert child.exit_code not in (0, None)

    asyncio.run(scenario())
    error = capfd.readouterr().err
    assert "key-agreement child: " in error  # one line from the child, not a traceback
    assert "Traceback" not in error


def test_serve_refuses_unknown_messages_and_ends_on_eof() -> None:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            agreement_child.serve(theirs)
        except ValueError as error:
            errors.append(error)

    server = threading.Thread(target=run)
    server.start()
    assert ours.recv(16) == agreement_child.READY
    ours.send(b"?")
    server.join(5)
    assert [str(error) for error in errors] == ["unexpected message"]
    ours.close()
    theirs.close()


async def _open_with_stopped_child(
    pool: KeyAgreementPool, count: int, while_stopped: float, then: signal.Signals
) -> tuple[int, list[bytes]]:
    """Open ``count`` P-384 requests while the pool's child is stopped; after ``while_stopped``
    seconds send it ``then``. The child's pid, and the plaintexts in order."""
    assert await pool.start_process()
    pid = pool.process_pid
    assert pid is not None
    bodies = [
        ohttp.encapsulate_request(P384_KEY.config, P384_KEY.suites[0], b"%d" % n)[0]
        for n in range(count)
    ]

    async def open_one(body: bytes) -> bytes:
        agreed = await pool.agreement(RING, body, ohttp.REQUEST_LABEL)
        return ohttp.decapsulate_request(RING, body, agreed)[0]

    os.kill(pid, signal.SIGSTOP)
    opening = asyncio.gather(*(open_one(body) for body in bodies))
    await asyncio.sleep(while_stopped)
    os.kill(pid, then)
    return pid, list(await asyncio.wait_for(opening, 60))


def test_a_dead_child_loses_no_request_and_is_replaced(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Jobs queue up in a stopped child, which then dies with them: threads answer them all."""
    monkeypatch.setattr(offload, "RESPAWN_AFTER", 0.0)
    pool = KeyAgreementPool(2)

    async def scenario() -> None:
        first, opened = await _open_with_stopped_child(pool, 40, 0.05, signal.SIGKILL)
        assert opened == [b"%d" % n for n in range(40)]
        assert await pool.start_process()
        assert pool.process_pid not in (None, first)

    with caplog.at_level(logging.WARNING, logger="gateway"):
        try:
            asyncio.run(scenario())
        finally:
            pool.close()
    assert "key_agreement_process_exited" in caplog.text


def test_a_full_socket_sends_the_overflow_to_threads() -> None:
    """A stopped child stops reading; once its socket buffer is full the worker computes the
    rest in threads instead of blocking the loop, and every request gets its answer."""
    pool = KeyAgreementPool(2)

    async def scenario() -> None:
        pid, opened = await _open_with_stopped_child(pool, 1500, 0.5, signal.SIGCONT)
        assert opened == [b"%d" % n for n in range(1500)]
        assert pool.process_pid == pid  # the child lived through it

    try:
        asyncio.run(scenario())
    finally:
        pool.close()


def test_the_child_ends_when_its_worker_is_killed(tmp_path: Path) -> None:
    script = textwrap.dedent(
        """
        import asyncio, sys, time
        from gateway.server.offload import KeyAgreementPool

        async def main():
            pool = KeyAgreementPool(1)
            assert await pool.start_process()
            print(pool.process_pid, flush=True)
            time.sleep(60)

        asyncio.run(main())
        """
    )
    worker = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE)
    try:
        assert worker.stdout is not None
        child_pid = int(worker.stdout.readline())
        worker.kill()
        worker.wait(10)
        deadline = time.monotonic() + 10
        while Path(f"/proc/{child_pid}").exists():
            status = Path(f"/proc/{child_pid}/status").read_text()
            if "State:\tZ" in status:  # exited; its parent is gone, init reaps it
                break
            assert time.monotonic() < deadline, "the child outlived its worker"
            time.sleep(0.05)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
        assert worker.stdout is not None
        worker.stdout.close()


def test_private_keys_round_trip_through_their_rfc_9180_serialisation() -> None:
    for key in (P384_KEY, X25519_KEY):
        secret = serialize_private_key(key.kem_id, key.private_key.raw)
        assert len(secret) == {KemId.P384_SHA384: 48, KemId.X25519_SHA256: 32}[key.kem_id]
        again = deserialize_private_key(key.kem_id, secret)
        enc = _enc(key)
        assert diffie_hellman(key.kem_id, enc, again) == diffie_hellman(
            key.kem_id, enc, key.private_key.raw
        )
    for kem_id, secret in ((0x0011, bytes(47)), (0x0011, bytes(48)), (0x0099, bytes(32))):
        with pytest.raises(KeyConfigError):
            deserialize_private_key(kem_id, secret)


def _agreement_children(pid: int) -> list[int]:
    found = []
    pids = [pid]
    for one in pids:
        try:
            children = Path(f"/proc/{one}/task/{one}/children").read_text().split()
        except FileNotFoundError:
            continue
        pids += [int(child) for child in children]
    for one in pids[1:]:
        try:
            if b"gateway.server.agreement_child" in Path(f"/proc/{one}/cmdline").read_bytes():
                found.append(one)
        except FileNotFoundError:
            continue
    return found


def _serve_p384_requests(gateway: GatewayProcess, count: int) -> None:
    async def send() -> None:
        async with aiohttp.ClientSession() as session:
            configs = await key_configs(session, gateway.url)
            p384 = next(c for c in configs if c.kem_id is KemId.P384_SHA384)
            for _ in range(count):
                answer = await post_plain(
                    session, gateway.url + "/gateway", p384, p384.suites[0], inner_request()
                )
                assert answer.status == 200
                assert answer.inner is not None
                assert answer.inner.status == 200

    run(send())


def _children_while_serving(gateway: GatewayProcess, *, wait: bool) -> list[int]:
    """Serve P-384 requests (threads answer until the child is ready), then the gateway's
    key-agreement children; with ``wait``, until there is one (15 s at most)."""
    assert gateway.process is not None
    deadline = time.monotonic() + 15
    while True:
        _serve_p384_requests(gateway, 5)
        children = _agreement_children(gateway.process.pid)
        if children or not wait or time.monotonic() > deadline:
            return children


@pytest.mark.parametrize("place", ["process", "thread"])
def test_a_served_gateway_runs_its_child_only_when_told_and_ends_it_on_sigterm(
    double: UpstreamDouble, tmp_path: Path, place: str
) -> None:
    gateway = GatewayProcess(double.url, tmp_path / "gateway.log", "--key-agreement", place).start()
    try:
        assert gateway.process is not None
        assert _agreement_children(gateway.process.pid) == []  # none before a P-384 request
        children = _children_while_serving(gateway, wait=place == "process")
        assert len(children) == (1 if place == "process" else 0)
        _serve_p384_requests(gateway, 5)
        assert gateway.terminate() == 0
        for child in children:
            assert not Path(f"/proc/{child}").exists()  # reaped, not orphaned
        assert "key_agreement_process" not in gateway.logs()  # it never failed
    finally:
        if gateway.alive():
            gateway.terminate()


@pytest.mark.parametrize(
    ("executable", "event", "reason"),
    [
        # cannot be started at all
        ("/nonexistent/python", "key_agreement_process_failed", "start_failed"),
        # starts, and ends before it is ready
        ("/bin/false", "key_agreement_process_exited", "exited"),
    ],
)
def test_a_child_that_cannot_run_leaves_the_threads_serving(
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    executable: str,
    event: str,
    reason: str,
) -> None:
    monkeypatch.setattr(sys, "executable", executable)
    failures: list[str] = []
    pool = KeyAgreementPool(1, on_child_failure=failures.append)

    async def scenario() -> None:
        assert not await pool.start_process(timeout=5)
        for n in range(3):
            body = ohttp.encapsulate_request(P384_KEY.config, P384_KEY.suites[0], b"%d" % n)[0]
            agreed = await pool.agreement(RING, body, ohttp.REQUEST_LABEL)
            assert ohttp.decapsulate_request(RING, body, agreed)[0] == b"%d" % n
        assert pool.process_pid is None

    with caplog.at_level(logging.WARNING, logger="gateway"):
        try:
            asyncio.run(scenario())
        finally:
            pool.close()
    assert event in caplog.text
    assert failures == [reason]  # counted once: the next start waits RESPAWN_AFTER


def test_a_served_gateway_counts_a_dead_child_and_keeps_serving(
    double: UpstreamDouble, tmp_path: Path
) -> None:
    gateway = GatewayProcess(double.url, tmp_path / "gateway.log").start()
    try:
        assert gateway.process is not None
        (child,) = _children_while_serving(gateway, wait=True)
        os.kill(child, signal.SIGKILL)  # the gateway's own child, found by its parent's pid
        _serve_p384_requests(gateway, 10)  # answered, in threads
        with urllib.request.urlopen(gateway.metrics_url, timeout=10) as response:  # noqa: S310
            scrape = response.read().decode()
        line = 'ohttp_gateway_key_agreement_child_failures_total{reason="exited"} 1.0'
        assert line in scrape
        assert "key_agreement_process_exited" in gateway.logs()
        assert gateway.terminate() == 0
    finally:
        if gateway.alive():
            gateway.terminate()
