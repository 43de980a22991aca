"""The ``ohttp-gateway`` command: a thin dispatcher over subcommands.

Each subcommand lives in the layer it belongs to and exposes two functions::

    def add_arguments(parser: argparse.ArgumentParser) -> None: ...
    def run(args: argparse.Namespace) -> int: ...

Modules are imported only when their subcommand runs, so ``ohttp-gateway attest`` never pays for
the server's imports and vice versa. Errors from our hierarchy become a one-line message and exit
code 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from types import ModuleType

from gateway import __version__
from gateway.errors import GatewayError

# subcommand -> (module, one-line help). Add a line here to add a subcommand.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "serve": ("gateway.server.cli_serve", "run the OHTTP gateway"),
    "check-config": ("gateway.server.cli_check_config", "validate and print the settings, masked"),
    "demo-backend": (
        "gateway.demo.backend",
        "run the offline OpenAI-compatible transcription backend (the demo's Whisper stand-in)",
    ),
    "demo": ("gateway.demo.run", "run backend, gateway and client on loopback; print transcripts"),
    "attest": ("gateway.trust.cli", "inspect and verify attestation evidence and MAA tokens"),
    "emulate": ("gateway.emulators.cli", "run the MAA, IMDS/THIM (and KMS) emulators on loopback"),
    "relay": ("gateway.client.relay", "run a minimal dev OHTTP relay in front of one gateway"),
}


def _load(module_name: str) -> ModuleType:
    return importlib.import_module(module_name)


def build_parser(argv: Sequence[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ohttp-gateway",
        description="Confidential Oblivious HTTP gateway for speech-to-text.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    chosen = next((arg for arg in argv if arg in SUBCOMMANDS), None)
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        sub = subparsers.add_parser(name, help=help_text, description=help_text)
        if name == chosen:
            _load(module_name).add_arguments(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(arguments).parse_args(arguments)
    module = _load(SUBCOMMANDS[args.command][0])
    try:
        return int(module.run(args))
    except GatewayError as error:
        print(f"ohttp-gateway {args.command}: {error.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
