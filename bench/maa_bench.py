"""MAA round trips against the emulator over loopback HTTPS: what attestation costs at startup.

Run: ``python -m bench.maa_bench [N]`` (default 20). Prints the median and max wall time of:

* ``thim``: GET the VCEK chain from the IMDS double (plain HTTP) and parse it;
* ``sevsnpvm``: one ``POST /attest/SevSnpVm`` (client encode, TLS, emulator chain + signature +
  binding checks, RS256 signing) on a kept-alive connection;
* ``certs+verify``: GET ``/certs`` and verify the token (:func:`gateway.trust.token.verify_token`).

One simulated AMD (RSA-4096 ARK/ASK, like AMD's) and one emulator per run; the emulator runs in a
thread of the same process, so the figures include its share of the GIL.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

from gateway.emulators.maa import MaaEmulator
from gateway.emulators.maa_signing import TokenSigner
from gateway.emulators.maa_verify import MaaVerifier
from gateway.emulators.server import BackgroundServers, ServerGroup, bind_loopback, socket_url
from gateway.emulators.thim import THIM_PATH, thim_app
from gateway.emulators.tls import ensure_tls
from gateway.trust.binding import user_data_for
from gateway.trust.evidence.simulated import SimulatedAmd, SimulatedEvidenceProvider
from gateway.trust.maa import MaaClient
from gateway.trust.maa_wire import SevSnpVmRequest, SnpEvidence
from gateway.trust.thim import fetch_vcek_chain
from gateway.trust.token import verify_token


async def _run(maa_url: str, thim_url: str, ca: Path, amd: SimulatedAmd, n: int) -> None:
    evidence = SimulatedEvidenceProvider(amd).collect(user_data_for(b"keys", b"nonce"))
    timings: dict[str, list[float]] = {"thim": [], "sevsnpvm": [], "certs+verify": []}
    async with MaaClient(maa_url, ca_bundle=ca) as maa:
        for _ in range(n):
            start = time.perf_counter()
            chain = await fetch_vcek_chain(thim_url)
            timings["thim"].append(time.perf_counter() - start)
            request = SevSnpVmRequest(
                SnpEvidence(evidence.snp_report, chain.to_pem()), evidence.runtime_data
            )
            start = time.perf_counter()
            token = await maa.attest_sev_snp_vm(request)
            timings["sevsnpvm"].append(time.perf_counter() - start)
            start = time.perf_counter()
            verify_token(token, jwks=await maa.signing_keys(), issuer=maa_url, now=time.time())
            timings["certs+verify"].append(time.perf_counter() - start)
    for name, values in timings.items():
        median, worst = statistics.median(values) * 1000, max(values) * 1000
        print(f"{name:13} median {median:7.2f} ms   max {worst:7.2f} ms   (n={n})")


def main(n: int) -> None:
    amd = SimulatedAmd.generate()
    with tempfile.TemporaryDirectory() as state:
        tls = ensure_tls(Path(state))
        group = ServerGroup()
        maa_sock, thim_sock = bind_loopback(), bind_loopback()
        maa_url = socket_url(maa_sock, tls=True)
        emulator = MaaEmulator(TokenSigner(maa_url), MaaVerifier(amd.trust))
        group.add(emulator.app, maa_sock, tls)
        thim_url = group.add(thim_app(amd.thim_bundle()), thim_sock, None) + THIM_PATH
        with BackgroundServers(group):
            asyncio.run(_run(maa_url, thim_url, tls.ca_path, amd, n))


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20)
