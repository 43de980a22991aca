"""What each ``ohttp-client`` command does, given parsed arguments (see gateway/client/cli.py).

Accepts the argparse namespace of :mod:`gateway.client.cli`. Guarantees: every command that sends
verifies first (:class:`OhttpClient`); transcripts and response bodies go to stdout as they
arrive, progress and warnings to stderr; the return value is the exit code for the inner response
(0, or 1 for an HTTP error status). Never does: print keys' private parts, tokens or headers of the
inner response beyond the status line of ``request``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from gateway.client.keysource import describe, dumps, fetch_key_configs, kms_key_configs
from gateway.client.multipart import FileForm
from gateway.client.policy import AttestationPolicy
from gateway.client.relay import serve
from gateway.client.session import ClientSettings, Head, KmsSource, OhttpClient
from gateway.errors import ConfigError

OPENAI_PATH = "/v1/audio/transcriptions"
AZURE_PATH = "/openai/deployments/{deployment}/audio/transcriptions?api-version={version}"
PROGRESS_THRESHOLD = 1 << 20
SIMULATED_WARNING = (
    "ohttp-client: --allow-simulated: the gateway's evidence is simulated, NOT CONFIDENTIAL"
)


def settings(args: argparse.Namespace) -> ClientSettings:
    kms = None
    if args.kms:
        if args.kms_cert is None:
            raise ConfigError("--kms needs --kms-cert (the KMS's pinned service certificate)")
        kms = KmsSource(args.kms, args.kms_cert, args.kms_ca)
    if getattr(args, "allow_simulated", False):
        print(SIMULATED_WARNING, file=sys.stderr)
        policy = AttestationPolicy.development()
    elif getattr(args, "policy", None) is not None:
        policy = AttestationPolicy.from_file(args.policy)
    else:
        policy = AttestationPolicy.development()  # `keys` only: nothing is sent
    return ClientSettings(
        gateway=args.gateway,
        relay=args.relay,
        policy=policy,
        kms=kms,
        ca_bundle=args.ca_bundle,
        timeout=args.timeout,
    )


async def run(args: argparse.Namespace) -> int:
    handlers = {
        "keys": _keys,
        "verify": _verify,
        "request": _request,
        "transcribe": _transcribe,
        "proxy": _proxy,
    }
    return await handlers[args.command](args)


async def _keys(args: argparse.Namespace) -> int:
    config = settings(args)
    if config.kms is not None:
        kms = config.kms
        configs = await kms_key_configs(kms.url, kms.service_cert, kms.ca_bundle)
    else:
        async with OhttpClient(config) as client:
            configs = await fetch_key_configs(client.session, config.base)
    print(dumps({"key_configs": describe(configs), "verified_receipts": config.kms is not None}))
    return 0


async def _verify(args: argparse.Namespace) -> int:
    async with OhttpClient(settings(args)) as client:
        verified = await client.verified()
    token = verified.token
    summary: dict[str, Any] = {
        "verified": True,
        "simulated": verified.simulated,
        "issuer": verified.issuer,
        "attestation_type": token.attestation_type,
        "expires_at": int(verified.expires_at),
        "key_configs": describe(verified.key_configs),
    }
    print(dumps(summary))
    return 0


def _transcription_path(args: argparse.Namespace) -> bytes:
    if args.azure_deployment:
        path = AZURE_PATH.format(deployment=args.azure_deployment, version=args.api_version)
        return path.encode()
    return OPENAI_PATH.encode()


def _status_code(status: int) -> int:
    return 1 if status >= 400 else 0


async def _request(args: argparse.Namespace) -> int:
    headers = []
    for line in args.header:
        name, colon, value = line.partition(":")
        if not colon or not name.strip():
            raise ConfigError("-H takes 'name: value'")
        headers.append((name.strip().lower().encode(), value.strip().encode()))
    data = _data(args.data)
    head = Head(args.method.upper().encode(), args.path.encode(), tuple(headers))
    async with OhttpClient(settings(args)) as client:
        if args.score:
            async with client.score(head, data) as (status, body):
                await _copy(body)
            return _status_code(status)
        if args.chunked:
            async with client.stream(head, lambda: _once(data)) as response:
                print(f"status {response.status}", file=sys.stderr)
                await _copy(response.iter_body())
                return _status_code(response.status)
        answer = await client.send(head, data)
    print(f"status {answer.status}", file=sys.stderr)
    sys.stdout.buffer.write(answer.content)
    sys.stdout.flush()
    return _status_code(answer.status)


def _data(value: str | None) -> bytes:
    if value is None:
        return b""
    if value.startswith("@"):
        try:
            return Path(value[1:]).read_bytes()
        except OSError as error:
            raise ConfigError("the -d @FILE cannot be read") from error
    return value.encode()


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def _copy(body: AsyncIterator[bytes]) -> None:
    async for piece in body:
        sys.stdout.buffer.write(piece)
        sys.stdout.flush()


def _form(args: argparse.Namespace) -> FileForm:
    fields = {"model": args.model, "response_format": args.response_format}
    if args.language:
        fields["language"] = args.language
    if args.stream:
        fields["stream"] = "true"
    form = FileForm(args.file, fields)
    show = args.progress == "always" or (
        args.progress == "auto" and sys.stderr.isatty() and form.size >= PROGRESS_THRESHOLD
    )
    if show:
        form.progress = ProgressBar(form.size)
    return form


async def _transcribe(args: argparse.Namespace) -> int:
    form = _form(args)
    headers = (
        (b"content-type", form.content_type),
        (b"content-length", b"%d" % form.content_length),
    )
    head = Head(b"POST", _transcription_path(args), headers)
    async with OhttpClient(settings(args)) as client:
        if args.score:
            content = b"".join([piece async for piece in form.chunks()])
            async with client.score(head, content) as (status, body):
                await _copy(body)
            return _status_code(status)
        async with client.stream(head, form.chunks) as response:
            if args.stream and response.status < 400:
                await _print_deltas(response.iter_body())
            else:
                await _copy(response.iter_body())
            return _status_code(response.status)


async def _print_deltas(body: AsyncIterator[bytes]) -> None:
    """SSE ``transcript.text.delta`` events printed as they arrive; a newline at ``done``."""
    buffer = b""
    async for piece in body:
        buffer += piece
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            _print_event(line.strip())
    _print_event(buffer.strip())


def _print_event(line: bytes) -> None:
    if not line.startswith(b"data:") or line[5:].strip() == b"[DONE]":
        return
    try:
        event = json.loads(line[5:])
    except ValueError:
        return
    if not isinstance(event, dict):
        return
    if event.get("type") == "transcript.text.delta":
        sys.stdout.write(str(event.get("delta", "")))
    elif event.get("type") == "transcript.text.done":
        sys.stdout.write("\n")
    sys.stdout.flush()


class ProgressBar:
    """``[#####.....]  45%  11.3/25.0 MiB  4.1 MiB/s`` on stderr, redrawn at most 10 times/s."""

    def __init__(self, total: int) -> None:
        self.total, self.started, self.drawn = total, time.monotonic(), 0.0

    def __call__(self, sent: int) -> None:
        now = time.monotonic()
        if sent < self.total and now - self.drawn < 0.1:
            return
        self.drawn = now
        share = sent / self.total if self.total else 1.0
        rate = sent / max(now - self.started, 1e-6) / (1 << 20)
        bar = "#" * int(30 * share) + "." * (30 - int(30 * share))
        mib = f"{sent / (1 << 20):.1f}/{self.total / (1 << 20):.1f} MiB"
        end = "\n" if sent >= self.total else ""
        print(f"\r[{bar}] {100 * share:3.0f}%  {mib}  {rate:.1f} MiB/s", end=end, file=sys.stderr)


async def _proxy(args: argparse.Namespace) -> int:
    from gateway.client.proxy import build_proxy

    client = OhttpClient(settings(args))
    verified = await client.verified()  # fail before listening, not on the first request
    kind = "SIMULATED" if verified.simulated else "attested"
    print(f"proxy: gateway verified ({kind}), key ids {[c.key_id for c in verified.configs]}")
    await serve(build_proxy(client), args.host, args.port, banner="proxy")
    await asyncio.sleep(0)
    return 0
