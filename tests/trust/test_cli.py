from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from gateway.cli import main
from gateway.trust.binding import user_data_for
from gateway.trust.evidence import EvidenceKind
from gateway.trust.evidence.simulated import (
    ReportFields,
    SimulatedAmd,
    SimulatedEvidenceProvider,
)
from gateway.trust.snp import POLICY_DEBUG
from tests.trust.conftest import DATA
from tests.trust.maa_signer import ISSUER, MaaSigner, example_claims

USER_DATA = user_data_for(b"configs", b"nonce")
AT = "2026-11-30T12:00:00+00:00"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["attest", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def write_evidence(
    tmp_path: Path, amd: SimulatedAmd, kind: EvidenceKind, fields: ReportFields | None = None
) -> dict[str, Path]:
    evidence = SimulatedEvidenceProvider(amd, kind, fields=fields).collect(USER_DATA)
    paths = {name: tmp_path / name for name in ("report", "certs", "runtime", "root", "thim")}
    paths["report"].write_bytes(evidence.report)
    paths["certs"].write_bytes(evidence.cert_chain)
    paths["runtime"].write_bytes(evidence.runtime_data)
    paths["root"].write_bytes(amd.ark.public_bytes(serialization.Encoding.PEM))
    paths["thim"].write_bytes(amd.thim_bundle())
    return paths


def test_real_hcl_report_with_the_wrong_chip_vcek(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(
        capsys, "verify-report", "--hcl", "--at", AT,
        "--report", str(DATA / "azure-cvm-hcl-report.bin"),
        "--certs", str(DATA / "amd-milan-vcek-ask-ark.pem"),
    )  # fmt: skip
    assert code == 2
    assert out == ""
    assert err == "ohttp-gateway attest: SNP report chip id does not match the VCEK hardware id.\n"


def test_simulated_hcl_evidence_verifies_with_its_root(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, simulated_amd: SimulatedAmd
) -> None:
    paths = write_evidence(tmp_path, simulated_amd, EvidenceKind.AZURE_HCL)
    code, out, err = run(
        capsys, "verify-report", "--hcl", "--at", AT, "--report", str(paths["report"]),
        "--certs", str(paths["thim"]), "--trust-root", str(paths["root"]),
        "--expected-user-data", USER_DATA.hex(),
    )  # fmt: skip
    assert (code, err) == (0, "")
    result = json.loads(out)
    assert result["valid"] is True
    assert result["kind"] == "azure-hcl"
    assert result["user_data"] == USER_DATA.hex()
    assert result["report"]["reported_tcb"]["raw"] == "7308000000000003"
    assert result["chain"]["vcek"]["product_name"] == "Milan-B0"


def test_simulated_evidence_is_refused_without_its_root(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, simulated_amd: SimulatedAmd
) -> None:
    paths = write_evidence(tmp_path, simulated_amd, EvidenceKind.AZURE_HCL)
    code, _out, err = run(
        capsys, "verify-report", "--hcl", "--report", str(paths["report"]),
        "--certs", str(paths["certs"]),
    )  # fmt: skip
    assert code == 2
    assert err == "ohttp-gateway attest: ARK is not a pinned AMD root.\n"


def test_bare_snp_report_with_runtime_data(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, simulated_amd: SimulatedAmd
) -> None:
    paths = write_evidence(tmp_path, simulated_amd, EvidenceKind.SEV_SNP)
    base = [
        "verify-report", "--at", AT, "--report", str(paths["report"]), "--certs",
        str(paths["certs"]), "--trust-root", str(paths["root"]),
    ]  # fmt: skip
    code, out, _ = run(capsys, *base, "--runtime-data", str(paths["runtime"]))
    assert code == 0
    assert json.loads(out)["runtime_claims"]["user-data"] == USER_DATA.hex().upper()
    paths["runtime"].write_bytes(paths["runtime"].read_bytes().replace(b"}", b" }", 1))
    code, _, err = run(capsys, *base, "--runtime-data", str(paths["runtime"]))
    assert code == 2
    assert "Runtime data hash does not match REPORT_DATA" in err


def test_policy_flags(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, simulated_amd: SimulatedAmd
) -> None:
    debug = replace(ReportFields(), policy=ReportFields().policy | POLICY_DEBUG)
    paths = write_evidence(tmp_path, simulated_amd, EvidenceKind.AZURE_HCL, debug)
    base = [
        "verify-report", "--hcl", "--at", AT, "--report", str(paths["report"]),
        "--certs", str(paths["certs"]), "--trust-root", str(paths["root"]),
    ]  # fmt: skip
    code, _, err = run(capsys, *base)
    assert code == 2
    assert "debugging" in err
    assert run(capsys, *base, "--allow-debug")[0] == 0
    code, _, err = run(capsys, *base, "--allow-debug", "--disallow-smt")
    assert "SMT" in err
    code, _, err = run(capsys, *base, "--allow-debug", "--vmpl", "1")
    assert "VMPL" in err
    code, _, err = run(capsys, *base, "--allow-debug", "--min-tcb", "7408000000000003")
    assert "below the policy minimum" in err
    code, _, err = run(capsys, *base, "--allow-debug", "--measurement", "00" * 48)
    assert "allowlist" in err
    code, _, err = run(capsys, *base, "--allow-debug", "--measurement", "5a" * 48)
    assert code == 0


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--min-tcb", "xyz"], "--min-tcb must be 16 hex digits"),
        (["--expected-user-data", "zz"], "--expected-user-data must be hex"),
        (["--at", "yesterday"], "--at must be an ISO 8601 time"),
        (["--measurement", "00"], "measurement allowlist must hold 48-byte measurements"),
    ],
)
def test_bad_arguments(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, simulated_amd: SimulatedAmd,
    extra: list[str], message: str,
) -> None:  # fmt: skip
    paths = write_evidence(tmp_path, simulated_amd, EvidenceKind.AZURE_HCL)
    code, _, err = run(
        capsys, "verify-report", "--hcl", "--report", str(paths["report"]),
        "--certs", str(paths["certs"]), "--trust-root", str(paths["root"]), *extra,
    )  # fmt: skip
    assert code == 2
    assert message in err


def test_missing_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run(
        capsys, "verify-report", "--report", str(tmp_path / "nope"), "--certs", str(tmp_path)
    )
    assert code == 2
    assert err == "ohttp-gateway attest: cannot read the report file\n"


def test_inspect_unsigned_example_token(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    token = DATA / "maa-sevsnpvm-example-token-unsigned.txt"
    code, out, _ = run(capsys, "inspect-token", str(token))
    assert code == 0
    decoded = json.loads(out)
    assert decoded["verified"] is False
    assert decoded["claims"]["x-ms-attestation-type"] == "sevsnpvm"
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps(MaaSigner.generate().jwks()))
    code, out, err = run(
        capsys,
        "inspect-token",
        str(token),
        "--jwks",
        str(jwks),
        "--issuer",
        "https://tenanttests.us",
    )
    assert (code, out) == (2, "")
    assert err == "ohttp-gateway attest: Attestation token is unsigned.\n"


def test_inspect_and_verify_a_signed_token(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    signer = MaaSigner.generate()
    token, jwks = tmp_path / "token", tmp_path / "jwks.json"
    token.write_text(signer.sign(example_claims()) + "\n")
    jwks.write_text(json.dumps(signer.jwks()))
    at = "2025-11-30T12:00:00+00:00"
    base = ["inspect-token", str(token), "--jwks", str(jwks), "--at", at]
    code, out, _ = run(capsys, *base, "--issuer", ISSUER)
    assert code == 0
    assert json.loads(out)["verified"] is True
    code, _, err = run(capsys, *base, "--issuer", "https://other.example")
    assert code == 2
    assert "issuer" in err
    assert run(capsys, "inspect-token", str(token), "--jwks", str(jwks))[0] == 2
    assert run(capsys, "inspect-token", str(token), "--issuer", ISSUER)[0] == 2
    jwks.write_text("[]")
    assert run(capsys, *base, "--issuer", ISSUER)[0] == 2
