"""Gateway benchmark: the OHTTP gateway vs a plain reverse proxy on the same stack vs the upstream
called directly, with wrk (a separate process) as the load generator.

Measures req/s and p50/p99 latency at 1 KiB (32 connections), 1 MiB (8) and 25 MiB (2); the
gateway with X25519 and P-384, plain and chunked OHTTP, 1 and 2 workers; the plain proxy with
aiohttp and with httpx as its upstream client; and the gateway's peak RSS (VmHWM) against its idle
RSS for the large bodies. Every OHTTP request carries a fresh encapsulation: the bodies are
encrypted before the timed run (bench/bodies.lua cycles through them). For the large bodies the
gateway runs with ``--replay-window 1`` so a body may recur after a second; each gateway run is
checked on its metrics: no replay refused, every request answered ok, else the row is marked
INVALID. The upstream is bench/sink_upstream.py (reads each body whole, answers a small JSON):
it stands for Whisper at the smallest CPU cost, since wrk, the upstream and the system under test
share this machine's two cores.

The 1 KiB comparisons that have goals (gateway vs plain proxy, P-384 vs plain proxy, two workers vs
one) run in ``--rounds`` interleaved rounds: proxy, gateway X25519, P-384, chunked, two workers,
then again. Each round's ratio uses that round's own baseline, and the summary prints the median
ratio with every round's value, so a burst of load from another process on this shared machine
moves one round, not the verdict.

Run: ``make bench-gateway`` or
``python -m bench.gateway_bench [--duration S] [--sizes 1KiB,...] [--rounds N]``.
Writes the table to stdout and JSON to bench/results/gateway.json. Not a test: numbers depend on
the machine (2 shared cores here: wrk, the upstream and the gateway compete for them).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

from gateway.protocol import bhttp, ohttp
from gateway.protocol.chunked import ChunkedRequestEncapsulator
from gateway.protocol.keys import KemId, KeyConfig
from gateway.server.keysource import dev_key_ring

ROOT = Path(__file__).resolve().parent.parent
SEED = "bench-seed-0123456789abcdef"
PATH = b"/v1/audio/transcriptions?sink=1"
KIB, MIB = 1024, 1024 * 1024


@dataclass
class Row:
    target: str
    size: str
    connections: int
    rps: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    requests: int = 0
    errors: int = 0
    cpu_ms_per_request: float | None = None
    idle_rss_mib: float | None = None
    peak_rss_mib: float | None = None
    note: str = ""
    extra: dict[str, float] = field(default_factory=dict)


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1):  # noqa: S310 - loopback
                return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


@contextmanager
def process(args: list[str], ready_url: str) -> Iterator[subprocess.Popen[bytes]]:
    child = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_http(ready_url)
        yield child
    finally:
        child.send_signal(signal.SIGTERM)
        try:
            child.wait(60)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants: a supervisor's workers, a worker's key-agreement child."""
    pids = [pid]
    for one in pids:
        with contextlib.suppress(FileNotFoundError):
            pids += [int(p) for p in Path(f"/proc/{one}/task/{one}/children").read_text().split()]
    return pids


def _status_mib(pid: int, field_name: str) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(rf"^{field_name}:\s+(\d+) kB", status, re.M)
    return int(match.group(1)) / 1024 if match else 0.0


def rss_mib(pid: int, field_name: str, *, supervisor: bool = False) -> float:
    """VmRSS or VmHWM summed over ``pid``'s process tree; without the supervisor itself, which
    does no request work, when ``pid`` is one."""
    total = sum(_status_mib(one, field_name) for one in process_tree(pid))
    if supervisor:
        total -= _status_mib(pid, field_name)
    return round(total, 1)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid``'s process tree (workers, key-agreement children)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for one in process_tree(pid):
        with contextlib.suppress(FileNotFoundError):
            fields = Path(f"/proc/{one}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / ticks
    return total


def per_request(seconds: float, requests: int) -> float:
    return round(seconds * 1000 / max(1, requests), 3)


def write_bodies(path: Path, bodies: Iterator[bytes]) -> int:
    count = 0
    with path.open("wb") as sink:
        for body in bodies:
            sink.write(struct.pack(">I", len(body)) + body)
            count += 1
    return count


def inner(size: int) -> bytes:
    request = bhttp.Request(
        b"POST", b"https", b"whisper", PATH, ((b"content-type", b"audio/wav"),), os.urandom(size)
    )
    return bhttp.encode_request(request)


def plain_bodies(config: KeyConfig, size: int, count: int) -> Iterator[bytes]:
    message = inner(size)
    for _ in range(count):
        yield ohttp.encapsulate_request(config, config.suites[0], message)[0]


def chunked_bodies(config: KeyConfig, size: int, count: int) -> Iterator[bytes]:
    message = inner(size)
    for _ in range(count):
        encapsulator = ChunkedRequestEncapsulator(config, config.suites[0])
        yield encapsulator.start() + encapsulator.encapsulate_chunk(message) + encapsulator.finish()


def run_wrk(url: str, bodies: Path, media: str, connections: int, duration: float) -> Row:
    wrk = shutil.which("wrk")
    if wrk is None:
        raise SystemExit("wrk is missing: run scripts/system-deps (Debian package wrk)")
    seconds = max(1, round(duration))
    args = [wrk, "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "--timeout", "60s"]
    args += ["-s", str(ROOT / "bench" / "bodies.lua"), url, "--", str(bodies), media]
    output = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    row = Row("", "", connections)
    row.rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    row.requests = int(re.search(r"(\d+) requests in", output).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    socket_errors = re.search(r"Socket errors: (.*)", output)
    row.errors = int(errors.group(1)) if errors else 0
    if socket_errors:
        row.note += "socket errors: " + socket_errors.group(1) + " "
    for label, attribute in (("50%", "p50_ms"), ("99%", "p99_ms")):
        match = re.search(rf"{label}\s+([\d.]+)(us|ms|s)\b", output)
        if match:
            scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[match.group(2)]
            setattr(row, attribute, round(float(match.group(1)) * scale, 2))
    return row


def metric(url: str, name: str) -> float:
    with urllib.request.urlopen(url, timeout=5) as answer:  # noqa: S310 - loopback
        text = answer.read().decode()
    return sum(float(m) for m in re.findall(rf"^{name}(?:{{[^}}]*}})? ([\d.e+]+)$", text, re.M))


class Bench:
    def __init__(self, duration: float, work: Path) -> None:
        self.duration = duration
        self.work = work
        self.rows: list[Row] = []
        self.round: int | None = None
        self.upstream_port = free_port()
        ring = dev_key_ring(SEED.encode())
        self.configs = {config.kem_id: config for config in ring.configs}

    def record(self, row: Row, target: str, size: str) -> None:
        row.target, row.size = target, size
        if self.round is not None:
            row.extra["round"] = self.round
        self.rows.append(row)
        print(
            f"{target:34} {size:>7} c={row.connections:<3} {row.rps:9.1f} req/s  "
            f"p50 {row.p50_ms:8.2f} ms  p99 {row.p99_ms:8.2f} ms  "
            f"cpu {row.cpu_ms_per_request} ms/req  "
            f"rss {row.idle_rss_mib}->{row.peak_rss_mib} MiB  {row.note}"
            + ("" if self.round is None else f" (round {self.round + 1})"),
            flush=True,
        )

    def single_body(self, size: int) -> Path:
        path = self.work / f"raw-{size}.bin"
        if not path.exists():
            write_bodies(path, iter([os.urandom(size)]))
        return path

    def direct(self, size: int, label: str, connections: int) -> None:
        url = f"http://127.0.0.1:{self.upstream_port}" + PATH.decode()
        row = run_wrk(url, self.single_body(size), "audio/wav", connections, self.duration)
        self.record(row, "upstream direct", label)

    def proxy(self, size: int, label: str, connections: int, client: str = "aiohttp") -> None:
        port = free_port()
        args = [sys.executable, "-m", "bench.plain_proxy", "--port", str(port)]
        args += ["--upstream", f"http://127.0.0.1:{self.upstream_port}", "--client", client]
        with process(args, f"http://127.0.0.1:{port}/") as child:
            idle, cpu = rss_mib(child.pid, "VmRSS"), cpu_seconds(child.pid)
            url = f"http://127.0.0.1:{port}" + PATH.decode()
            row = run_wrk(url, self.single_body(size), "audio/wav", connections, self.duration)
            row.idle_rss_mib, row.peak_rss_mib = idle, rss_mib(child.pid, "VmHWM")
            row.cpu_ms_per_request = per_request(cpu_seconds(child.pid) - cpu, row.requests)
        self.record(row, f"plain proxy ({client})", label)

    def gateway(
        self,
        size: int,
        label: str,
        connections: int,
        kem: KemId,
        *,
        chunked: bool = False,
        workers: int = 1,
        count: int,
        key_agreement: str = "process",
    ) -> None:
        config = self.configs[kem]
        profile = "chunked" if chunked else "plain"
        bodies = self.work / f"{kem.name}-{profile}-{size}-{count}.bin"
        if not bodies.exists():
            maker = chunked_bodies if chunked else plain_bodies
            write_bodies(bodies, maker(config, size, count))
        port, metrics_port = free_port(), free_port()
        args = [sys.executable, "-m", "gateway.cli", "serve", "--dev", "--dev-seed", SEED]
        args += [
            "--port",
            str(port),
            "--metrics-port",
            str(metrics_port),
            "--workers",
            str(workers),
        ]
        args += ["--upstream", f"http://127.0.0.1:{self.upstream_port}", "--log-level", "warning"]
        args += ["--max-concurrency", "256", "--key-agreement", key_agreement]
        if size > 64 * KIB:
            args += ["--replay-window", "1"]
        media = "message/ohttp-chunked-req" if chunked else "message/ohttp-req"
        with process(args, f"http://127.0.0.1:{port}/livez") as child:
            time.sleep(0.5 * workers)
            supervisor = workers > 1
            idle = rss_mib(child.pid, "VmRSS", supervisor=supervisor)
            cpu = cpu_seconds(child.pid)
            row = run_wrk(
                f"http://127.0.0.1:{port}/gateway", bodies, media, connections, self.duration
            )
            row.idle_rss_mib = idle
            row.peak_rss_mib = rss_mib(child.pid, "VmHWM", supervisor=supervisor)
            row.cpu_ms_per_request = per_request(cpu_seconds(child.pid) - cpu, row.requests)
            metrics = f"http://127.0.0.1:{metrics_port}/metrics"
            replays = metric(metrics, "ohttp_gateway_replays_refused_total")
            upstream_ok = metric(
                metrics, 'ohttp_gateway_upstream_responses_total{status_class="2xx"}'
            )
        if replays:
            row.note += f"INVALID: {replays:.0f} replays refused "
        if upstream_ok < row.requests:
            row.note += f"INVALID: upstream saw {upstream_ok:.0f} of {row.requests} "
        kem_name = {KemId.X25519_SHA256: "X25519", KemId.P384_SHA384: "P-384"}[kem]
        place = "" if key_agreement == "process" else f" ({key_agreement}s)"
        self.record(row, f"gateway {profile} {kem_name}{place} w={workers}", label)


GOALS: tuple[tuple[str, str, float | None], ...] = (
    ("gateway plain X25519 w=1", "plain proxy (aiohttp)", 0.70),
    ("gateway plain P-384 w=1", "plain proxy (aiohttp)", 0.50),
    ("gateway plain X25519 w=2", "gateway plain X25519 w=1", 1.70),
    # Why P-384 agrees in a child process (gateway/server/agreement_process.py): no goal.
    ("gateway plain P-384 w=1", "gateway plain P-384 (threads) w=1", None),
)


def summarize(rows: list[Row], size: str, rounds: int) -> list[str]:
    """The goal ratios at ``size``: the median over rounds of each round's own ratio."""
    lines = [f"ratios at {size}, median of {rounds} interleaved rounds (each round's ratio):"]
    for target, baseline, goal in GOALS:
        ratios = []
        for index in range(rounds):
            found = {
                row.target: row.rps
                for row in rows
                if row.size == size and row.extra.get("round") == index
            }
            if found.get(target) and found.get(baseline):
                ratios.append(found[target] / found[baseline])
        if not ratios:
            continue
        median = statistics.median(ratios)
        each = " ".join(f"{ratio:.2f}" for ratio in ratios)
        verdict = "(no goal)"
        if goal is not None:
            verdict = f"goal >= {goal:.2f}: " + ("met" if median >= goal else "NOT met")
        lines.append(f"  {target} / {baseline}: {median:.2f} [{each}]  {verdict}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument(
        "--sizes", default="1KiB,1MiB,25MiB", help="comma-separated subset of 1KiB,1MiB,25MiB"
    )
    parser.add_argument(
        "--rounds", type=int, default=3, help="interleaved rounds of the 1 KiB comparisons"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "gateway.json")
    args = parser.parse_args()
    sizes = set(args.sizes.split(","))
    work = Path(tempfile.mkdtemp(prefix="gateway-bench-"))
    bench = Bench(args.duration, work)
    upstream = [sys.executable, "-m", "bench.sink_upstream", "--port", str(bench.upstream_port)]
    x25519, p384 = KemId.X25519_SHA256, KemId.P384_SHA384
    summary: list[str] = []
    try:
        with process(upstream, f"http://127.0.0.1:{bench.upstream_port}/"):
            if "1KiB" in sizes:
                bench.direct(KIB, "1 KiB", 32)
                bench.proxy(KIB, "1 KiB", 32, client="httpx")
                for index in range(args.rounds):
                    bench.round = index
                    bench.proxy(KIB, "1 KiB", 32)
                    bench.gateway(KIB, "1 KiB", 32, x25519, count=60_000)
                    bench.gateway(KIB, "1 KiB", 32, p384, count=25_000)
                    bench.gateway(KIB, "1 KiB", 32, p384, count=25_000, key_agreement="thread")
                    bench.gateway(KIB, "1 KiB", 32, x25519, chunked=True, count=60_000)
                    bench.gateway(KIB, "1 KiB", 32, x25519, workers=2, count=80_000)
                bench.round = None
                summary = summarize(bench.rows, "1 KiB", args.rounds)
            if "1MiB" in sizes:
                bench.direct(MIB, "1 MiB", 8)
                bench.proxy(MIB, "1 MiB", 8)
                # Enough bodies that none recurs within the 1 s replay window at these rates.
                bench.gateway(MIB, "1 MiB", 8, x25519, count=1200)
                bench.gateway(MIB, "1 MiB", 8, x25519, chunked=True, count=800)
                bench.gateway(MIB, "1 MiB", 8, p384, count=800)
            if "25MiB" in sizes:
                bench.direct(25 * MIB, "25 MiB", 2)
                bench.proxy(25 * MIB, "25 MiB", 2)
                bench.gateway(25 * MIB, "25 MiB", 2, x25519, count=30)
                bench.gateway(25 * MIB, "25 MiB", 2, x25519, chunked=True, count=30)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if summary:
        print("\n" + "\n".join(summary))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps([asdict(row) for row in bench.rows], indent=2) + "\n")
    print(f"\nwritten: {args.out}")


if __name__ == "__main__":
    main()
