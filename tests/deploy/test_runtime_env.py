"""The image's install step and its SBOM, without building the image.

A clean virtual environment is built by scripts/build-runtime-venv, the very script the Dockerfile's
build stage runs; then the SBOM tool environment (.tools/sbom, the requirements the sbom stage
installs with hashes) describes it with cyclonedx-py and signs it, as the sbom stage does. The
signed SBOM verifies; a tampered BOM, payload, environment or key does not.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
from pathlib import Path

import pytest

from tests.deploy.conftest import ROOT, SBOM_PYTHON, require_tools, run


@pytest.fixture(scope="module")
def runtime_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    venv = tmp_path_factory.mktemp("image") / "venv"
    python = shutil.which("python3")
    assert python, "python3 is needed to build the runtime environment"
    result = run(
        [str(ROOT / "scripts" / "build-runtime-venv"), str(venv), str(ROOT)],
        env={**os.environ, "PYTHON": python},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return venv


def test_clean_install_gives_the_entry_point(runtime_venv: Path) -> None:
    result = run([str(runtime_venv / "bin" / "ohttp-gateway"), "--help"])
    assert result.returncode == 0, result.stderr
    # Installed as a package (not editable): the code comes from site-packages, not the checkout.
    where = run(
        [str(runtime_venv / "bin" / "python"), "-c", "import gateway; print(gateway.__file__)"],
        cwd=runtime_venv,
    )
    assert "site-packages" in where.stdout
    pip_list = run([str(runtime_venv / "bin" / "pip"), "list", "--format=json"])
    names = {p["name"].lower() for p in json.loads(pip_list.stdout)}
    assert {"ohttp-gateway", "cryptography", "pyhpke", "tpm2-pytss"} <= names
    assert not {"pytest", "ruff", "mypy"} & names, "test tools must not reach the image"


def sbom(*args: str) -> tuple[int, str]:
    require_tools()
    result = run([str(SBOM_PYTHON), "-m", "tools.sbom", *args], cwd=ROOT)
    return result.returncode, result.stdout + result.stderr


@pytest.fixture(scope="module")
def signed(runtime_venv: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    work = tmp_path_factory.mktemp("sbom")
    key, pub, other, other_pub = (work / n for n in ("k.pem", "k.pub", "o.pem", "o.pub"))
    assert sbom("keygen", "--private-key", str(key), "--public-key", str(pub))[0] == 0
    assert sbom("keygen", "--private-key", str(other), "--public-key", str(other_pub))[0] == 0
    assert key.stat().st_mode & 0o077 == 0, "the private key must not be group/world readable"
    code, output = sbom(
        "generate", "--python", str(runtime_venv / "bin" / "python"),
        "--environment", str(runtime_venv), "--pyproject", str(ROOT / "pyproject.toml"),
        "--key", str(key), "--out-dir", str(work / "out"),
    )  # fmt: skip
    assert code == 0, output
    return {
        "pub": pub,
        "other_pub": other_pub,
        "bom": work / "out" / "bom.cdx.json",
        "envelope": work / "out" / "bom.cdx.dsse.json",
        "venv": runtime_venv,
        "work": work,
    }


def verify(signed: dict[str, Path], **overrides: Path) -> tuple[int, str]:
    files = {**signed, **overrides}
    return sbom(
        "verify", "--envelope", str(files["envelope"]), "--public-key", str(files["pub"]),
        "--bom", str(files["bom"]), "--environment", str(files["venv"]),
    )  # fmt: skip


def test_sbom_describes_the_runtime_environment(signed: dict[str, Path]) -> None:
    bom = json.loads(signed["bom"].read_text())
    assert bom["bomFormat"] == "CycloneDX"
    assert bom["metadata"]["component"]["name"] == "ohttp-gateway"
    components = {c["name"].lower() for c in bom["components"]}
    assert {"cryptography", "pyhpke", "starlette", "uvicorn", "aiohttp"} <= components
    envelope = json.loads(signed["envelope"].read_text())
    assert envelope["payloadType"] == "application/vnd.in-toto+json"
    statement = json.loads(base64.b64decode(envelope["payload"]))
    assert statement["predicateType"] == "https://cyclonedx.org/bom"
    assert statement["predicate"] == bom


def test_signed_sbom_verifies(signed: dict[str, Path]) -> None:
    code, output = verify(signed)
    assert code == 0, output
    assert "verified: subject" in output
    assert "bom sha256:" in output


def test_tampered_bom_file_fails(signed: dict[str, Path]) -> None:
    bom = json.loads(signed["bom"].read_text())
    bom["components"] = bom["components"][1:]
    tampered = signed["work"] / "tampered-bom.json"
    tampered.write_text(json.dumps(bom))
    code, output = verify(signed, bom=tampered)
    assert code == 1
    assert "SubjectMismatch" in output


def test_tampered_payload_fails(signed: dict[str, Path]) -> None:
    envelope = json.loads(signed["envelope"].read_text())
    statement = json.loads(base64.b64decode(envelope["payload"]))
    statement["predicate"]["components"][0]["version"] = "999.0"
    envelope["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    tampered = signed["work"] / "tampered-envelope.json"
    tampered.write_text(json.dumps(envelope))
    code, output = verify(signed, envelope=tampered)
    assert code == 1
    assert "SignatureInvalid" in output


def test_other_key_fails(signed: dict[str, Path]) -> None:
    code, output = verify(signed, pub=signed["other_pub"])
    assert code == 1
    assert "SignatureInvalid" in output


def test_changed_environment_fails(signed: dict[str, Path]) -> None:
    copy = signed["work"] / "venv-copy"
    shutil.copytree(signed["venv"], copy, symlinks=True)
    assert verify(signed, venv=copy)[0] == 0, "a byte-identical copy verifies"
    extra = copy / "lib" / "python3.11" / "site-packages" / "injected.pth"
    extra.parent.mkdir(parents=True, exist_ok=True)
    extra.write_text("import os\n")
    code, output = verify(signed, venv=copy)
    assert code == 1
    assert "SubjectMismatch" in output


def test_make_targets_run_the_same_commands() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert "./scripts/build-runtime-venv" in makefile
    assert "-m tools.sbom generate" in makefile
    assert "-m tools.sbom verify" in makefile
