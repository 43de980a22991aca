"""Rendering of transcripts in OpenAI's response formats, and its streaming events.

Accepts: recognised :class:`~gateway.demo.stt.Segment` values and the audio's duration.
Guarantees: the shapes the official ``openai`` SDK parses (``Transcription``,
``TranscriptionVerbose``, ``TranscriptionTextDeltaEvent``, ``TranscriptionTextDoneEvent``) and
the SRT/WebVTT text formats; the deltas of one transcript concatenate to its ``text``.
Never: performs I/O; pure functions of their arguments.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

from gateway.demo.stt import Segment

RESPONSE_FORMATS = ("json", "text", "srt", "vtt", "verbose_json")
STREAMABLE_FORMATS = ("json", "text")
MEDIA_TYPES = {
    "json": "application/json",
    "verbose_json": "application/json",
    "text": "text/plain; charset=utf-8",
    "srt": "application/x-subrip; charset=utf-8",
    "vtt": "text/vtt; charset=utf-8",
}
LANGUAGE = "english"


def transcript_text(segments: Sequence[Segment]) -> str:
    return " ".join(text for text in (segment.text for segment in segments) if text)


def render(
    response_format: str,
    segments: Sequence[Segment],
    duration: float,
    words: bool = False,
    task: str = "transcribe",
) -> bytes:
    """The whole response body for ``response_format`` (one of :data:`RESPONSE_FORMATS`)."""
    text = transcript_text(segments)
    if response_format == "text":
        return (text + "\n").encode()
    if response_format == "srt":
        return _cues(segments, "", ",").encode()
    if response_format == "vtt":
        return ("WEBVTT\n\n" + _cues(segments, None, ".")).encode()
    body: dict[str, Any] = {"text": text, "usage": {"type": "duration", "seconds": duration}}
    if response_format == "verbose_json":
        body = _verbose(segments, duration, text, words, task)
    return json.dumps(body).encode()


def _verbose(
    segments: Sequence[Segment], duration: float, text: str, words: bool, task: str
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "task": task,
        "language": LANGUAGE,
        "duration": duration,
        "text": text,
        "segments": [
            {
                "id": i,
                "seek": 0,
                "start": segment.start,
                "end": segment.end,
                "text": segment.text,
                "tokens": [],
                "temperature": 0.0,
                "avg_logprob": 0.0,
                "compression_ratio": 1.0,
                "no_speech_prob": 0.0,
            }
            for i, segment in enumerate(segments)
        ],
        "usage": {"type": "duration", "seconds": duration},
    }
    if words:
        body["words"] = [
            {"word": w.word, "start": w.start, "end": w.end} for s in segments for w in s.words
        ]
    return body


def _cues(segments: Sequence[Segment], numbered: str | None, decimal: str) -> str:
    cues = []
    for i, segment in enumerate((s for s in segments if s.text), start=1):
        start, end = _timestamp(segment.start, decimal), _timestamp(segment.end, decimal)
        number = f"{i}\n" if numbered is not None else ""
        cues.append(f"{number}{start} --> {end}\n{segment.text}\n\n")
    return "".join(cues)


def _timestamp(seconds: float, decimal: str) -> str:
    millis = round(seconds * 1000)
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{decimal}{millis:03d}"


def deltas(segment: Segment, first: bool) -> Iterator[tuple[float, str]]:
    """(audio time the word ends, delta text) per word; spaces make deltas concatenate."""
    for word in segment.words:
        yield word.end, word.word if first else " " + word.word
        first = False


def sse(event: dict[str, Any]) -> bytes:
    """One server-sent event carrying ``event`` as JSON."""
    return b"data: " + json.dumps(event).encode() + b"\n\n"


def delta_event(delta: str) -> bytes:
    return sse({"type": "transcript.text.delta", "delta": delta})


def done_event(text: str) -> bytes:
    return sse({"type": "transcript.text.done", "text": text})


def error_body(message: str, status: int, param: str | None = None) -> dict[str, Any]:
    """OpenAI's error object, which the SDK turns into ``openai.APIStatusError`` subclasses."""
    kind = "invalid_request_error" if status < 500 else "server_error"
    return {"error": {"message": message, "type": kind, "param": param, "code": None}}
