"""Runs ``ohttp-client`` in this process and records its peak RSS growth (a test helper).

Usage: ``python -m tests.client.rss_probe OUT.json ohttp-client-args...``. Everything the CLI
needs is imported first; the baseline is VmRSS just before ``main`` runs, the peak is VmHWM
(the kernel's high-water mark of this process's memory) after it returns. Not ``ru_maxrss``: on
Linux it carries over the forking parent's RSS across exec, so a large test runner inflates it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import gateway.client.commands
import gateway.client.proxy
import gateway.client.session  # noqa: F401 - imported before the baseline on purpose
from gateway.client.cli import main


def status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field}")


if __name__ == "__main__":
    out, argv = Path(sys.argv[1]), sys.argv[2:]
    baseline = status_kib("VmRSS")
    code = main(argv)
    peak = status_kib("VmHWM")
    out.write_text(json.dumps({"exit": code, "baseline_kib": baseline, "peak_kib": peak}))
    raise SystemExit(code)
