"""Child processes that print ``<name> listening on URL`` once bound (relay, client proxy)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parents[2]


class Listening:
    """``python -m MODULE ARGS`` whose stdout is watched for its URL; stopped with SIGTERM."""

    def __init__(self, log: Path, module: str, *args: str) -> None:
        self.log = log
        self.command = [sys.executable, "-m", module, *args]
        self.process: subprocess.Popen[bytes] | None = None
        self.url = ""

    def __enter__(self) -> Listening:
        sink: IO[bytes] = self.log.open("wb")
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.process = subprocess.Popen(
            self.command, cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT, env=env
        )
        sink.close()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            for line in self.log.read_text(errors="replace").splitlines():
                if " listening on " in line:
                    self.url = line.rsplit(" ", 1)[1]
                    return self
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.command[2:4]} exited: {self.output()}")
            time.sleep(0.05)
        self.__exit__()
        raise RuntimeError("did not start listening")

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def __exit__(self, *exc_info: object) -> None:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
