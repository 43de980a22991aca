"""``serve --workers 2``: one socket, two processes, the same keys, aggregated metrics, a clean
SIGTERM."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import urllib.request
from pathlib import Path

import aiohttp

from tests.server.conftest import run
from tests.support.gateway_process import GatewayProcess
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
