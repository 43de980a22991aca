"""``ohttp-gateway demo``: the whole chain on loopback, printing the decrypted transcripts.

Starts the PocketSphinx backend (gateway.demo.backend, the stand-in Whisper container), then
``ohttp-gateway serve --dev`` in front of it, and sends the bundled WAV through the gateway as an
encrypted transcription request three ways: plain OHTTP (RFC 9458, X25519), chunked OHTTP
(draft-ietf-ohai-chunked-ohttp, P-384, the audio streamed up in pieces), and chunked OHTTP with
``stream=true`` (SSE transcript events printed as they arrive). Then once through ``/score``,
the Azure-compatible profile. Only loopback is used; nothing is downloaded.

Dev mode is NOT confidential: the keys are generated in memory, without attestation.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path

import aiohttp

from gateway.demo.backend import SAMPLE_AUDIO, BackendProcess, BackendSettings
from gateway.errors import ConfigError
from gateway.protocol import bhttp, ohttp
from gateway.protocol.azure_profile import AzureResponseDecapsulator
from gateway.protocol.chunked import ChunkedRequestEncapsulator
from gateway.protocol.keys import KemId, KeyConfig, decode_key_configs

TRANSCRIPTIONS = b"/v1/audio/transcriptions"
AZURE_PATH = b"/openai/deployments/whisper/audio/transcriptions?api-version=2024-06-01"
PIECE = 16 * 1024


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--audio", type=Path, default=SAMPLE_AUDIO, help="a PCM WAV to transcribe")


def run(args: argparse.Namespace) -> int:
    audio = Path(args.audio).read_bytes()
    print("ohttp-gateway demo: everything runs on 127.0.0.1; dev mode is NOT CONFIDENTIAL.\n")
    with BackendProcess(BackendSettings(port=0)) as backend:
        print(f"backend (PocketSphinx, OpenAI-compatible): {backend.url}")
        with _gateway(backend.url) as url:
            print(f"gateway (ohttp-gateway serve --dev):        {url}\n")
            asyncio.run(_demo(url, audio))
    return 0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def _gateway(upstream: str) -> Iterator[str]:
    """``ohttp-gateway serve --dev`` as a child process, until the block exits."""
    port = _free_port()
    log = Path(tempfile.mkdtemp(prefix="ohttp-demo-")) / "gateway.log"
    command = [sys.executable, "-m", "gateway.cli", "serve", "--dev", "--port", str(port)]
    command += ["--metrics-port", "0", "--upstream", upstream]
    with log.open("wb") as sink:
        process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT)  # noqa: S603
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(url, process)
        yield url
    finally:
        process.terminate()
        process.wait(30)
        print(f"\ngateway stopped (exit {process.returncode}); its JSON logs: {log}")


def _wait_ready(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ConfigError("the gateway exited during startup")
        try:
            with urllib.request.urlopen(url + "/readyz", timeout=1) as answer:  # noqa: S310
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise ConfigError("the gateway did not become ready")


def multipart(audio: bytes, **fields: str) -> tuple[bytes, bytes]:
    """An OpenAI transcription form: (content type, body)."""
    boundary = secrets.token_hex(16).encode()
    parts = [
        b"--"
        + boundary
        + b'\r\ncontent-disposition: form-data; name="'
        + name.encode()
        + b'"\r\n\r\n'
        + value.encode()
        + b"\r\n"
        for name, value in {"model": "whisper-1", **fields}.items()
    ]
    parts.append(
        b"--" + boundary + b'\r\ncontent-disposition: form-data; name="file"; filename="audio.wav"'
        b"\r\ncontent-type: audio/wav\r\n\r\n" + audio + b"\r\n--" + boundary + b"--\r\n"
    )
    return b"multipart/form-data; boundary=" + boundary, b"".join(parts)


def _request(path: bytes, audio: bytes, **fields: str) -> bhttp.Request:
    media, body = multipart(audio, **fields)
    headers = ((b"content-type", media), (b"accept", b"application/json"))
    return bhttp.Request(b"POST", b"https", b"whisper.local", path, headers, body)


def _config(configs: list[KeyConfig], kem: KemId) -> KeyConfig:
    return next(config for config in configs if config.kem_id == kem)


async def _demo(url: str, audio: bytes) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(url + "/.well-known/ohttp-gateway") as answer:
            configs = decode_key_configs(await answer.read())
        for config in configs:
            print(f"key config {config.key_id}: {config.kem_id.name}, {len(config.suites)} suites")
        x25519, p384 = _config(configs, KemId.X25519_SHA256), _config(configs, KemId.P384_SHA384)
        print("\n1. plain OHTTP (message/ohttp-req), X25519 / HKDF-SHA256 / AES-128-GCM")
        status, body = await _plain(session, url, x25519, _request(TRANSCRIPTIONS, audio))
        print(f"   inner status {status}; transcript: {json.loads(body)['text']!r}")
        print("\n2. chunked OHTTP (message/ohttp-chunked-req), P-384 / HKDF-SHA384 / AES-256-GCM")
        status, body = await _chunked(session, url, p384, _request(TRANSCRIPTIONS, audio))
        print(f"   inner status {status}; transcript: {json.loads(body)['text']!r}")
        print("\n3. chunked OHTTP with stream=true: SSE events, decrypted as they arrive")
        streamed = _request(TRANSCRIPTIONS, audio, stream="true")
        await _chunked(session, url, x25519, streamed, show_events=True)
        print("\n4. Azure-compatible profile (POST /score), P-384")
        status, body = await _azure(session, url, p384, _request(AZURE_PATH, audio))
        print(f"   status {status} (in the clear); transcript: {json.loads(body)['text']!r}")


async def _plain(
    session: aiohttp.ClientSession, url: str, config: KeyConfig, request: bhttp.Request
) -> tuple[int, bytes]:
    sealed, context = ohttp.encapsulate_request(
        config, config.suites[0], bhttp.encode_request(request)
    )
    headers = {"content-type": "message/ohttp-req"}
    async with session.post(url + "/gateway", data=sealed, headers=headers) as answer:
        if answer.status != 200:
            raise ConfigError("the gateway refused the demo request")
        response = bhttp.decode_response(context.decapsulate_response(await answer.read()))
    return response.status, response.content


async def _upload(
    encapsulator: ChunkedRequestEncapsulator, request: bhttp.Request
) -> AsyncIterator[bytes]:
    encoder = bhttp.RequestEncoder()
    head = encoder.head(
        request.method, request.scheme, request.authority, request.path, request.headers
    )
    yield encapsulator.start() + encapsulator.encapsulate_chunk(head)
    for offset in range(0, len(request.content), PIECE):
        yield encapsulator.encapsulate_chunk(encoder.body(request.content[offset : offset + PIECE]))
    yield encapsulator.finish(encoder.end())


async def _chunked(
    session: aiohttp.ClientSession,
    url: str,
    config: KeyConfig,
    request: bhttp.Request,
    show_events: bool = False,
) -> tuple[int, bytes]:
    encapsulator = ChunkedRequestEncapsulator(config, config.suites[0])
    decapsulator = encapsulator.response_decapsulator()
    decoder = bhttp.ResponseDecoder()
    status, content, started = 0, bytearray(), time.monotonic()
    headers = {"content-type": "message/ohttp-chunked-req", "incremental": "?1"}
    async with session.post(
        url + "/gateway", data=_upload(encapsulator, request), headers=headers
    ) as answer:
        if answer.status != 200:
            raise ConfigError("the gateway refused the demo request")
        async for data in answer.content.iter_any():
            for event in (e for p in decapsulator.feed(data) for e in decoder.feed(p)):
                status, piece = _absorb(event, status)
                content += piece
                if show_events and piece:
                    _print_events(piece, time.monotonic() - started)
    # The final chunk runs to the end of the stream, so its content (often the last event) only
    # opens now.
    for event in (e for p in decapsulator.finish() for e in decoder.feed(p)):
        status, piece = _absorb(event, status)
        content += piece
        if show_events and piece:
            _print_events(piece, time.monotonic() - started)
    decoder.finish()
    return status, bytes(content)


def _absorb(event: bhttp.Event, status: int) -> tuple[int, bytes]:
    if isinstance(event, bhttp.ResponseHead):
        return event.status, b""
    if isinstance(event, bhttp.BodyChunk):
        return status, event.data
    return status, b""


def _print_events(piece: bytes, elapsed: float) -> None:
    for line in piece.decode(errors="replace").splitlines():
        if line.startswith("data: ") and line != "data: [DONE]":
            event = json.loads(line[6:])
            text = event.get("delta") or event.get("text", "")
            print(f"   +{elapsed:6.3f}s  {event.get('type', 'event')}: {text!r}")


async def _azure(
    session: aiohttp.ClientSession, url: str, config: KeyConfig, request: bhttp.Request
) -> tuple[int, bytes]:
    sealed, context = ohttp.encapsulate_request(
        config, config.suites[0], bhttp.encode_request(request)
    )
    headers = {"content-type": "message/ohttp-chunked-req"}
    async with session.post(url + "/score", data=sealed, headers=headers) as answer:
        decapsulator = AzureResponseDecapsulator(context)
        body = b"".join(decapsulator.feed(await answer.read())) + b"".join(decapsulator.finish())
        return answer.status, body
