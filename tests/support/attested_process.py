"""A real, non-dev ``ohttp-gateway serve`` process attesting against the loopback emulators.

:class:`AttestedGateway` starts the gateway with exactly the environment ``ohttp-gateway emulate
--print-env`` prints (:meth:`Emulators.settings`), plus the test's overrides, waits for
``/livez`` (not for readiness: tests watch the lifecycle get there), and stops it with SIGTERM.
:meth:`AttestedGateway.wait_ready` polls ``/readyz``; :meth:`AttestedGateway.metric` reads one
sample from ``/metrics``; :func:`exchange` sends one encrypted request.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import aiohttp

from gateway.emulators.runner import Emulators
from gateway.protocol.keys import KeyConfig, decode_key_configs
from gateway.trust.evidence.simulated import SimulatedAmd
from tests.support.gateway_process import GatewayProcess
from tests.support.ohttp_client import inner_request, post_plain
from tests.support.upstream_double import free_port

FAST = {
    "OHTTP_GATEWAY_TRUST_RETRY_MAX_DELAY": "0.5",
    "OHTTP_GATEWAY_LOG_LEVEL": "info",
}


def make_emulators(state: Path) -> Emulators:
    """``emulate``'s emulators in ``state``, with a 2048-bit simulated AMD (fast to generate)."""
    state.mkdir(parents=True, exist_ok=True)
    amd_path = state / "simulated-amd.pem"
    if not amd_path.exists():
        amd_path.write_bytes(SimulatedAmd.generate(rsa_bits=2048).dump())
    return Emulators(state)


def get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - loopback
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


class AttestedGateway(GatewayProcess):
    """``ohttp-gateway serve`` (not dev) in a child process."""

    def __init__(self, env: dict[str, str], upstream: str, log_path: Path, *extra: str) -> None:
        self.port, self.metrics_port = free_port(), free_port()
        self.log_path = log_path
        self.args = [
            sys.executable, "-m", "gateway.cli", "serve",
            "--port", str(self.port), "--metrics-port", str(self.metrics_port),
            "--upstream", upstream, *extra,
        ]  # fmt: skip
        self.env = {**os.environ, **FAST, **env}
        self.process: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0

    def start(self) -> AttestedGateway:
        self.started_at = time.monotonic()
        super().start()
        return self

    def ready(self) -> bool:
        return get(self.url + "/readyz")[0] == 200

    def wait_ready(self, timeout: float = 30.0) -> float:
        """Seconds from process start until /readyz answered 200."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.alive(), "the gateway exited"
            if self.ready():
                return time.monotonic() - self.started_at
            time.sleep(0.02)
        raise AssertionError("the gateway did not become ready:\n" + self.logs()[-3000:])

    def metric(self, name: str, **labels: str) -> float:
        """The value of one sample (0 when absent)."""
        text = get(self.metrics_url)[1].decode()
        for line in text.splitlines():
            match = re.fullmatch(r"([a-z_]+)(\{(.*)\})? (\S+)", line)
            if not match or match.group(1) != name:
                continue
            found = dict(re.findall(r'(\w+)="([^"]*)"', match.group(3) or ""))
            if all(found.get(k) == v for k, v in labels.items()):
                return float(match.group(4))
        return 0.0


def exchange(url: str, config: KeyConfig | None = None) -> int | None:
    """One RFC 9458 request to the gateway at ``url``, encrypted to ``config`` (default: the
    first config it serves); the inner status, or None when the answer was not encapsulated."""
    if config is None:
        config = decode_key_configs(get(url + "/.well-known/ohttp-gateway")[1])[0]
    chosen = config

    async def go() -> int | None:
        async with aiohttp.ClientSession() as session:
            answer = await post_plain(
                session, url + "/gateway", chosen, chosen.suites[0], inner_request()
            )
        return answer.inner.status if answer.inner is not None else None

    return asyncio.run(go())
