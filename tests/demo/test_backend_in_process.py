"""The backend run in this event loop (serve_backend): async SDK, limits, multi-segment audio,
and what a client sees when the recogniser worker dies."""

from __future__ import annotations

import asyncio
import http.client
import os
import signal
import time
from collections.abc import AsyncIterator

import openai
import pytest
import pytest_asyncio

from gateway.demo.backend import (
    SAMPLE_AUDIO,
    SAMPLE_TEXT,
    BackendSettings,
    RunningBackend,
    serve_backend,
)
from gateway.demo.stt import SINGLE_UTTERANCE_SECONDS
from gateway.errors import ConfigError
from tests.demo.helpers import PHRASES, multipart, post
from tests.demo.wavs import wav
from tests.support.accepted import server_nodelay

SAMPLE = SAMPLE_AUDIO.read_bytes()
LIMIT = 1_000_000  # above the 27 s long_audio()
REPEATS = 6


def long_audio() -> bytes:
    """The sample six times, with 1.5 s of silence after each: 27 s, past one utterance."""
    frames = (SAMPLE[44:] + bytes(48_000)) * REPEATS
    assert len(frames) / 32_000 > SINGLE_UTTERANCE_SECONDS
    return wav(frames)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def backend() -> AsyncIterator[RunningBackend]:
    settings = BackendSettings(port=0, phrases=PHRASES, max_upload_bytes=LIMIT, stream_pace=0.05)
    async with serve_backend(settings) as running:
        yield running


def client(backend: RunningBackend) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=backend.url + "/v1", api_key="dummy", max_retries=0)


@pytest.mark.asyncio(loop_scope="module")
async def test_async_sdk(backend: RunningBackend) -> None:
    async with client(backend) as sdk:
        result = await sdk.audio.transcriptions.create(file=SAMPLE_AUDIO, model="w")
    assert result.text == SAMPLE_TEXT


@pytest.mark.asyncio(loop_scope="module")
async def test_concurrent_requests_queue_for_the_worker(backend: RunningBackend) -> None:
    async with client(backend) as sdk:
        results = await asyncio.gather(
            *(sdk.audio.transcriptions.create(file=SAMPLE_AUDIO, model="w") for _ in range(4))
        )
    assert [result.text for result in results] == [SAMPLE_TEXT] * 4


@pytest.mark.asyncio(loop_scope="module")
async def test_long_audio_is_decoded_segment_by_segment(backend: RunningBackend) -> None:
    async with client(backend) as sdk:
        verbose = await sdk.audio.transcriptions.create(
            file=("long.wav", long_audio()), model="w", response_format="verbose_json"
        )
        assert verbose.text == " ".join([SAMPLE_TEXT] * REPEATS)
        assert verbose.segments is not None
        starts = [segment.start for segment in verbose.segments]
        assert len(starts) == REPEATS
        assert starts == sorted(starts)
        assert starts[-1] > 20.0
        started = time.monotonic()
        arrivals: list[tuple[float, str]] = []
        stream = await sdk.audio.transcriptions.create(
            file=("long.wav", long_audio()), model="w", stream=True
        )
        async for event in stream:
            arrivals.append((time.monotonic() - started, event.type))
    assert [kind for _, kind in arrivals].count("transcript.text.delta") == 9 * REPEATS
    assert arrivals[-1][1] == "transcript.text.done"
    first_of_segment = [t for i, (t, _) in enumerate(arrivals[:-1]) if i % 9 == 0]
    assert first_of_segment == sorted(set(first_of_segment))


def post_chunked(backend: RunningBackend, body: bytes, content_type: str) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection(backend.host, backend.port, timeout=30)
    try:
        chunks = (body[i : i + 16_384] for i in range(0, len(body), 16_384))
        connection.request(
            "POST",
            "/v1/audio/transcriptions",
            body=chunks,
            headers={"Content-Type": content_type},
            encode_chunked=True,
        )
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


@pytest.mark.asyncio(loop_scope="module")
async def test_chunked_upload_past_the_configured_limit_is_a_413(backend: RunningBackend) -> None:
    content_type, body = multipart(files=[("file", SAMPLE + bytes(LIMIT))])
    status, answer = await asyncio.to_thread(post_chunked, backend, body, content_type)
    assert status == 413
    assert b"larger than 1000000 bytes" in answer


@pytest.mark.asyncio(loop_scope="module")
async def test_a_dead_worker_is_a_502_and_the_next_request_gets_a_new_one(
    backend: RunningBackend,
) -> None:
    assert backend.recogniser is not None
    os.kill(await backend.recogniser.worker_pid(), signal.SIGKILL)
    content_type, body = multipart(files=[("file", SAMPLE)])
    failed = await asyncio.to_thread(post, backend, "/v1/audio/transcriptions", body, content_type)
    assert failed.status == 502
    assert failed.json()["error"] == {
        "message": "Speech recogniser failed.",
        "type": "server_error",
        "param": None,
        "code": None,
    }
    async with client(backend) as sdk:
        recovered = await sdk.audio.transcriptions.create(file=SAMPLE_AUDIO, model="w")
    assert recovered.text == SAMPLE_TEXT


@pytest.mark.asyncio(loop_scope="module")
async def test_a_worker_dying_mid_stream_is_an_error_event(backend: RunningBackend) -> None:
    assert backend.recogniser is not None
    worker = await backend.recogniser.worker_pid()
    async with client(backend) as sdk:
        stream = await sdk.audio.transcriptions.create(
            file=("long.wav", long_audio()), model="w", stream=True
        )
        received: list[str] = []

        async def consume() -> None:
            async for event in stream:
                received.append(event.type)
                if len(received) == 1:  # the first segment is decoded; kill before the second
                    os.kill(worker, signal.SIGKILL)

        with pytest.raises(openai.APIError, match="Speech recogniser failed"):
            await consume()
        assert 1 <= len(received) <= 9
        assert "transcript.text.done" not in received


@pytest.mark.asyncio(loop_scope="module")
async def test_a_busy_port_is_a_config_error(backend: RunningBackend) -> None:
    with pytest.raises(ConfigError, match="cannot bind"):
        async with serve_backend(BackendSettings(port=backend.port, phrases=PHRASES)):
            pass


@pytest.mark.asyncio(loop_scope="module")
async def test_kept_alive_connections_have_nodelay(backend: RunningBackend) -> None:
    # Nagle on would hold each kept-alive response's body ~40 ms for the client's delayed ACK.
    def sequential() -> bool:
        connection = http.client.HTTPConnection(backend.host, backend.port, timeout=10)
        try:
            for _ in range(10):
                connection.request("GET", "/health")
                response = connection.getresponse()
                response.read()
                assert response.status == 200
            assert connection.sock is not None
            return server_nodelay([os.getpid()], connection.sock)
        finally:
            connection.close()

    assert await asyncio.to_thread(sequential)
