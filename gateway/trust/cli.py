"""``ohttp-gateway attest``: inspect and verify attestation evidence and tokens from files.

For operators. Subcommands:

* ``verify-report --report FILE --certs FILE [--hcl] [--runtime-data FILE]
  [--expected-user-data HEX] [--trust-root PEM] [policy flags] [--at TIME]``: verifies a bare
  SNP report (or, with ``--hcl``, an HCL report) against AMD's pinned roots (or the given
  ``--trust-root``, e.g. a simulated ARK) and the policy, then prints the parsed claims as JSON.
  ``--certs`` is a PEM chain or THIM's JSON.
* ``inspect-token FILE [--jwks FILE --issuer URL] [--leeway S] [--at TIME]``: prints a token's
  header and claims; with ``--jwks`` and ``--issuer`` it verifies the token first.

Exit status: 0 only when the evidence or token is valid (inspect-token without ``--jwks`` only
decodes, and says ``"verified": false``); otherwise the dispatcher prints a one-line reason
and exits 2. Never does: network I/O, or print a token's signature.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gateway.errors import ConfigError
from gateway.trust.amd import AmdTrust, parse_cert_bundle, self_signed
from gateway.trust.policy import SnpPolicy
from gateway.trust.snp import TcbLayout, TcbVersion
from gateway.trust.token import DEFAULT_LEEWAY, decode_unverified, verify_token
from gateway.trust.verify import verify_hcl_evidence, verify_snp_evidence


def add_arguments(parser: argparse.ArgumentParser) -> None:
    commands = parser.add_subparsers(dest="attest_command", metavar="ACTION", required=True)
    report = commands.add_parser("verify-report", help="verify an SNP or HCL report")
    report.add_argument("--report", required=True, type=Path, help="SNP report or HCL report")
    report.add_argument("--certs", required=True, type=Path, help="PEM chain or THIM JSON")
    report.add_argument("--hcl", action="store_true", help="the report is an Azure HCL report")
    report.add_argument("--runtime-data", type=Path, help="runtime data bound in REPORT_DATA")
    report.add_argument("--expected-user-data", help="64 bytes of hex the user-data must equal")
    report.add_argument("--trust-root", type=Path, help="trust this ARK (PEM), not AMD's pins")
    report.add_argument("--allow-debug", action="store_true")
    report.add_argument("--allow-migration-agent", action="store_true")
    report.add_argument("--disallow-smt", action="store_true")
    report.add_argument("--vmpl", type=int, action="append", help="allowed VMPL (default 0)")
    report.add_argument("--min-tcb", help="minimum TCB as 16 hex digits (Milan/Genoa layout)")
    report.add_argument("--measurement", action="append", help="allowed measurement (hex)")
    report.add_argument("--at", help="verify as of this ISO 8601 time (default: now)")
    token = commands.add_parser("inspect-token", help="decode, and optionally verify, a token")
    token.add_argument("token", type=Path, help="file holding the compact JWT")
    token.add_argument("--jwks", type=Path, help="the issuer's /certs document (JSON)")
    token.add_argument("--issuer", help="the pinned issuer URL (required with --jwks)")
    token.add_argument("--leeway", type=float, default=DEFAULT_LEEWAY)
    token.add_argument("--at", help="verify as of this ISO 8601 time (default: now)")


def run(args: argparse.Namespace) -> int:
    if args.attest_command == "verify-report":
        result = _verify_report(args)
    else:
        result = _inspect_token(args)
    json.dump(result, sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")
    return 0


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise ConfigError(f"cannot read the {what} file") from error


def _at(value: str | None) -> datetime:
    if value is None:
        return datetime.now(UTC)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as error:
        raise ConfigError("--at must be an ISO 8601 time") from error
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _policy(args: argparse.Namespace) -> SnpPolicy:
    minimum = None
    if args.min_tcb is not None:
        try:
            minimum = TcbVersion(int(args.min_tcb, 16), TcbLayout.ZEN3_ZEN4)
        except ValueError as error:
            raise ConfigError("--min-tcb must be 16 hex digits") from error
    options: dict[str, Any] = {
        "allow_debug": args.allow_debug,
        "allow_migration_agent": args.allow_migration_agent,
        "allow_smt": not args.disallow_smt,
        "allowed_vmpls": frozenset(args.vmpl or [0]),
        "minimum_tcb": minimum,
    }
    if args.measurement:
        return SnpPolicy.with_measurements(args.measurement, **options)
    return SnpPolicy(**options)


def _verify_report(args: argparse.Namespace) -> dict[str, Any]:
    report = _read(args.report, "report")
    chain = parse_cert_bundle(_read(args.certs, "certificates"))
    trust = AmdTrust.pinned()
    if args.trust_root is not None:
        trust = AmdTrust.of(self_signed(_read(args.trust_root, "trust root")))
    expected = None
    if args.expected_user_data is not None:
        try:
            expected = bytes.fromhex(args.expected_user_data)
        except ValueError as error:
            raise ConfigError("--expected-user-data must be hex") from error
    common: dict[str, Any] = {"trust": trust, "now": _at(args.at), "policy": _policy(args)}
    if args.hcl:
        verified = verify_hcl_evidence(report, chain, expected_user_data=expected, **common)
    else:
        runtime = None if args.runtime_data is None else _read(args.runtime_data, "runtime data")
        verified = verify_snp_evidence(
            report, chain, runtime_data=runtime, expected_user_data=expected, **common
        )
    return verified.to_json()


def _inspect_token(args: argparse.Namespace) -> dict[str, Any]:
    text = _read(args.token, "token").decode("ascii", "replace").strip()
    if args.jwks is None:
        if args.issuer is not None:
            raise ConfigError("--issuer needs --jwks")
        return decode_unverified(text).to_json()
    if args.issuer is None:
        raise ConfigError("--jwks needs --issuer")
    try:
        jwks = json.loads(_read(args.jwks, "JWKS"))
    except ValueError as error:
        raise ConfigError("the JWKS file is not JSON") from error
    if not isinstance(jwks, dict):
        raise ConfigError("the JWKS file is not a JSON object")
    now = _at(args.at).timestamp()
    token = verify_token(text, jwks=jwks, issuer=args.issuer, now=now, leeway=args.leeway)
    return token.to_json()
