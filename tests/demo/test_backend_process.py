"""The backend as a process: clean shutdown, orphaned workers, and the command line's refusals."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gateway.demo.backend import (
    BackendProcess,
    BackendSettings,
    RunningBackend,
    add_arguments,
    settings_from,
)
from gateway.errors import ConfigError
from tests.demo.helpers import PHRASES, alive, children_of, get


def wait_until_gone(pids: set[int], seconds: float) -> set[int]:
    deadline = time.monotonic() + seconds
    while (left := {pid for pid in pids if alive(pid)}) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


def test_sigterm_stops_the_server_and_its_workers() -> None:
    process = BackendProcess(BackendSettings(port=0, phrases=PHRASES))
    backend = process.__enter__()
    assert get(backend, "/health").status == 200
    assert process.pid is not None
    workers = children_of(process.pid)
    assert workers  # the recogniser worker (and multiprocessing's helpers)
    assert process.stop() == 0
    assert wait_until_gone(workers, 5.0) == set()


def test_workers_exit_when_the_server_is_killed() -> None:
    process = BackendProcess(BackendSettings(port=0, phrases=PHRASES))
    process.__enter__()
    assert process.pid is not None
    workers = children_of(process.pid)
    os.kill(process.pid, signal.SIGKILL)
    try:
        # The parent-pid watchdog polls every 0.5 s.
        assert wait_until_gone(workers, 5.0) == set()
    finally:
        process.stop()


def test_an_unknown_phrase_word_stops_the_start() -> None:
    with (
        pytest.raises(ConfigError, match="did not start"),
        BackendProcess(BackendSettings(port=0, phrases=("hello qwzzx",))),
    ):
        pass


def cli(*arguments: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "gateway.cli", "demo-backend", "--port", "0", *arguments]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


def test_cli_reports_an_unknown_phrase_word(tmp_path: Path) -> None:
    result = cli("--phrase", "hello world", "--phrase", "hello qwzzx")
    assert result.returncode == 2
    expected = "demo-backend: phrase 2, word 2: not in the recogniser's dictionary"
    assert result.stderr.strip() == f"ohttp-gateway {expected}"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot be read"),
        ("# only a comment\n\n", "the phrase list is empty"),
        (b"\xff\xfe bad utf-8", "cannot be read"),
    ],
)
def test_cli_reports_an_unusable_phrases_file(
    tmp_path: Path, content: str | bytes | None, message: str
) -> None:
    path = tmp_path / "phrases.txt"
    if isinstance(content, str):
        path.write_text(content)
    elif isinstance(content, bytes):
        path.write_bytes(content)
    result = cli("--phrases", str(path))
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def parse(*arguments: str) -> BackendSettings:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return settings_from(parser.parse_args(arguments))


def test_phrases_come_from_options_and_a_file(tmp_path: Path) -> None:
    path = tmp_path / "phrases.txt"
    path.write_text("# test phrases\nhello world today is a sunny day\n\n  # indented comment\n")
    settings = parse("--phrase", "The quick brown fox.", "--phrases", str(path), "--port", "0")
    assert settings.phrases == ("The quick brown fox.", "hello world today is a sunny day")
    assert parse().phrases is None
    assert parse().port == 8000


@pytest.mark.parametrize("arguments", [("--stream-pace", "-1"), ("--max-upload-bytes", "0")])
def test_bad_limits_are_refused(arguments: tuple[str, str]) -> None:
    with pytest.raises(ConfigError):
        parse(*arguments)


def test_urls_bracket_ipv6_hosts() -> None:
    assert RunningBackend("::1", 8000).url == "http://[::1]:8000"
    assert RunningBackend("127.0.0.1", 8000).url == "http://127.0.0.1:8000"
