"""Decode time of the demo backend on the bundled sample, phrase-list vs open vocabulary.

Run: ``python -m bench.demo_backend_bench [runs]`` (default 10). For each mode it starts a
backend child process on a free loopback port, and measures, after one warm-up request:

* decode: ``Recogniser.split`` + ``recognise`` on the 2.97 s sample in this process's own worker
  pool (conversion plus PocketSphinx, no HTTP);
* request: a ``transcriptions.create`` round trip with the openai SDK (json), through
  multipart parsing, the worker pool and the response;
* startup: from spawning the backend to its "listening" line (model loaded).

It prints min / median / max in milliseconds and the real-time factor of the median decode.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import time

import openai

from gateway.demo.backend import SAMPLE_AUDIO, SAMPLE_TEXT, BackendProcess, BackendSettings
from gateway.demo.stt import Recogniser
from gateway.demo.wav import parse_wav

PHRASES = (SAMPLE_TEXT, "hello world today is a sunny day")


def summary(label: str, seconds: list[float]) -> str:
    ms = sorted(1000 * s for s in seconds)
    median = statistics.median(ms)
    return f"{label:>8}: min {ms[0]:7.1f}  median {median:7.1f}  max {ms[-1]:7.1f} ms"


async def decode_times(phrases: tuple[str, ...] | None, runs: int) -> list[float]:
    audio = parse_wav(SAMPLE_AUDIO.read_bytes())
    recogniser = Recogniser(phrases)
    await recogniser.start()
    try:
        times = []
        for _ in range(runs + 1):
            started = time.perf_counter()
            for span in await recogniser.split(audio):
                await recogniser.recognise(span)
            times.append(time.perf_counter() - started)
        return times[1:]
    finally:
        await recogniser.close()


def request_times(phrases: tuple[str, ...] | None, runs: int) -> tuple[float, list[float], str]:
    started = time.perf_counter()
    with BackendProcess(BackendSettings(port=0, phrases=phrases)) as backend:
        startup = time.perf_counter() - started
        client = openai.OpenAI(base_url=backend.url + "/v1", api_key="dummy", max_retries=0)
        times, text = [], ""
        for _ in range(runs + 1):
            started = time.perf_counter()
            text = client.audio.transcriptions.create(file=SAMPLE_AUDIO, model="whisper-1").text
            times.append(time.perf_counter() - started)
        client.close()
    return startup, times[1:], text


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    duration = parse_wav(SAMPLE_AUDIO.read_bytes()).duration
    load = os.getloadavg()[0]
    print(f"sample: {SAMPLE_AUDIO.name}, {duration:.2f} s; {runs} runs per figure; load {load:.1f}")
    for mode, phrases in (("phrase-list", PHRASES), ("open-vocabulary", None)):
        decode = asyncio.run(decode_times(phrases, runs))
        startup, requests, text = request_times(phrases, runs)
        print(f"{mode}: transcript {text!r}")
        print(summary("decode", decode))
        print(summary("request", requests))
        print(f"{'startup':>8}: {1000 * startup:7.1f} ms")
        print(f"{'RTF':>8}: {statistics.median(decode) / duration:.3f}")


if __name__ == "__main__":
    main()
