"""Runs ``ohttp-client`` in this process and records its peak RSS growth (a test helper).

Usage: ``python -m tests.client.rss_probe OUT.json ohttp-client-args...``. Everything the CLI
needs is imported first; the baseline is VmRSS just before ``main`` runs, the peak is
``ru_maxrss`` (kernel-tracked high-water mark) after it returns.
"""

from __future__ import annotations

import json
import resource
import sys
from pathlib import Path

import gateway.client.commands
import gateway.client.proxy
import gateway.client.session  # noqa: F401 - imported before the baseline on purpose
from gateway.client.cli import main


def vm_rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


if __name__ == "__main__":
    out, argv = Path(sys.argv[1]), sys.argv[2:]
    baseline = vm_rss_kib()
    code = main(argv)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out.write_text(json.dumps({"exit": code, "baseline_kib": baseline, "peak_kib": peak}))
    raise SystemExit(code)
