"""The demo backend over real loopback sockets, driven by the official openai SDK (phrase mode).

One backend child process serves the whole module; phrase-list mode makes transcripts exact.
"""

from __future__ import annotations

import http.client
import itertools
import struct
import time
import warnings

import openai
import pytest

from gateway.demo.backend import SAMPLE_AUDIO, SAMPLE_TEXT, RunningBackend
from tests.demo.helpers import get, multipart, post, sdk
from tests.demo.wavs import int16, wav
from tests.support.fuzzing import cases

SAMPLE = SAMPLE_AUDIO.read_bytes()
SAMPLE_8K = SAMPLE_AUDIO.with_name("quick-brown-fox-8k.wav")
DURATION = (len(SAMPLE) - 44) / 32_000  # flite writes a plain 44-byte header


def test_health_and_models(phrase_backend: RunningBackend) -> None:
    health = get(phrase_backend, "/health")
    assert (health.status, health.json()) == (200, {"status": "ok", "mode": "phrase-list"})
    assert [m.id for m in sdk(phrase_backend).models.list()] == ["whisper-1"]


def test_json_transcript_is_exact(phrase_backend: RunningBackend) -> None:
    result = sdk(phrase_backend).audio.transcriptions.create(file=SAMPLE_AUDIO, model="whisper-1")
    assert result.text == SAMPLE_TEXT
    assert result.usage is not None
    assert result.usage.type == "duration"
    assert result.usage.seconds == pytest.approx(DURATION, abs=0.001)


def test_text_format(phrase_backend: RunningBackend) -> None:
    text = sdk(phrase_backend).audio.transcriptions.create(
        file=SAMPLE_AUDIO, model="whisper-1", response_format="text"
    )
    assert text == SAMPLE_TEXT + "\n"


def test_srt_and_vtt_formats(phrase_backend: RunningBackend) -> None:
    client = sdk(phrase_backend)
    srt = client.audio.transcriptions.create(file=SAMPLE_AUDIO, model="w", response_format="srt")
    vtt = client.audio.transcriptions.create(file=SAMPLE_AUDIO, model="w", response_format="vtt")
    assert srt == f"1\n00:00:00,000 --> 00:00:02,965\n{SAMPLE_TEXT}\n\n"
    assert vtt == f"WEBVTT\n\n00:00:00.000 --> 00:00:02.965\n{SAMPLE_TEXT}\n\n"
    content_type, body = multipart([("response_format", "srt")], [("file", SAMPLE)])
    reply = post(phrase_backend, "/v1/audio/transcriptions", body, content_type)
    assert reply.headers["content-type"] == "application/x-subrip; charset=utf-8"


def test_verbose_json_has_segments_and_word_times(phrase_backend: RunningBackend) -> None:
    result = sdk(phrase_backend).audio.transcriptions.create(
        file=SAMPLE_AUDIO,
        model="whisper-1",
        response_format="verbose_json",
        timestamp_granularities=["word", "segment"],
    )
    assert (result.text, result.language) == (SAMPLE_TEXT, "english")
    assert result.duration == pytest.approx(DURATION, abs=0.001)
    assert result.segments is not None
    assert [s.text for s in result.segments] == [SAMPLE_TEXT]
    assert result.words is not None
    assert " ".join(w.word for w in result.words) == SAMPLE_TEXT
    times = [t for w in result.words for t in (w.start, w.end)]
    assert times == sorted(times)
    assert times[0] > 0.0
    assert times[-1] <= DURATION
    without = sdk(phrase_backend).audio.transcriptions.create(
        file=SAMPLE_AUDIO, model="whisper-1", response_format="verbose_json"
    )
    assert without.words is None
    assert without.segments is not None


def test_8_khz_audio_is_resampled(phrase_backend: RunningBackend) -> None:
    result = sdk(phrase_backend).audio.transcriptions.create(file=SAMPLE_8K, model="whisper-1")
    assert result.text == SAMPLE_TEXT


def test_48_khz_stereo_24_bit_extensible_audio_is_converted(phrase_backend: RunningBackend) -> None:
    samples = struct.unpack(f"<{(len(SAMPLE) - 44) // 2}h", SAMPLE[44:])
    # Each 16-bit sample held for 3 frames, on both channels, as 24 bits (a zero low byte).
    frames = b"".join(b"\0" + struct.pack("<h", s) for s in samples for _ in range(6))
    data = wav(frames, rate=48_000, channels=2, bits=24, extensible=True)
    result = sdk(phrase_backend).audio.transcriptions.create(
        file=("speech.wav", data), model="whisper-1"
    )
    assert result.text == SAMPLE_TEXT


def test_translation_returns_the_english_text(phrase_backend: RunningBackend) -> None:
    with warnings.catch_warnings():  # the SDK marks translations deprecated; the API is served
        warnings.simplefilter("ignore", DeprecationWarning)
        result = sdk(phrase_backend).audio.translations.create(file=SAMPLE_AUDIO, model="w")
    assert result.text == SAMPLE_TEXT


def test_streaming_sends_word_deltas_over_time_then_done(phrase_backend: RunningBackend) -> None:
    started = time.monotonic()
    arrivals = []
    stream = sdk(phrase_backend).audio.transcriptions.create(
        file=SAMPLE_AUDIO, model="gpt-4o-transcribe", stream=True
    )
    for event in stream:
        arrivals.append((time.monotonic() - started, event))
    kinds = [event.type for _, event in arrivals]
    assert kinds == ["transcript.text.delta"] * 9 + ["transcript.text.done"]
    deltas = "".join(e.delta for _, e in arrivals if e.type == "transcript.text.delta")
    assert deltas == arrivals[-1][1].text == SAMPLE_TEXT  # type: ignore[union-attr]
    times = [t for t, _ in arrivals]
    # Paced at 0.2 s per second of speech (~2.6 s between the first and last word ends):
    # the deltas are flushed one by one, not buffered into one write.
    assert times[8] - times[0] > 0.3
    assert all(later > earlier for earlier, later in itertools.pairwise(times[:9]))


def test_streaming_wire_format(phrase_backend: RunningBackend) -> None:
    content_type, body = multipart(
        [("stream", "true"), ("response_format", "text")], [("file", SAMPLE)]
    )
    reply = post(phrase_backend, "/v1/audio/transcriptions", body, content_type)
    assert reply.status == 200
    assert reply.headers["content-type"].startswith("text/event-stream")
    assert reply.headers["cache-control"] == "no-cache"
    events = reply.body.decode().split("\n\n")
    assert events[0] == 'data: {"type": "transcript.text.delta", "delta": "the"}'
    assert events[-2] == f'data: {{"type": "transcript.text.done", "text": "{SAMPLE_TEXT}"}}'
    assert events[-1] == ""


def azure(backend: RunningBackend) -> openai.AzureOpenAI:
    return openai.AzureOpenAI(
        azure_endpoint=backend.url, api_key="dummy", api_version="2024-06-01", max_retries=0
    )


def test_azure_deployment_paths(phrase_backend: RunningBackend) -> None:
    client = azure(phrase_backend)
    assert (
        client.audio.transcriptions.create(file=SAMPLE_AUDIO, model="whisper").text == SAMPLE_TEXT
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        assert (
            client.audio.translations.create(file=SAMPLE_AUDIO, model="whisper").text == SAMPLE_TEXT
        )
    events = list(
        client.audio.transcriptions.create(file=SAMPLE_AUDIO, model="gpt-4o", stream=True)
    )
    assert events[-1].type == "transcript.text.done"
    assert events[-1].text == SAMPLE_TEXT


def test_azure_path_needs_api_version(phrase_backend: RunningBackend) -> None:
    content_type, body = multipart(files=[("file", SAMPLE)])
    path = "/openai/deployments/whisper/audio/transcriptions"
    reply = post(phrase_backend, path, body, content_type)
    assert reply.status == 400
    assert "api-version" in reply.json()["error"]["message"]
    assert post(phrase_backend, path + "?api-version=2024-06-01", body, content_type).status == 200


def test_a_non_wav_upload_is_a_400_through_the_sdk(phrase_backend: RunningBackend) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        sdk(phrase_backend).audio.transcriptions.create(
            file=("speech.mp3", b"ID3\x04\x00" + bytes(200)), model="whisper-1"
        )
    assert raised.value.status_code == 400
    assert "only WAV is accepted" in raised.value.message


SHORT = wav(int16(*range(800)))  # 0.05 s
GOOD = [("file", SAMPLE)]


@pytest.mark.parametrize(
    ("fields", "files", "message"),
    [
        ([("model", "whisper-1")], [], "'file' field"),
        ([("file", "not-a-file")], [], "'file' field"),
        ([("response_format", "xml")], GOOD, "response_format must be"),
        ([("response_format", "srt"), ("stream", "true")], GOOD, "stream=true needs"),
        ([("stream", "maybe")], GOOD, "stream must be"),
        ([("language", "de")], GOOD, "only English"),
        ([("temperature", "hot")], GOOD, "temperature"),
        ([("temperature", "1.5")], GOOD, "temperature"),
        ([("timestamp_granularities[]", "word")], GOOD, "needs verbose_json"),
        (
            [("response_format", "verbose_json"), ("timestamp_granularities[]", "char")],
            GOOD,
            "word or segment",
        ),
        ([], [("file", SAMPLE), ("file", SAMPLE)], "more than one file"),
        ([("prompt", "x" * 70_000)], GOOD, "oversized field"),
        ([], [("file", SHORT)], "shorter than 0.1 s"),
        ([], [("file", SAMPLE[:40])], "no data chunk"),
    ],
    ids=lambda value: None if isinstance(value, list) else str(value)[:20],
)
def test_bad_form_input_is_a_clear_400(
    phrase_backend: RunningBackend,
    fields: list[tuple[str, str]],
    files: list[tuple[str, bytes]],
    message: str,
) -> None:
    content_type, body = multipart(fields, files)
    reply = post(phrase_backend, "/v1/audio/transcriptions", body, content_type)
    assert reply.status == 400
    error = reply.json()["error"]
    assert message in error["message"]
    assert error["type"] == "invalid_request_error"


@pytest.mark.parametrize(
    ("content_type", "body", "message"),
    [
        ("application/json", b'{"file": "x"}', "must be multipart/form-data"),
        ("multipart/form-data", b"--x\r\n", "multipart body is malformed"),  # no boundary
        ("multipart/form-data; boundary=x", b"--x\r\nnot a header line\r\n\r\n", "malformed"),
    ],
)
def test_bad_bodies_are_a_clear_400(
    phrase_backend: RunningBackend, content_type: str, body: bytes, message: str
) -> None:
    reply = post(phrase_backend, "/v1/audio/transcriptions", body, content_type)
    assert (reply.status, message in reply.json()["error"]["message"]) == (400, True)


def test_declared_body_over_25_mib_is_a_413_before_reading_it(
    phrase_backend: RunningBackend,
) -> None:
    connection = http.client.HTTPConnection(phrase_backend.host, phrase_backend.port, timeout=30)
    try:
        connection.putrequest("POST", "/v1/audio/transcriptions")
        connection.putheader("Content-Type", "multipart/form-data; boundary=x")
        connection.putheader("Content-Length", str(25 * 1024 * 1024 + 1))
        connection.endheaders()  # no body is sent: the answer must not wait for it
        response = connection.getresponse()
        assert response.status == 413
        assert "larger than 26214400 bytes" in response.read().decode()
    finally:
        connection.close()


def test_chunked_body_over_25_mib_is_a_413(phrase_backend: RunningBackend) -> None:
    content_type, head = multipart(boundary="b")
    head = head.removesuffix(b"--b--\r\n")
    head += b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\n'
    block = bytes(1024 * 1024)

    def chunks():  # type: ignore[no-untyped-def]
        yield head
        for _ in range(26):
            yield block

    connection = http.client.HTTPConnection(phrase_backend.host, phrase_backend.port, timeout=30)
    try:
        connection.request(
            "POST",
            "/v1/audio/transcriptions",
            body=chunks(),
            headers={"Content-Type": content_type},
            encode_chunked=True,
        )
        response = connection.getresponse()
        assert response.status == 413
    finally:
        connection.close()


def test_wrong_method_and_unknown_path(phrase_backend: RunningBackend) -> None:
    assert get(phrase_backend, "/v1/audio/transcriptions").status == 405
    content_type, body = multipart(files=[("file", SAMPLE)])
    assert post(phrase_backend, "/v1/audio/speech", body, content_type).status == 404


def test_fuzzed_requests_get_a_4xx_or_a_transcript_never_a_5xx(
    phrase_backend: RunningBackend,
) -> None:
    short = wav(SAMPLE[44 : 44 + 9_600])  # 0.3 s keeps each decode short
    seeds = [
        multipart([("model", "whisper-1"), ("response_format", "srt")], [("file", short)], "b")[1],
        multipart([("stream", "true"), ("language", "en")], [("file", short)], "b")[1],
        multipart([("response_format", "verbose_json")], [("file", short)], "b")[1],
    ]
    content_type = "multipart/form-data; boundary=b"
    for body in cases(seeds, count=150, seed=7):
        reply = post(phrase_backend, "/v1/audio/transcriptions", body, content_type)
        assert reply.status in (200, 400), body[:400]
        if reply.status == 400:
            assert reply.json()["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize("audio", [bytes(32_000), bytes(range(256)) * 125], ids=["silence", "buzz"])
def test_audio_matching_no_phrase_is_an_empty_transcript(
    phrase_backend: RunningBackend, audio: bytes
) -> None:
    # The phrase grammar finds no hypothesis at all here; the decoder then has no segments.
    result = sdk(phrase_backend).audio.transcriptions.create(
        file=("noise.wav", wav(audio)), model="whisper-1", response_format="verbose_json"
    )
    assert (result.text, result.words, result.duration) == ("", None, 1.0)
