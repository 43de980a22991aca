"""Gateway-side OHTTP cost per suite, against the floor of the raw primitives it cannot avoid.

What it compares, for one request/response exchange of body size B:

* gateway: ``decapsulate_request(ring, request)`` (B-byte plaintext, pre-encapsulated by a client)
  then ``context.encapsulate_response(B bytes)``: header parsing, key lookup, HPKE SetupBaseR and
  Open, the RFC 9458 response key schedule, and the response Seal;
* chunked (informational, no goal): the same exchange in chunked OHTTP, the request fed to
  ``ChunkedRequestDecapsulator`` in 64 KiB slices and the response written through
  ``ChunkedResponseEncapsulator`` in 64 KiB pieces (16 KiB chunks on the wire);
* floor: the raw KEM exchange (X25519 ``exchange`` or ECDH, keys already loaded) plus raw AEAD
  decryption of the same B-byte request ciphertext and raw AEAD encryption of the B-byte
  response, with AEAD objects constructed ahead of time.

How: the two are measured interleaved in one loop (gateway, floor, gateway, floor, ...) after a
warmup, with ``time.perf_counter_ns``; the figures are medians of N runs. Goals: at 1 KiB with
X25519 within 3x of the floor; at 25 MiB within 1.3x of the raw AES-GCM floor.

Run: ``/work/venv/bin/python -m bench.protocol_bench`` (``--all`` also runs 25 MiB for every KDF;
``--quick`` for a smoke run).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric import ec, x25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

from gateway.protocol.chunked import ChunkedRequestDecapsulator, ChunkedRequestEncapsulator
from gateway.protocol.keys import AeadId, GatewayKey, KdfId, KemId, KeyRing, SymmetricSuite
from gateway.protocol.ohttp import decapsulate_request, encapsulate_request

KIB = 1024
MIB = 1024 * KIB
NATURAL_KDF = {
    KemId.X25519_SHA256: KdfId.HKDF_SHA256,
    KemId.P256_SHA256: KdfId.HKDF_SHA256,
    KemId.P384_SHA384: KdfId.HKDF_SHA384,
}
ALL_SUITES = tuple(SymmetricSuite(kdf, aead) for kdf in KdfId for aead in AeadId)


@dataclass(frozen=True)
class Result:
    kem: KemId
    suite: SymmetricSuite
    size: int
    gateway_ns: float
    floor_ns: float

    @property
    def ratio(self) -> float:
        return self.gateway_ns / self.floor_ns


def floor_for(kem: KemId, aead_id: AeadId, size: int) -> Callable[[], object]:
    """Raw KEM exchange + raw AEAD open of a size-byte request + raw AEAD seal of the response."""
    if kem is KemId.X25519_SHA256:
        sk = x25519.X25519PrivateKey.generate()
        peer = x25519.X25519PrivateKey.generate().public_key()

        def exchange() -> bytes:
            return sk.exchange(peer)
    else:
        curve = ec.SECP256R1() if kem is KemId.P256_SHA256 else ec.SECP384R1()
        esk = ec.generate_private_key(curve)
        epk = ec.generate_private_key(curve).public_key()

        def exchange() -> bytes:
            return esk.exchange(ec.ECDH(), epk)

    key = bytes(16 if aead_id is AeadId.AES_128_GCM else 32)
    aead = ChaCha20Poly1305(key) if aead_id is AeadId.CHACHA20_POLY1305 else AESGCM(key)
    nonce = bytes(12)
    body = bytes(size)
    request_ct = aead.encrypt(nonce, body, b"")

    def floor() -> object:
        exchange()
        aead.decrypt(nonce, request_ct, b"")
        return aead.encrypt(nonce, body, b"")

    return floor


def gateway_for(kem: KemId, suite: SymmetricSuite, size: int) -> Callable[[], object]:
    key = GatewayKey.generate(1, kem, (suite,))
    ring = KeyRing([key])
    body = bytes(size)
    request, _ = encapsulate_request(key.config, suite, body)

    def gateway() -> object:
        _, context = decapsulate_request(ring, request)
        return context.encapsulate_response(body)

    return gateway


SLICE = 64 * KIB


def chunked_for(kem: KemId, suite: SymmetricSuite, size: int) -> Callable[[], object]:
    key = GatewayKey.generate(1, kem, (suite,))
    ring = KeyRing([key])
    body = memoryview(bytes(size))
    client = ChunkedRequestEncapsulator(key.config, suite)
    request = memoryview(client.start() + client.encapsulate_chunk(body) + client.finish())

    def gateway() -> object:
        receiver = ChunkedRequestDecapsulator(ring)
        for start in range(0, len(request), SLICE):
            receiver.feed(request[start : start + SLICE])
        receiver.finish()
        sender = receiver.response_encapsulator()
        out = [sender.start()]
        out += [sender.encapsulate_chunk(body[i : i + SLICE]) for i in range(0, size, SLICE)]
        out.append(sender.finish())
        return out

    return gateway


def measure(
    kem: KemId,
    suite: SymmetricSuite,
    size: int,
    runs: int,
    warmup: int,
    factory: Callable[[KemId, SymmetricSuite, int], Callable[[], object]] = gateway_for,
) -> Result:
    gateway, floor = factory(kem, suite, size), floor_for(kem, suite.aead_id, size)
    for _ in range(warmup):
        gateway()
        floor()
    gateway_times, floor_times = [], []
    for _ in range(runs):
        started = time.perf_counter_ns()
        gateway()
        middle = time.perf_counter_ns()
        floor()
        floor_times.append(time.perf_counter_ns() - middle)
        gateway_times.append(middle - started)
    return Result(
        kem, suite, size, statistics.median(gateway_times), statistics.median(floor_times)
    )


def fmt_time(ns: float) -> str:
    return f"{ns / 1e3:9.1f} µs" if ns < 1e6 else f"{ns / 1e6:9.2f} ms"


def report(results: list[Result]) -> None:
    print(
        f"{'KEM':14} {'KDF':12} {'AEAD':18} {'body':>7} {'gateway':>12} {'floor':>12} {'ratio':>6}"
    )
    for r in results:
        size = f"{r.size // MIB} MiB" if r.size >= MIB else f"{r.size // KIB} KiB"
        print(
            f"{r.kem.name:14} {r.suite.kdf_id.name:12} {r.suite.aead_id.name:18} {size:>7} "
            f"{fmt_time(r.gateway_ns)} {fmt_time(r.floor_ns)} {r.ratio:6.2f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--all", action="store_true", help="25 MiB for every KDF too")
    parser.add_argument("--quick", action="store_true", help="few runs, for a smoke test")
    args = parser.parse_args()
    small_runs, small_warmup = (20, 5) if args.quick else (300, 50)
    large_runs, large_warmup = (3, 1) if args.quick else (15, 3)
    print("\n\n".join(__doc__.split("\n\n")[1:3]))
    print(f"\nSmall bodies: median of {small_runs} after {small_warmup} warmup runs.")
    print(f"25 MiB bodies: median of {large_runs} after {large_warmup} warmup runs.\n")
    small = [measure(kem, s, KIB, small_runs, small_warmup) for kem in KemId for s in ALL_SUITES]
    report(small)
    print()
    large_suites = [
        (kem, s) for kem in KemId for s in ALL_SUITES if args.all or s.kdf_id is NATURAL_KDF[kem]
    ]
    large = [measure(kem, s, 25 * MIB, large_runs, large_warmup) for kem, s in large_suites]
    report(large)
    print("\nchunked OHTTP (informational):")
    chunked = [
        measure(kem, s, 25 * MIB, large_runs, large_warmup, chunked_for) for kem, s in large_suites
    ]
    report(chunked)
    x25519_small = max(r.ratio for r in small if r.kem is KemId.X25519_SHA256)
    aes_large = max(r.ratio for r in large if r.suite.aead_id is not AeadId.CHACHA20_POLY1305)
    print(f"\nworst 1 KiB X25519 ratio: {x25519_small:.2f} (goal <= 3)")
    print(f"worst 25 MiB AES-GCM ratio: {aes_large:.2f} (goal <= 1.3)")


if __name__ == "__main__":
    main()
