"""The azure-vtpm provider's cost against a real swtpm: collect end to end, and decrypt.

What it measures, on one swtpm provisioned like an Azure vTPM (tests/support/swtpm.py), with the
provider opening a fresh ESAPI context per step exactly as in production:

* collect: user-data write, HCL report read (2048 bytes, chunked), AIK certificate and public,
  PCR read and quote, ephemeral RSA-2048 creation (a prime search inside the TPM: the dominant
  and most variable part), certification, the provider's own verification, event log;
* decrypt: context load, salted policy session, PolicyPCR, RSA_Decrypt (OAEP-SHA256), flushes.

Figures are min / median / max of N runs in milliseconds. swtpm runs on the same CPUs, so the
TPM's own work is included; a real vTPM's RSA key generation is slower still.

Run: ``/work/venv/bin/python -m bench.azure_vtpm_bench [--runs N]``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from bench._timing import timed_ms
from gateway.trust import tpm_verify
from gateway.trust.evidence.azure_vtpm import AzureVtpmConfig, AzureVtpmProvider
from tests.support import swtpm


def _show(name: str, samples: list[float]) -> None:
    low, mid, high = min(samples), statistics.median(samples), max(samples)
    print(f"{name:<10} min {low:7.1f}  median {mid:7.1f}  max {high:7.1f} ms  (n={len(samples)})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    runs = parser.parse_args().runs
    user_data = swtpm.GOLDEN_USER_DATA
    with swtpm.Swtpm() as tpm:
        started = time.perf_counter()
        swtpm.provision(tpm.tcti, user_data=user_data)
        print(f"provision  {(time.perf_counter() - started) * 1000:7.1f} ms (AIK, cert, NV)")
        config = AzureVtpmConfig(tcti=tpm.tcti, event_log_path=Path("/nonexistent"))
        provider = AzureVtpmProvider(config)
        _show("collect", timed_ms(runs, lambda: provider.collect(user_data)))
        key = tpm_verify.parse_public(provider.collect(user_data).encryption_key_public)
        oaep = padding.OAEP(padding.MGF1(hashes.SHA256()), hashes.SHA256(), None)
        ciphertext = key.public_key.encrypt(b"k" * 32, oaep)
        _show("decrypt", timed_ms(runs, lambda: provider.decrypt(ciphertext)))


if __name__ == "__main__":
    main()
