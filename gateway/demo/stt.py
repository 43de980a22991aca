"""Offline speech recognition with PocketSphinx, run in worker processes.

Accepts: parsed WAV audio (:class:`gateway.demo.wav.WavAudio`) and, at construction, either no
phrase list (open vocabulary: PocketSphinx's bundled US-English language model) or a phrase list
(a JSGF grammar with one alternative per phrase: the transcript of each speech segment is exactly
one of the phrases, which makes end-to-end tests deterministic).

Guarantees:
* decoding happens in a spawned worker process, because PocketSphinx holds the GIL for a whole
  decode and would stall the event loop; a worker exits when its parent dies (parent-pid watchdog);
* the decoder's feature normalisation is reset before every utterance, so the same audio gives the
  same words whatever was decoded before;
* audio up to :data:`SINGLE_UTTERANCE_SECONDS` is one segment; longer audio is split at pauses by
  PocketSphinx's voice-activity detector, each segment padded without crossing the middle of a gap;
* errors are :class:`~gateway.errors.GatewayError`: a bad phrase list raises ``ConfigError`` at
  :meth:`Recogniser.start`, a failing worker ``RecognizerFailed``.

Never: downloads anything (the model ships in the ``pocketsphinx`` wheel), logs audio or text.
"""

from __future__ import annotations

import asyncio
import io
import multiprocessing
import os
import re
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any, TypeVar

from gateway.demo.wav import TARGET_RATE, WavAudio, to_recogniser_pcm
from gateway.errors import ConfigError, GatewayError, RecognizerFailed

SINGLE_UTTERANCE_SECONDS = 15.0
SEGMENT_PADDING_SECONDS = 0.3
_BYTES_PER_SECOND = TARGET_RATE * 2
_WATCHDOG_INTERVAL_SECONDS = 0.5
_T = TypeVar("_T")


@dataclass(frozen=True)
class Word:
    """One recognised word and its time span in the audio, in seconds."""

    word: str
    start: float
    end: float


@dataclass(frozen=True)
class Segment:
    """The words recognised in one speech segment; times are relative to the whole audio."""

    start: float
    end: float
    words: tuple[Word, ...]

    @property
    def text(self) -> str:
        return " ".join(word.word for word in self.words)


@dataclass(frozen=True, repr=False)
class Span:
    """A stretch of 16 kHz mono PCM, at ``offset`` seconds into the audio, to decode as one unit."""

    offset: float
    pcm: bytes

    @property
    def duration(self) -> float:
        return len(self.pcm) / _BYTES_PER_SECOND


def normalise_phrase(text: str) -> str:
    """Lower-case words and apostrophes only: how the recogniser spells its output."""
    return " ".join(re.sub(r"[^a-z0-9']+", " ", text.lower()).split())


def phrase_grammar(phrases: Sequence[str]) -> str:
    """A JSGF grammar whose utterance is exactly one of ``phrases`` (already normalised)."""
    alternatives = " | ".join(f"( {phrase} )" for phrase in phrases)
    return f"#JSGF V1.0;\ngrammar phrases;\npublic <utterance> = {alternatives};\n"


class Recogniser:
    """A pool of PocketSphinx worker processes behind an asyncio interface."""

    def __init__(self, phrases: Sequence[str] | None = None, workers: int = 1) -> None:
        if workers < 1:
            raise ConfigError("recogniser workers must be at least 1")
        self.phrases: tuple[str, ...] | None = None
        if phrases is not None:
            self.phrases = tuple(filter(None, (normalise_phrase(p) for p in phrases)))
            if not self.phrases:
                raise ConfigError("the phrase list is empty")
        self._workers = workers
        self._pool: ProcessPoolExecutor | None = None

    @property
    def mode(self) -> str:
        return "open-vocabulary" if self.phrases is None else "phrase-list"

    async def start(self) -> None:
        """Spawn the workers, load the model, and check every phrase word is in the dictionary."""
        self._pool = self._new_pool()
        unknown = await self._call(_unknown_words)
        if unknown is not None:
            await self.close()
            phrase, word = unknown
            raise ConfigError(
                f"phrase {phrase + 1}, word {word + 1}: not in the recogniser's dictionary"
            )

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await asyncio.get_running_loop().run_in_executor(None, pool.shutdown)

    async def split(self, audio: WavAudio) -> list[Span]:
        """Convert ``audio`` for the recogniser and cut it into spans to decode one by one."""
        return await self._call(_split, audio)

    async def recognise(self, span: Span) -> Segment:
        """The words spoken in ``span``."""
        return await self._call(_recognise, span)

    async def _call(self, function: Callable[..., _T], *args: object) -> _T:
        pool = self._pool
        if pool is None:
            raise RecognizerFailed("the recogniser is not running")
        try:
            return await asyncio.get_running_loop().run_in_executor(pool, function, *args)
        except GatewayError:
            raise
        except BrokenProcessPool as error:
            if self._pool is pool:  # a worker died: this request fails, the next gets new workers
                pool.shutdown(wait=False)
                self._pool = self._new_pool()
            raise RecognizerFailed() from error
        except (RuntimeError, ValueError, OSError) as error:  # PocketSphinx's own failures
            raise RecognizerFailed() from error

    def _new_pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            max_workers=self._workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_worker,
            initargs=(self.phrases, os.getpid()),
        )

    async def worker_pid(self) -> int:
        """The process id of the worker that answers (with one worker: the worker)."""
        return await self._call(os.getpid)


# --- inside the worker process -------------------------------------------------------------

_decoder: Any = None
_unknown: tuple[int, int] | None = None


def _init_worker(phrases: tuple[str, ...] | None, parent_pid: int) -> None:
    global _decoder, _unknown
    threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True).start()
    from pocketsphinx import Decoder  # type: ignore[import-untyped]  # no stubs; worker-only

    _decoder = Decoder(loglevel="FATAL")
    if phrases is None:
        return
    _unknown = next(
        (
            (i, j)
            for i, phrase in enumerate(phrases)
            for j, word in enumerate(phrase.split())
            if _decoder.lookup_word(word) is None
        ),
        None,
    )
    if _unknown is None:  # a grammar with an unknown word fails to load at all
        _decoder.add_jsgf_string("phrases", phrase_grammar(phrases))
        _decoder.activate_search("phrases")


def _watch_parent(parent_pid: int) -> None:
    # A SIGKILLed server cannot shut its pool down; orphaned workers notice the new parent.
    while os.getppid() == parent_pid:
        time.sleep(_WATCHDOG_INTERVAL_SECONDS)
    os._exit(0)


def _unknown_words() -> tuple[int, int] | None:
    return _unknown


def _split(audio: WavAudio) -> list[Span]:
    pcm = to_recogniser_pcm(audio)
    if len(pcm) <= SINGLE_UTTERANCE_SECONDS * _BYTES_PER_SECOND:
        return [Span(0.0, pcm)]
    from pocketsphinx import Segmenter

    speech = [(s.start_time, s.end_time) for s in Segmenter().segment(io.BytesIO(pcm))]
    if not speech:
        return [Span(0.0, pcm)]
    spans = []
    total = len(pcm) / _BYTES_PER_SECOND
    for i, (start, end) in enumerate(speech):
        lower = (speech[i - 1][1] + start) / 2 if i else 0.0
        upper = (end + speech[i + 1][0]) / 2 if i + 1 < len(speech) else total
        start = max(lower, start - SEGMENT_PADDING_SECONDS)
        end = min(upper, end + SEGMENT_PADDING_SECONDS)
        first, last = (int(t * TARGET_RATE) * 2 for t in (start, end))
        spans.append(Span(first / _BYTES_PER_SECOND, pcm[first:last]))
    return spans


def _recognise(span: Span) -> Segment:
    decoder = _decoder
    decoder.reinit_feat()
    decoder.start_utt()
    decoder.process_raw(span.pcm, full_utt=True)
    decoder.end_utt()
    frame_rate = float(decoder.config["frate"])
    words = tuple(
        Word(
            re.sub(r"\(\d+\)$", "", seg.word),  # alternate pronunciations: "hello(2)"
            round(span.offset + seg.start_frame / frame_rate, 2),
            round(span.offset + (seg.end_frame + 1) / frame_rate, 2),
        )
        for seg in decoder.seg() or ()  # None when a grammar matches nothing in the audio
        if not seg.word.startswith(("<", "["))  # <s>, </s>, <sil>, [NOISE] and other fillers
    )
    return Segment(span.offset, span.offset + span.duration, words)
