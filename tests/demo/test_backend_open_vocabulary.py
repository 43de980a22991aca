"""Open-vocabulary mode: PocketSphinx's full English language model on the bundled speech.

Measured with pocketsphinx 5.1.1 (see the report / bench/demo_backend.py): the 16 kHz flite
`slt` sample decodes to the exact sentence; the 8 kHz `kal` take gives "jumped" for "jumps"
(8 of 9 words). The thresholds leave room for that, not for a broken recogniser.
"""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Iterator

import pytest

from gateway.demo.backend import (
    SAMPLE_AUDIO,
    SAMPLE_TEXT,
    BackendProcess,
    BackendSettings,
    RunningBackend,
)
from tests.demo.helpers import get, sdk, word_overlap


@pytest.fixture(scope="module")
def open_backend() -> Iterator[RunningBackend]:
    with BackendProcess(BackendSettings(port=0)) as backend:
        yield backend


def test_mode_is_reported(open_backend: RunningBackend) -> None:
    assert get(open_backend, "/health").json()["mode"] == "open-vocabulary"


def test_transcripts_are_close_to_the_sentence_and_repeatable(
    open_backend: RunningBackend,
) -> None:
    client = sdk(open_backend)
    first, low_rate, again = (
        client.audio.transcriptions.create(file=SAMPLE_AUDIO.with_name(name), model="w").text
        for name in ("quick-brown-fox.wav", "quick-brown-fox-8k.wav", "quick-brown-fox.wav")
    )
    assert word_overlap(SAMPLE_TEXT, first) >= 0.85
    assert word_overlap(SAMPLE_TEXT, low_rate) >= 0.75
    # The decoder's normalisation is reset per request: what came before changes nothing.
    assert again == first


def test_health_answers_while_a_decode_runs(open_backend: RunningBackend) -> None:
    # PocketSphinx holds the GIL for a whole decode; in a worker process it cannot stall the
    # server's event loop. Were it decoded in the server, a poll would wait the whole decode.
    client = sdk(open_backend)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        started = time.monotonic()
        request = pool.submit(client.audio.transcriptions.create, file=SAMPLE_AUDIO, model="w")
        latencies = []
        while not request.done():
            polled = time.monotonic()
            assert get(open_backend, "/health").status == 200
            latencies.append(time.monotonic() - polled)
            time.sleep(0.02)
        assert request.result().text
        decode = time.monotonic() - started
    assert len(latencies) >= 3
    assert max(latencies) < decode / 2


def test_word_overlap_measure() -> None:
    assert word_overlap("a b a c", "a a b c") == 1.0
    assert word_overlap("a b a c", "a b d") == 0.5
    assert word_overlap("a b", "") == 0.0
