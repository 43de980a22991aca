"""The ``ohttp-client`` command: keys, verify, request, transcribe and proxy.

Every command that sends anything first verifies the gateway's attestation against ``--policy
FILE``, or, for a dev-mode gateway with simulated evidence, ``--allow-simulated`` (never both).

Exit codes (also in docs/client.md):

* 0: done, and the inner response (if any) was not an HTTP error;
* 1: the gateway answered, and the inner response status was 400 or more;
* 2: usage or configuration error (a bad flag, an unreadable file or policy);
* 3: the gateway's attestation (or the KMS's receipt) was refused: nothing was sent;
* 4: the relay or gateway could not be reached or refused the request in the clear, or the
  response did not decrypt;
* 130: interrupted.

Errors are one line on stderr: ``ohttp-client <command>: <fixed message> [<ErrorClass>]``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path

from gateway import __version__
from gateway.client import commands
from gateway.errors import ClientError, ConfigError, GatewayError, ProtocolError, TrustError

EXIT_HTTP_ERROR, EXIT_USAGE, EXIT_ATTESTATION, EXIT_TRANSPORT = 1, 2, 3, 4
FORMATS = ("json", "text", "srt", "vtt", "verbose_json")


def _common(parser: argparse.ArgumentParser, *, trust: bool = True) -> None:
    parser.add_argument("--gateway", required=True, help="the gateway's base URL")
    parser.add_argument("--relay", help="the relay's base URL (it forwards to the gateway)")
    parser.add_argument("--kms", help="take key configs from Azure's confidential KMS at URL")
    parser.add_argument("--kms-cert", type=Path, help="the KMS's pinned service certificate (PEM)")
    parser.add_argument("--kms-ca", type=Path, help="extra CA bundle for the KMS's TLS")
    parser.add_argument("--ca-bundle", type=Path, help="extra CA bundle for https relays/gateways")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per exchange")
    if trust:
        group = parser.add_mutually_exclusive_group(required=True)
        group.add_argument("--policy", type=Path, help="the attestation policy (JSON)")
        group.add_argument(
            "--allow-simulated",
            action="store_true",
            help="accept a dev-mode gateway's simulated evidence: NOT CONFIDENTIAL",
        )


def _path_shape(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--azure-deployment", help="Azure OpenAI path shape with this deployment")
    parser.add_argument("--api-version", default="2024-06-01", help="Azure OpenAI api-version")
    parser.add_argument(
        "--score",
        action="store_true",
        help="Azure Confidential Whisper profile: POST /score, P-384, Azure response framing",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ohttp-client",
        description="Verify a confidential OHTTP gateway, then send it encrypted requests.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    keys = sub.add_parser(
        "keys", help="print the gateway's key configs (or the KMS's, receipts verified)"
    )
    _common(keys, trust=False)

    verify = sub.add_parser("verify", help="verify the gateway's attestation; print the result")
    _common(verify)

    request = sub.add_parser("request", help="send one generic HTTP request through OHTTP")
    _common(request)
    _path_shape(request)
    request.add_argument("path", help="inner request path, e.g. /v1/models")
    request.add_argument("-X", "--method", default="GET")
    request.add_argument("-H", "--header", action="append", default=[], help="'name: value'")
    request.add_argument("-d", "--data", help="body text, or @FILE")
    request.add_argument("--chunked", action="store_true", help="chunked OHTTP (streamed)")

    transcribe = sub.add_parser("transcribe", help="transcribe an audio file")
    _common(transcribe)
    _path_shape(transcribe)
    transcribe.add_argument("file", type=Path)
    transcribe.add_argument("--model", default="whisper-1")
    transcribe.add_argument("--language")
    transcribe.add_argument("--format", choices=FORMATS, default="json", dest="response_format")
    transcribe.add_argument("--stream", action="store_true", help="print deltas as they arrive")
    transcribe.add_argument(
        "--progress", choices=("auto", "always", "never"), default="auto", help="upload progress"
    )

    proxy = sub.add_parser("proxy", help="serve a local plaintext → OHTTP proxy for OpenAI SDKs")
    _common(proxy)
    proxy.add_argument("--host", default="127.0.0.1")
    proxy.add_argument("--port", type=int, default=8080, help="0: any free port")
    return parser


def exit_code(error: GatewayError) -> int:
    if isinstance(error, TrustError):
        return EXIT_ATTESTATION
    if isinstance(error, ClientError | ProtocolError):
        return EXIT_TRANSPORT
    if isinstance(error, ConfigError):
        return EXIT_USAGE
    return EXIT_TRANSPORT


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return asyncio.run(commands.run(args))
    except GatewayError as error:
        print(
            f"ohttp-client {args.command}: {error.message} [{type(error).__name__}]",
            file=sys.stderr,
        )
        return exit_code(error)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
