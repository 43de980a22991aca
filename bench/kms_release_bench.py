"""Key release against the loopback emulators: what a gateway pays from token to usable HPKE key.

Runs MAA, Entra ID, Key Vault and the confidential KMS emulators (HTTPS on 127.0.0.1, as in the
tests) and measures, over N runs:

* ``maa token``: simulated SNP evidence -> MAA emulator -> RS256 token (the release's input);
* ``akv cold <enc>``: a new backend: Key Vault's 401 challenge, the Entra token (workload
  identity, client assertion), the release, the JWS chain/host/signature checks, RSA-OAEP + AES-KWP
  unwrap, HPKE key; each with a fresh TLS connection;
* ``akv warm``: the same backend again (access token and challenge cached, connection reused),
  i.e. a rotation refresh;
* ``ccf cold`` / ``ccf warm``: listpubkeys with its receipt verified, release with encrypted=true,
  RSA-OAEP-SHA256 unwrap, COSE_Key, the release receipt verified.

Figures are min / median / max in milliseconds. Both sides run on the same CPUs.

Run: ``/work/venv/bin/python -m bench.kms_release_bench [--runs N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from gateway.emulators.tls import ensure_tls
from gateway.trust.evidence.simulated import SimulatedAmd
from gateway.trust.kms import ReleasedKey, WrappingKey
from gateway.trust.kms.akv import AkvBackend
from gateway.trust.kms.ccf import CcfBackend
from tests.support.kms_world import (
    CLIENT_ID,
    KEY_NAME,
    SUBJECT,
    TENANT,
    World,
    rsa_wrapping_key,
    running_world,
    sevsnp_policy,
)


def _report(name: str, samples: list[float]) -> None:
    ms = sorted(1000 * s for s in samples)
    print(f"{name:34} {ms[0]:8.1f} {statistics.median(ms):8.1f} {ms[-1]:8.1f}")


async def _timed(call: Callable[[], Awaitable[list[ReleasedKey]]]) -> float:
    started = time.perf_counter()
    (released,) = await call()
    released.gateway_key()
    return time.perf_counter() - started


def _akv(world: World, enc: str) -> AkvBackend:
    return AkvBackend(
        world.urls["vault"],
        KEY_NAME,
        key_id=1,
        enc=enc,
        ca_bundle=world.ca,
        trust_roots=[world.signer.root],
    )


async def _pair(
    make: Callable[[], AkvBackend | CcfBackend], token: str, key: WrappingKey
) -> tuple[float, float]:
    backend = make()
    try:
        cold = await _timed(lambda: backend.release(token, key))
        warm = await _timed(lambda: backend.release(token, key))
    finally:
        await backend.aclose()
    return cold, warm


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    runs = parser.parse_args().runs
    state = Path(tempfile.mkdtemp(prefix="kms-bench-"))
    amd = SimulatedAmd.generate(rsa_bits=2048)
    with running_world(amd, ensure_tls(state), state) as world:
        world.vault.create_key(KEY_NAME, sevsnp_policy(world.urls["maa"]))
        world.kms.refresh()
        token_file = state / "azure-identity-token"
        token_file.write_text(world.federated.issue(SUBJECT))
        os.environ.update(
            AZURE_CLIENT_ID=CLIENT_ID,
            AZURE_TENANT_ID=TENANT,
            AZURE_FEDERATED_TOKEN_FILE=str(token_file),
            AZURE_AUTHORITY_HOST=world.urls["entra"] + "/",
        )
        key = rsa_wrapping_key()
        samples: dict[str, list[float]] = {}
        for _ in range(runs):
            started = time.perf_counter()
            token = world.token(key)
            samples.setdefault("maa token", []).append(time.perf_counter() - started)
            for enc in ("RSA_AES_KEY_WRAP_256", "CKM_RSA_AES_KEY_WRAP", "RSA_AES_KEY_WRAP_384"):
                cold, warm = asyncio.run(_pair(lambda enc=enc: _akv(world, enc), token, key))
                samples.setdefault(f"akv cold {enc}", []).append(cold)
                samples.setdefault(f"akv warm {enc}", []).append(warm)
            make_ccf = lambda: CcfBackend(world.urls["kms"], world.ledger.service_cert)  # noqa: E731
            cold, warm = asyncio.run(_pair(make_ccf, token, key))
            samples.setdefault("ccf cold", []).append(cold)
            samples.setdefault("ccf warm", []).append(warm)
    print(f"{'ms over ' + str(runs) + ' runs':34} {'min':>8} {'median':>8} {'max':>8}")
    for name, values in samples.items():
        _report(name, values)


if __name__ == "__main__":
    main()
