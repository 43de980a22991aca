"""``python -m tools.sbom``: make, sign and verify the CycloneDX SBOM of the runtime environment.

    keygen   --private-key K.pem --public-key K.pub.pem      a new ECDSA P-256 signing key
    generate --python VENV/bin/python --environment VENV --key K.pem --out-dir DIR [--pyproject F]
             writes DIR/bom.cdx.json (cyclonedx-py) and DIR/bom.cdx.dsse.json (the signed statement)
    verify   --envelope E --public-key K.pub.pem [--bom F] [--environment VENV]
             exit 0 and prints the subject and the BOM's SHA-256 only when every check passes

The same commands run in `make sbom` / `make verify-sbom` and in the Dockerfile's sbom stage.
Errors print one fixed line and exit 1. Never prints key material.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tools.sbom import dsse, statement
from tools.sbom.errors import EnvelopeMalformed, GeneratorFailed, SbomError, SubjectMismatch

BOM_NAME = "bom.cdx.json"
ENVELOPE_NAME = "bom.cdx.dsse.json"


def keygen(private_path: Path, public_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    descriptor = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(pem)
    public_path.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )


def generate_bom(python: Path, pyproject: Path | None, out: Path) -> None:
    command = [sys.executable, "-m", "cyclonedx_py", "environment", "--output-reproducible"]
    command += ["--of", "JSON", "--sv", "1.6", "-o", str(out)]
    if pyproject is not None:
        command += ["--pyproject", str(pyproject)]
    command.append(str(python))
    # The described interpreter must not write bytecode into the tree the subject digest covers.
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    result = subprocess.run(command, capture_output=True, check=False, env=env)  # noqa: S603
    if result.returncode != 0:
        sys.stderr.write(result.stderr.decode("utf-8", "replace"))
        raise GeneratorFailed("cyclonedx-py could not describe the environment")


def generate(args: argparse.Namespace) -> None:
    key = dsse.load_private_key(Path(args.key).read_bytes())
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    bom_path = out_dir / BOM_NAME
    generate_bom(Path(args.python), Path(args.pyproject) if args.pyproject else None, bom_path)
    bom = json.loads(bom_path.read_bytes())
    environment = Path(args.environment)
    subject = statement.tree_digest(environment)
    payload = statement.build(bom, args.subject_name or str(environment), subject)
    envelope = dsse.sign(statement.PAYLOAD_TYPE, payload, key)
    (out_dir / ENVELOPE_NAME).write_bytes(envelope.to_json())
    print(f"sbom: {bom_path} ({len(bom.get('components', []))} components)")
    print(f"sbom: signed {out_dir / ENVELOPE_NAME} with key {envelope.signatures[0].keyid}")


def verify(args: argparse.Namespace) -> None:
    public_key = dsse.load_public_key(Path(args.public_key).read_bytes())
    envelope = dsse.decode(Path(args.envelope).read_bytes())
    if envelope.payload_type != statement.PAYLOAD_TYPE:
        raise EnvelopeMalformed("the payloadType is not an in-toto statement")
    dsse.verify(envelope, public_key)
    name, subject, bom = statement.parse(envelope.payload)
    if args.bom:
        bom_bytes = Path(args.bom).read_bytes()
        try:
            on_disk = json.loads(bom_bytes)
        except ValueError as exc:
            raise SubjectMismatch("the BOM file is not the signed BOM") from exc
        if on_disk != bom:
            raise SubjectMismatch("the BOM file is not the signed BOM")
        print(f"bom sha256:{hashlib.sha256(bom_bytes).hexdigest()} {args.bom}")
    if args.environment and statement.tree_digest(Path(args.environment)) != subject:
        raise SubjectMismatch("the environment differs from the signed one")
    print(f"verified: subject {name} sha256:{subject}")
    print(f"verified: {len(bom.get('components', []))} components, key {dsse.keyid(public_key)}")


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="python -m tools.sbom", description=__doc__.split("\n")[0])
    sub = top.add_subparsers(dest="command", required=True)
    k = sub.add_parser("keygen", help="create an ECDSA P-256 signing key")
    k.add_argument("--private-key", required=True)
    k.add_argument("--public-key", required=True)
    g = sub.add_parser("generate", help="describe an environment and sign the SBOM")
    g.add_argument("--python", required=True, help="the environment's interpreter")
    g.add_argument("--environment", required=True, help="the environment's directory")
    g.add_argument("--key", required=True, help="PEM ECDSA P-256 private key")
    g.add_argument("--out-dir", required=True)
    g.add_argument("--pyproject", help="pyproject.toml of the root component")
    g.add_argument("--subject-name", help="subject name (the environment's path by default)")
    v = sub.add_parser("verify", help="verify a signed SBOM")
    v.add_argument("--envelope", required=True)
    v.add_argument("--public-key", required=True)
    v.add_argument("--bom", help="also check that this BOM file is the signed one")
    v.add_argument("--environment", help="also check this directory against the subject")
    return top


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    try:
        if args.command == "keygen":
            keygen(Path(args.private_key), Path(args.public_key))
        elif args.command == "generate":
            generate(args)
        else:
            verify(args)
    except SbomError as exc:
        print(f"sbom: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"sbom: cannot read or write {exc.filename}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
