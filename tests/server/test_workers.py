"""``serve --workers 2``: one port, two processes, the same keys, aggregated metrics, one
replay memory, a clean SIGTERM."""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import secrets
import shlex
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import aiohttp

from gateway.errors import PROBLEM_DATE
from gateway.protocol import bhttp, ohttp
from gateway.protocol.keys import KeyConfig
from tests.server.conftest import run
from tests.support.accepted import gateway_workers, serving_process, wait_for_each_worker
from tests.support.gateway_process import ROOT, GatewayProcess
from tests.support.ohttp_client import inner_request, key_configs, post_plain
from tests.support.upstream_double import UpstreamDouble


def test_two_workers_share_keys_and_metrics(double: UpstreamDouble, tmp_path: Path) -> None:
    # No --dev-seed: the supervisor must still give both workers the same keys.
    process = GatewayProcess(double.url, tmp_path / "g.log", "--workers", "2", seed=False).start()
    try:

        async def body() -> set[bytes]:
            seen: set[bytes] = set()
            for _ in range(6):  # fresh connections land on either worker
                async with aiohttp.ClientSession() as session:
                    configs = await key_configs(session, process.url)
                    seen.add(b"".join(c.encode() for c in configs))
                    config = configs[0]
                    answers = await asyncio.gather(
                        *(
                            post_plain(
                                session,
                                process.url + "/gateway",
                                config,
                                config.suites[0],
                                inner_request(),
                            )
                            for _ in range(8)
                        )
                    )
                    assert all(a.inner is not None and a.inner.status == 200 for a in answers)
            return seen

        assert len(run(body())) == 1
        with urllib.request.urlopen(process.metrics_url, timeout=5) as response:  # noqa: S310
            scrape = response.read().decode()
        assert (
            'ohttp_gateway_requests_total{outcome="ok",profile="ohttp",route="gateway"} 48.0'
            in scrape
        )
        assert "ohttp_gateway_dev_mode 1.0" in scrape
        promtool = shutil.which("promtool")
        assert promtool is not None
        checked = subprocess.run(
            [promtool, "check", "metrics"],
            input=scrape,
            capture_output=True,
            text=True,
            check=False,
        )
        assert checked.returncode == 0, checked.stdout + checked.stderr
    finally:
        assert process.terminate() == 0
    for line in process.logs().splitlines():
        assert line.startswith("{"), line  # JSON only: no stray warnings from the workers


def _exchange(port: int, sealed: bytes) -> tuple[http.client.HTTPConnection, bytes]:
    """One POST over a fresh connection, left open so its worker can be found."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request("POST", "/gateway", sealed, {"content-type": "message/ohttp-req"})
    response = connection.getresponse()
    body = response.read()
    assert response.status == 200
    assert response.getheader("content-type") == "message/ohttp-res"
    return connection, body


def test_a_replay_landing_on_another_worker_is_refused(
    double: UpstreamDouble, tmp_path: Path
) -> None:
    shm_before = set(os.listdir("/dev/shm"))
    process = GatewayProcess(double.url, tmp_path / "g.log", "--workers", "2").start()
    try:
        assert process.process is not None
        workers = gateway_workers(process.process.pid)
        assert len(workers) == 2  # both workers map the one table; the supervisor let go of it
        assert process.process.pid not in workers
        wait_for_each_worker(process.port, workers)

        async def first_config() -> KeyConfig:
            async with aiohttp.ClientSession() as session:
                return (await key_configs(session, process.url))[0]

        config = run(first_config())
        ephemeral = secrets.token_bytes(32)  # fixed skE: the same request, a fresh context each

        def seal() -> tuple[bytes, ohttp.ClientResponseContext]:
            message = bhttp.encode_request(inner_request())
            return ohttp.encapsulate_request(
                config, config.suites[0], message, _ephemeral_private_key=ephemeral
            )

        sealed = seal()[0]
        before = double.stats.requests
        answers: list[tuple[int, bhttp.Response]] = []
        for _ in range(20):
            connection, body = _exchange(process.port, sealed)
            try:
                assert connection.sock is not None
                worker = serving_process(workers, connection.sock)
            finally:
                connection.close()
            again, context = seal()
            assert again == sealed
            answers.append((worker, bhttp.decode_response(context.decapsulate_response(body))))
        assert double.stats.requests == before + 1
        accepted = [(worker, answer) for worker, answer in answers if answer.status == 200]
        assert len(accepted) == 1  # exactly one copy reached the upstream
        refusals = [(worker, answer) for worker, answer in answers if answer.status != 200]
        for _, answer in refusals:
            assert answer.status == 400
            assert json.loads(answer.content)["type"] == PROBLEM_DATE
        # The point: the worker that did not accept the original refused copies too.
        assert {worker for worker, _ in refusals} == set(workers)
        with urllib.request.urlopen(process.metrics_url, timeout=5) as response:  # noqa: S310
            scrape = response.read().decode()
        assert "ohttp_gateway_replays_refused_total 19.0" in scrape
    finally:
        assert process.terminate() == 0
    for pid in workers:
        assert not Path(f"/proc/{pid}").exists()  # every holder of the table is gone: freed
    assert set(os.listdir("/dev/shm")) <= shm_before  # and nothing was ever named in /dev/shm


def test_a_replay_memory_that_cannot_be_allocated_stops_startup(double: UpstreamDouble) -> None:
    # The table is allocated in full at startup; a file size limit below it makes that fail
    # (EFBIG, SIGXFSZ ignored) the way a lack of memory would.
    command = shlex.join(GatewayProcess(double.url, Path(os.devnull), "--workers", "2").args)
    limited = f"trap '' XFSZ; ulimit -f 1024; exec {command}"
    result = subprocess.run(
        ["bash", "-c", limited], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 2
    assert "ohttp-gateway serve: Replay table not created" in result.stderr


def test_a_killed_worker_leaves_the_counts_it_had(double: UpstreamDouble, tmp_path: Path) -> None:
    """The supervisor merges its workers' metrics at each scrape; one SIGKILLed still counts
    with what it last reported, so no merged counter goes down, and the scrape still answers."""
    process = GatewayProcess(double.url, tmp_path / "g.log", "--workers", "2").start()
    try:
        assert process.process is not None
        workers = gateway_workers(process.process.pid)
        wait_for_each_worker(process.port, workers)

        async def first_config() -> KeyConfig:
            async with aiohttp.ClientSession() as session:
                return (await key_configs(session, process.url))[0]

        config = run(first_config())

        def serve_some(count: int) -> list[int]:
            """``count`` requests on fresh connections; the worker that served each."""
            served = []
            for _ in range(count):
                message = bhttp.encode_request(inner_request())
                sealed = ohttp.encapsulate_request(config, config.suites[0], message)[0]
                connection, _body = _exchange(process.port, sealed)
                try:
                    assert connection.sock is not None
                    served.append(serving_process(workers, connection.sock))
                finally:
                    connection.close()
            return served

        def requests_ok() -> float:
            with urllib.request.urlopen(process.metrics_url, timeout=5) as response:  # noqa: S310
                scrape = response.read().decode()
            series = 'ohttp_gateway_requests_total{outcome="ok",profile="ohttp",route="gateway"} '
            line = next(line for line in scrape.splitlines() if line.startswith(series))
            return float(line.rsplit(" ", 1)[1])

        served = serve_some(10)
        assert requests_ok() == 10
        victim = max(set(served), key=served.count)
        os.kill(victim, 9)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and "zombie" not in _state(victim):
            time.sleep(0.05)
        assert requests_ok() == 10  # the victim's share is still counted
        workers.remove(victim)
        serve_some(5)  # the other worker serves on
        assert requests_ok() == 15
    finally:
        assert process.terminate() == 1  # a worker ended uncleanly: the supervisor says so


def _state(pid: int) -> str:
    """The process's state line, or "zombie" once it is gone altogether."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return "zombie"
    return next(line for line in status.splitlines() if line.startswith("State:"))
