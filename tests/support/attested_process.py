"""A real, non-dev ``ohttp-gateway serve`` process attesting against the loopback emulators.

:class:`AttestedGateway` starts the gateway with exactly the environment ``ohttp-gateway emulate
--print-env`` prints (:meth:`Emulators.settings`), plus the test's overrides, waits for
``/livez`` (not for readiness: tests watch the lifecycle get there), and stops it with SIGTERM.
:func:`wait_ready` polls ``/readyz``; :func:`metric` reads one sample from ``/metrics``.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from gateway.emulators.runner import Emulators
from gateway.trust.evidence.simulated import SimulatedAmd
from tests.support.gateway_process import ROOT, wait_until_live
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


class AttestedGateway:
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

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> AttestedGateway:
        log = self.log_path.open("ab")
        self.started_at = time.monotonic()
        self.process = subprocess.Popen(
            self.args, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=self.env
        )
        log.close()
        wait_until_live(self.url, process=self.process)
        return self

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

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

    def metrics(self) -> str:
        return get(f"http://127.0.0.1:{self.metrics_port}/metrics")[1].decode()

    def metric(self, name: str, **labels: str) -> float:
        """The value of one sample (0 when absent)."""
        for line in self.metrics().splitlines():
            match = re.fullmatch(r"([a-z_]+)(\{(.*)\})? (\S+)", line)
            if not match or match.group(1) != name:
                continue
            found = dict(re.findall(r'(\w+)="([^"]*)"', match.group(3) or ""))
            if all(found.get(k) == v for k, v in labels.items()):
                return float(match.group(4))
        return 0.0

    def terminate(self, timeout: float = 30.0) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")
