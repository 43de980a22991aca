"""``ohttp-gateway emulate`` as a real process: its ``--print-env`` output is sourced by a shell and
the settings are used, by a separate process, for THIM → simulated evidence → MAA → a token that
verifies against the MAA emulator's /certs. Then SIGTERM stops it cleanly."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from gateway.trust.evidence.simulated import SimulatedAmd

ROOT = Path(__file__).resolve().parents[2]
EXPECTED_KEYS = {
    "OHTTP_GATEWAY_CA_BUNDLE",
    "OHTTP_GATEWAY_EVIDENCE_PROVIDER",
    "OHTTP_GATEWAY_SIMULATED_AMD",
    "OHTTP_GATEWAY_MAA_URL",
    "OHTTP_GATEWAY_THIM_URL",
    # the key-release emulators (gateway/emulators/kms_emulators.py)
    "OHTTP_GATEWAY_AKV_VAULT_URL",
    "OHTTP_GATEWAY_AKV_KEY_NAME",
    "OHTTP_GATEWAY_CCF_URL",
    "OHTTP_GATEWAY_CCF_SERVICE_CERT",
    "AZURE_CLIENT_ID",
    "AZURE_TENANT_ID",
    "AZURE_FEDERATED_TOKEN_FILE",
    "AZURE_AUTHORITY_HOST",
}
START_TIMEOUT = 60.0

# Runs in a shell that sourced the printed settings: uses nothing but them.
CONSUMER = """
import asyncio, os, time
from pathlib import Path
from gateway.trust.binding import user_data_for
from gateway.trust.evidence.simulated import SimulatedAmd, SimulatedEvidenceProvider
from gateway.trust.maa import MaaClient
from gateway.trust.maa_wire import SevSnpVmRequest, SnpEvidence
from gateway.trust.thim import fetch_vcek_chain
from gateway.trust.token import verify_token

async def main():
    assert os.environ["OHTTP_GATEWAY_EVIDENCE_PROVIDER"] == "simulated"
    amd = SimulatedAmd.load(Path(os.environ["OHTTP_GATEWAY_SIMULATED_AMD"]).read_bytes())
    evidence = SimulatedEvidenceProvider(amd).collect(user_data_for(b"keys", b"nonce"))
    chain = await fetch_vcek_chain(os.environ["OHTTP_GATEWAY_THIM_URL"])
    ca = Path(os.environ["OHTTP_GATEWAY_CA_BUNDLE"])
    async with MaaClient(os.environ["OHTTP_GATEWAY_MAA_URL"], ca_bundle=ca) as maa:
        request = SevSnpVmRequest(SnpEvidence(evidence.snp_report, chain.to_pem()),
                                  evidence.runtime_data, nonce="from-the-shell")
        token = await maa.attest_sev_snp_vm(request)
        jwks = await maa.signing_keys()
    verified = verify_token(token, jwks=jwks, issuer=os.environ["OHTTP_GATEWAY_MAA_URL"],
                            now=time.time())
    print("verified", verified.attestation_type, verified.nonce)

asyncio.run(main())
"""


class Emulate:
    """``ohttp-gateway emulate`` in a child process; stdout lines arrive through a queue."""

    def __init__(self, *args: str) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "emulate", *args],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def read_lines(self, count: int) -> list[str]:
        lines: list[str] = []
        deadline = time.monotonic() + START_TIMEOUT
        while len(lines) < count:
            try:
                line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if line is None:
                break
            lines.append(line)
        return lines

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise
        finally:
            assert self.process.stdout is not None
            self.process.stdout.close()


def _sourced(env_file: Path, command: str) -> subprocess.CompletedProcess[str]:
    """Run ``command`` in a bash that sourced ``env_file`` and had no OHTTP_GATEWAY_* before."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OHTTP_GATEWAY_")}
    return subprocess.run(
        ["bash", "-c", f'set -a; source "{env_file}"; set +a; {command}'],
        cwd=ROOT,
        env={**clean, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture(scope="module")
def simulated_amd_bundle() -> bytes:
    # 2048-bit to keep the test quick; `emulate` itself generates AMD-sized 4096-bit keys.
    return SimulatedAmd.generate(rsa_bits=2048).dump()


@pytest.fixture
def state_dir(tmp_path: Path, simulated_amd_bundle: bytes) -> Path:
    state = tmp_path / "state"
    state.mkdir()
    (state / "simulated-amd.pem").write_bytes(simulated_amd_bundle)
    return state


def test_print_env_is_sourced_by_a_shell_and_used(state_dir: Path, tmp_path: Path) -> None:
    emulate = Emulate("--print-env", "--state-dir", str(state_dir))
    try:
        lines = emulate.read_lines(len(EXPECTED_KEYS))
        assert {line.split("=", 1)[0] for line in lines} == EXPECTED_KEYS, lines
        env_file = tmp_path / "emulators.env"
        env_file.write_text("\n".join(lines) + "\n")
        script = tmp_path / "consumer.py"
        script.write_text(CONSUMER)
        result = _sourced(env_file, f'"{sys.executable}" "{script}"')
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == "verified sevsnpvm from-the-shell"
        # ...and `serve`'s own settings loader takes every one of them.
        check = _sourced(env_file, f'"{sys.executable}" -m gateway.cli check-config --dev')
        assert check.returncode == 0, check.stderr
        shown = json.loads(check.stdout)
        sourced = dict(line.split("=", 1) for line in lines)
        assert shown["maa_url"] == sourced["OHTTP_GATEWAY_MAA_URL"]
        assert shown["thim_url"] == sourced["OHTTP_GATEWAY_THIM_URL"]
        assert shown["ca_bundle"] == sourced["OHTTP_GATEWAY_CA_BUNDLE"]
        assert shown["simulated_amd"] == sourced["OHTTP_GATEWAY_SIMULATED_AMD"]
        assert shown["evidence_provider"] == "simulated"
    finally:
        code = emulate.stop()
    assert code == 0
    assert (state_dir / "ca.pem").is_file()


def test_summary_names_the_urls_and_the_ca_and_state_is_reused(state_dir: Path) -> None:
    emulate = Emulate("--state-dir", str(state_dir))
    try:
        lines = emulate.read_lines(8)  # maa, imds, entra, keyvault, ccf-kms, THIM, CA, ready
    finally:
        assert emulate.stop() == 0
    text = "\n".join(lines)
    assert "maa    https://127.0.0.1:" in text
    assert "imds   http://127.0.0.1:" in text
    assert "/metadata/THIM/amd/certification" in text
    assert f"CA     {state_dir / 'ca.pem'}" in text
    amd_bundle = (state_dir / "simulated-amd.pem").read_bytes()
    emulate = Emulate("--state-dir", str(state_dir))
    try:
        assert len(emulate.read_lines(5)) == 5
    finally:
        assert emulate.stop() == 0
    assert (state_dir / "simulated-amd.pem").read_bytes() == amd_bundle
