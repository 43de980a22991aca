"""The azure-vtpm provider shared by worker processes: the user-data write and the read of the
report the paravisor regenerates from it are one critical section across processes (a ``flock``),
so concurrent collectors each get a report bound to their own user-data; a held lock makes the
next collector wait, and a stuck holder ends in TpmUnavailable after the bound, never a hang.

Real processes throughout: spawned collectors, a ``python`` child holding the lock, swtpm, and
the test support's paravisor regenerating the report after each write."""

from __future__ import annotations

import multiprocessing
import os
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from pathlib import Path

import pytest

from gateway.errors import GatewayError, TpmUnavailable
from gateway.trust import tpm_verify
from gateway.trust.evidence.azure_vtpm import AzureVtpmConfig, AzureVtpmProvider, report_lock_path
from gateway.trust.evidence.simulated import SimulatedAmd
from tests.support import swtpm
from tests.support.paravisor import Paravisor
from tests.trust.test_azure_vtpm import NONCE, USER_DATA, claimed_user_data, provider_for

pytestmark = pytest.mark.skipif(swtpm.SWTPM is None, reason="swtpm is not installed")

COLLECTS = 6  # per process
HOLD = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)
fcntl.flock(fd, fcntl.LOCK_EX)
print("held", flush=True)
sys.stdin.read()  # until the test closes our stdin (or dies)
"""


def _collect_many(
    config: AzureVtpmConfig, tag: int, start: Barrier, results: Queue[list[str]]
) -> None:
    """A worker: collect COLLECTS times, each with fresh user-data of its own; report what each
    report claimed ("own", "other", or the error's class name)."""
    provider = AzureVtpmProvider(config)
    outcomes = []
    start.wait(30)
    for round_ in range(COLLECTS):
        user_data = bytes([tag, round_]) * 32
        try:
            evidence = provider.collect(user_data, NONCE)
        except GatewayError as error:
            outcomes.append(type(error).__name__)
            continue
        outcomes.append("own" if claimed_user_data(evidence.report) == user_data else "other")
    results.put(outcomes)


@pytest.fixture
def paravisor(
    vtpm: swtpm.Swtpm, golden: swtpm.Golden, simulated_amd: SimulatedAmd
) -> Iterator[Paravisor]:
    aik = tpm_verify.parse_public(golden.provisioned.aik_public).public_key
    with Paravisor(vtpm.tcti, simulated_amd, aik) as hcl:
        yield hcl


class Holder:
    """Another process holding the report lock until :meth:`release` (or the test's end)."""

    def __init__(self, path: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", HOLD, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        assert self.process.stdout is not None
        assert self.process.stdout.readline() == b"held\n"

    def release(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(10)
        assert self.process.stdout is not None
        self.process.stdout.close()


@pytest.fixture
def holder(vtpm: swtpm.Swtpm) -> Iterator[Holder]:
    held = Holder(report_lock_path(vtpm.tcti, vtpm.directory))
    yield held
    if held.process.poll() is None:
        held.release()


def test_concurrent_collectors_each_get_the_report_of_their_own_user_data(
    vtpm: swtpm.Swtpm, paravisor: Paravisor
) -> None:
    config = AzureVtpmConfig(
        tcti=vtpm.tcti,
        event_log_path=Path("/nonexistent/binary_bios_measurements"),
        report_refresh_timeout_s=3.0,
        report_poll_interval_s=0.01,
        lock_directory=vtpm.directory,
    )
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(2)
    results: Queue[list[str]] = context.Queue()
    workers = [
        context.Process(target=_collect_many, args=(config, tag, start, results))
        for tag in (0xA1, 0xB2)
    ]
    for worker in workers:
        worker.start()
    try:
        outcomes = [results.get(timeout=90) for _ in workers]
    finally:
        for worker in workers:
            worker.join(10)
            if worker.is_alive():
                worker.kill()
                worker.join()
    assert outcomes == [["own"] * COLLECTS] * 2
    assert paravisor.refreshes >= 2 * COLLECTS - 1  # each write regenerated the report
    mode = stat.S_IMODE(os.stat(report_lock_path(vtpm.tcti, vtpm.directory)).st_mode)
    assert mode == 0o600


def test_a_collector_waits_while_another_process_holds_the_lock(
    vtpm: swtpm.Swtpm, paravisor: Paravisor, holder: Holder
) -> None:
    fresh = bytes(range(100, 164))
    provider = provider_for(
        vtpm, report_refresh_timeout_s=3.0, report_poll_interval_s=0.01, report_lock_margin_s=20.0
    )
    done: dict[str, object] = {}

    def collect() -> None:
        try:
            done["evidence"] = provider.collect(fresh, NONCE)
        finally:
            done["at"] = time.monotonic()

    collector = threading.Thread(target=collect, daemon=True)
    collector.start()
    time.sleep(0.5)
    assert collector.is_alive()
    assert swtpm.nv_get(vtpm.tcti, swtpm.USER_DATA_INDEX) == USER_DATA  # nothing written yet
    released = time.monotonic()
    holder.release()
    collector.join(20)
    assert not collector.is_alive()
    assert float(done["at"]) >= released  # type: ignore[arg-type]
    assert claimed_user_data(done["evidence"].report) == fresh  # type: ignore[attr-defined]


def test_a_stuck_holder_ends_in_tpm_unavailable_after_the_bound(
    vtpm: swtpm.Swtpm, holder: Holder
) -> None:
    provider = provider_for(vtpm, report_refresh_timeout_s=0.2, report_lock_margin_s=0.5)
    started = time.monotonic()
    with pytest.raises(TpmUnavailable, match="report lock too long"):
        provider.collect(bytes(range(64)), NONCE)
    waited = time.monotonic() - started
    assert 0.7 <= waited < 5.0
    assert swtpm.nv_get(vtpm.tcti, swtpm.USER_DATA_INDEX) == USER_DATA  # never wrote


def test_a_symlink_in_place_of_the_lock_file_is_refused(vtpm: swtpm.Swtpm, tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    report_lock_path(vtpm.tcti, vtpm.directory).symlink_to(target)
    with pytest.raises(TpmUnavailable, match="lock file could not be opened"):
        provider_for(vtpm).collect(USER_DATA, NONCE)
    assert not target.exists()
