"""Runs the gateway for tests: as a real ``ohttp-gateway serve`` process, or in a thread.

:class:`GatewayProcess` starts ``python -m gateway.cli serve`` on loopback with its stderr in a
file (the logs tests search), waits for ``/livez``, and stops it with SIGTERM (returning the exit
code). :class:`GatewayThread` runs :func:`gateway.server.app.build_app` under uvicorn in a thread
of the test process, for tests that need a custom key ring.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import uvicorn

from gateway.config import Settings
from gateway.server.app import build_app
from gateway.server.keysource import KeySource
from gateway.server.metrics import GatewayMetrics
from tests.support.upstream_double import free_port

ROOT = Path(__file__).resolve().parents[2]
DEV_SEED = "test-seed-0123456789abcdef"


def wait_until_live(
    url: str, timeout: float = 20.0, process: subprocess.Popen[bytes] | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"gateway exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url + "/livez", timeout=1) as response:  # noqa: S310 - loopback
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("gateway did not become live")


class GatewayProcess:
    """``ohttp-gateway serve --dev`` in a child process."""

    def __init__(
        self,
        upstream: str,
        log_path: Path,
        *extra: str,
        env: dict[str, str] | None = None,
        seed: bool = True,
    ) -> None:
        self.port = free_port()
        self.metrics_port = free_port()
        self.log_path = log_path
        self.args = [
            sys.executable,
            "-m",
            "gateway.cli",
            "serve",
            "--dev",
            *(("--dev-seed", DEV_SEED) if seed else ()),
            "--port",
            str(self.port),
            "--metrics-port",
            str(self.metrics_port),
            "--upstream",
            upstream,
            *extra,
        ]
        self.env = {**os.environ, **(env or {})}
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def start(self) -> GatewayProcess:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            self.args, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=self.env
        )
        log.close()
        wait_until_live(self.url, process=self.process)
        return self

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def terminate(self, timeout: float = 60.0) -> int:
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


class GatewayThread:
    """The gateway app under uvicorn in a thread, with the key source the test gives it."""

    def __init__(self, settings: Settings, keys: KeySource) -> None:
        self.port = free_port()
        self.metrics = GatewayMetrics()
        app = build_app(settings, keys, self.metrics)
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_config=None, lifespan="on"
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> GatewayThread:
        self._thread.start()
        wait_until_live(self.url)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=30)


@contextmanager
def module_gateway(
    upstream: str, factory: object, name: str, *extra: str, clean_exit: bool = True
) -> Iterator[GatewayProcess]:
    """A dev gateway for a module-scoped fixture, logging under ``factory.mktemp(name)``;
    stopped afterwards, asserting a clean exit unless told otherwise."""
    log = Path(factory.mktemp(name)) / "gateway.log"  # type: ignore[attr-defined]
    process = GatewayProcess(upstream, log, *extra).start()
    yield process
    code = process.terminate()
    if clean_exit:
        assert code == 0
