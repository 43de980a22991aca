"""gateway.demo.formats: the exact bytes of each response format and streaming event."""

from __future__ import annotations

import json

from gateway.demo.formats import delta_event, deltas, done_event, render
from gateway.demo.stt import Segment, Word

SEGMENTS = (
    Segment(0.0, 2.5, (Word("hello", 0.2, 0.6), Word("world", 0.6, 1.1))),
    Segment(2.5, 3.0, ()),  # a pause the recogniser heard nothing in
    Segment(3661.0, 3662.5, (Word("again", 3661.25, 3662.0),)),
)


def test_text_and_json() -> None:
    assert render("text", SEGMENTS, 3662.5) == b"hello world again\n"
    assert json.loads(render("json", SEGMENTS, 3662.5)) == {
        "text": "hello world again",
        "usage": {"type": "duration", "seconds": 3662.5},
    }
    assert render("text", (), 0.5) == b"\n"


def test_srt_numbers_cues_and_skips_empty_segments() -> None:
    assert render("srt", SEGMENTS, 3662.5).decode() == (
        "1\n00:00:00,000 --> 00:00:02,500\nhello world\n\n"
        "2\n01:01:01,000 --> 01:01:02,500\nagain\n\n"
    )


def test_vtt() -> None:
    assert render("vtt", SEGMENTS, 3662.5).decode() == (
        "WEBVTT\n\n"
        "00:00:00.000 --> 00:00:02.500\nhello world\n\n"
        "01:01:01.000 --> 01:01:02.500\nagain\n\n"
    )


def test_verbose_json_with_and_without_words() -> None:
    body = json.loads(render("verbose_json", SEGMENTS, 3662.5, words=True, task="translate"))
    assert body["task"] == "translate"
    assert [s["text"] for s in body["segments"]] == ["hello world", "", "again"]
    assert [s["id"] for s in body["segments"]] == [0, 1, 2]
    assert body["words"][2] == {"word": "again", "start": 3661.25, "end": 3662.0}
    assert "words" not in json.loads(render("verbose_json", SEGMENTS, 3662.5))


def test_deltas_concatenate_to_the_text() -> None:
    pieces = [
        d
        for s, first in zip(SEGMENTS, (True, True, True), strict=True)
        for _, d in deltas(s, first)
    ]
    assert pieces == ["hello", " world", "again"]
    joined = [d for i, s in enumerate(SEGMENTS) for _, d in deltas(s, first=i == 0)]
    assert "".join(joined) == "hello world again"
    assert [end for _, end in [(d, e) for e, d in deltas(SEGMENTS[0], True)]] == [0.6, 1.1]


def test_events_are_server_sent_json() -> None:
    assert (
        delta_event(" world") == b'data: {"type": "transcript.text.delta", "delta": " world"}\n\n'
    )
    assert done_event("a\nb") == b'data: {"type": "transcript.text.done", "text": "a\\nb"}\n\n'
