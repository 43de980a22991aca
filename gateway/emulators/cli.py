"""``ohttp-gateway emulate``: run the loopback emulators until interrupted.

Prints, as soon as every server is listening, either a summary (the URLs and the CA path) or,
with ``--print-env``, only ``KEY=VALUE`` lines (values shell-quoted) that a shell can ``source``
to give ``ohttp-gateway serve`` exactly the settings it needs to use the emulators. Then serves
until SIGINT or SIGTERM, and exits 0. Never prints secrets: the state directory holds the dev
keys, and only its paths are printed.
"""

from __future__ import annotations

import argparse
import asyncio
import shlex
import signal
import sys
from pathlib import Path

from gateway.emulators.maa_verify import MaaPolicy
from gateway.emulators.runner import Emulators, default_state_dir
from gateway.trust.policy import SnpPolicy


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--print-env",
        action="store_true",
        help="print KEY=VALUE lines for `source`, instead of a summary",
    )
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help=f"where the CA, keys and simulated AMD live (default {default_state_dir()})",
    )
    parser.add_argument("--maa-port", type=int, default=0, help="MAA port (default: any free)")
    parser.add_argument("--imds-port", type=int, default=0, help="IMDS port (default: any free)")
    parser.add_argument(
        "--allow-debug",
        action="store_true",
        help="MAA emulator: accept debuggable guests (MAA's default policy does)",
    )


def run(args: argparse.Namespace) -> int:
    policy = MaaPolicy(snp=SnpPolicy(allow_debug=args.allow_debug))
    emulators = Emulators(
        args.state_dir or default_state_dir(),
        maa_policy=policy,
        maa_port=args.maa_port,
        thim_port=args.imds_port,
    )
    asyncio.run(_serve(emulators, print_env=args.print_env))
    return 0


async def _serve(emulators: Emulators, *, print_env: bool) -> None:
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, emulators.group.stop)
    serving = asyncio.create_task(emulators.group.serve())
    while not emulators.group.started and not serving.done():
        await asyncio.sleep(0.02)
    if emulators.group.started:
        _announce(emulators, print_env=print_env)
    await serving


def _announce(emulators: Emulators, *, print_env: bool) -> None:
    if print_env:
        for key, value in emulators.settings().items():
            print(f"{key}={shlex.quote(value)}")
    else:
        for endpoint in emulators.endpoints:
            print(f"{endpoint.name:6} {endpoint.url}")
        print(f"THIM   {emulators.thim_url}")
        print(f"CA     {emulators.tls.ca_path}")
        print("ready; Ctrl-C stops. `--print-env` prints the settings for `ohttp-gateway serve`.")
    sys.stdout.flush()
