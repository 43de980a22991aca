"""An OpenAI-compatible transcription backend on PocketSphinx: the demo's "Whisper container".

Serves, over HTTP (starlette + uvicorn):
* ``POST /v1/audio/transcriptions`` and ``POST /v1/audio/translations`` (OpenAI), and
  ``POST /openai/deployments/{deployment}/audio/{transcriptions|translations}?api-version=...``
  (Azure OpenAI): multipart/form-data with ``file`` (a PCM WAV), optional ``model``,
  ``language`` (English only), ``prompt`` (ignored), ``temperature``, ``response_format``
  (json, text, srt, vtt, verbose_json), ``timestamp_granularities[]`` and ``stream``;
* ``stream=true`` (json or text): server-sent events, one ``transcript.text.delta`` per word,
  sent as each speech segment is decoded and paced within a segment by the words' timing
  (``stream_pace`` seconds of delay per second of audio), then ``transcript.text.done``;
* ``GET /health`` and ``GET /v1/models`` for readiness; the recogniser is loaded before the
  socket accepts connections.

Guarantees: bad client input gets a 4xx with OpenAI's error JSON (400 for a bad field, format or
WAV; 413 past ``max_upload_bytes``, 25 MiB by default, checked on Content-Length and while
reading); never a 500 or a traceback for client input. Imports nothing of ours beyond the demo
package, ``gateway.errors`` and ``gateway.server.sockets``.

Never: keeps audio after the response, logs bodies or transcripts, or downloads anything.

Run it: ``python -m gateway.demo.backend --port 8000 [--phrase TEXT ...] [--phrases FILE]``
(``--port 0`` picks a free port; the URL is printed once ready), or ``ohttp-gateway
demo-backend``; in-process: ``async with serve_backend(BackendSettings(port=0)) as backend``;
as a subprocess: ``with BackendProcess(BackendSettings(port=0)) as backend``. The recogniser
workers are spawned processes, so a script that starts the backend needs the usual
``if __name__ == "__main__":`` guard.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import select
import signal
import subprocess
import sys
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Generator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.datastructures import FormData, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from gateway.demo.formats import (
    MEDIA_TYPES,
    RESPONSE_FORMATS,
    STREAMABLE_FORMATS,
    delta_event,
    deltas,
    done_event,
    error_body,
    render,
    sse,
    transcript_text,
)
from gateway.demo.stt import Recogniser, Segment, Span
from gateway.demo.wav import WavAudio, parse_wav
from gateway.errors import (
    AudioInvalid,
    BodyTooLarge,
    ConfigError,
    GatewayError,
    TranscriptionRequestInvalid,
)
from gateway.server.sockets import bind_tcp

MAX_UPLOAD_BYTES = 25 * 1024 * 1024
MIN_AUDIO_SECONDS = 0.1
SAMPLE_AUDIO = Path(__file__).resolve().parent / "audio" / "quick-brown-fox.wav"
SAMPLE_TEXT = "the quick brown fox jumps over the lazy dog"
_MAX_FIELD_BYTES = 64 * 1024
_MAX_FIELDS = 32
_STARTUP_TIMEOUT_SECONDS = 60.0
_ENGLISH = {"", "en", "english"}
_TRUE, _FALSE = {"true", "1"}, {"false", "0", ""}


@dataclass(frozen=True)
class BackendSettings:
    """How to run the backend; ``phrases=None`` means open vocabulary."""

    host: str = "127.0.0.1"
    port: int = 8000
    phrases: tuple[str, ...] | None = None
    workers: int = 1
    max_upload_bytes: int = MAX_UPLOAD_BYTES
    stream_pace: float = 0.25


@dataclass(frozen=True, repr=False)
class TranscriptionRequest:
    """The validated form of one request."""

    audio: WavAudio
    response_format: str
    stream: bool
    words: bool


# --- the application ----------------------------------------------------------------------


def create_app(recogniser: Recogniser, settings: BackendSettings) -> Starlette:
    """The ASGI app; ``recogniser`` must be started by the caller and outlive the app."""

    def endpoint(task: str, azure: bool) -> Callable[[Request], Any]:
        async def handle(request: Request) -> Response:
            if azure and not request.query_params.get("api-version"):
                raise TranscriptionRequestInvalid("the api-version query parameter is required")
            form = await _read_form(request, settings.max_upload_bytes)
            try:
                parsed = await _validate(form)
            finally:
                await form.close()
            spans = await recogniser.split(parsed.audio)
            if parsed.stream:
                events = _events(recogniser, spans, settings.stream_pace)
                headers = {"Cache-Control": "no-cache"}
                return StreamingResponse(events, media_type="text/event-stream", headers=headers)
            segments = [await recogniser.recognise(span) for span in spans]
            body = render(
                parsed.response_format, segments, parsed.audio.duration, parsed.words, task
            )
            return Response(body, media_type=MEDIA_TYPES[parsed.response_format])

        return handle

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok", "mode": recogniser.mode})

    async def models(request: Request) -> Response:
        model = {"id": "whisper-1", "object": "model", "created": 0, "owned_by": "pocketsphinx"}
        return JSONResponse({"object": "list", "data": [model]})

    azure = "/openai/deployments/{deployment}/audio"
    routes = [
        Route("/v1/audio/transcriptions", endpoint("transcribe", False), methods=["POST"]),
        Route("/v1/audio/translations", endpoint("translate", False), methods=["POST"]),
        Route(f"{azure}/transcriptions", endpoint("transcribe", True), methods=["POST"]),
        Route(f"{azure}/translations", endpoint("translate", True), methods=["POST"]),
        Route("/health", health),
        Route("/v1/models", models),
    ]
    return Starlette(routes=routes, exception_handlers={GatewayError: _error_response})


async def _error_response(request: Request, error: Exception) -> Response:
    if not isinstance(error, GatewayError):  # registered for GatewayError only
        raise error
    return JSONResponse(error_body(error.message, error.status), status_code=error.status)


async def _read_form(request: Request, limit: int) -> FormData:
    if not request.headers.get("content-type", "").lower().startswith("multipart/form-data"):
        raise TranscriptionRequestInvalid("the request body must be multipart/form-data")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(f"the request body is larger than {limit} bytes")

    async def limited() -> AsyncGenerator[bytes, None]:
        received = 0
        async for chunk in request.stream():
            received += len(chunk)
            if received > limit:  # chunked uploads have no Content-Length to check up front
                raise BodyTooLarge(f"the request body is larger than {limit} bytes")
            yield chunk

    parser = MultiPartParser(
        request.headers,
        limited(),
        max_files=1,
        max_fields=_MAX_FIELDS,
        max_part_size=_MAX_FIELD_BYTES,
    )
    try:
        return await parser.parse()
    except MultiPartException as error:
        raise TranscriptionRequestInvalid(
            "the multipart body is malformed, has more than one file or an oversized field"
        ) from error


async def _validate(form: FormData) -> TranscriptionRequest:
    upload = form.get("file")
    if not isinstance(upload, UploadFile):
        raise TranscriptionRequestInvalid("the 'file' field (an audio file upload) is required")
    fields = {key: value for key, value in form.multi_items() if isinstance(value, str)}
    response_format = fields.get("response_format") or "json"
    if response_format not in RESPONSE_FORMATS:
        raise TranscriptionRequestInvalid(
            "response_format must be one of: json, text, srt, vtt, verbose_json"
        )
    stream = _flag(fields.get("stream", ""))
    if stream and response_format not in STREAMABLE_FORMATS:
        raise TranscriptionRequestInvalid("stream=true needs response_format json or text")
    if fields.get("language", "").lower() not in _ENGLISH:
        raise TranscriptionRequestInvalid("only English (language 'en') is supported")
    _check_temperature(fields.get("temperature", "0"))
    granularities = set(form.getlist("timestamp_granularities[]"))
    if not granularities <= {"word", "segment"}:
        raise TranscriptionRequestInvalid("timestamp_granularities[] must be word or segment")
    if granularities and response_format != "verbose_json":
        raise TranscriptionRequestInvalid("timestamp_granularities[] needs verbose_json")
    audio = parse_wav(await upload.read())
    if audio.duration < MIN_AUDIO_SECONDS:
        raise AudioInvalid(f"the audio is shorter than {MIN_AUDIO_SECONDS} s")
    return TranscriptionRequest(audio, response_format, stream, "word" in granularities)


def _flag(value: str) -> bool:
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise TranscriptionRequestInvalid("stream must be true or false")


def _check_temperature(value: str) -> None:
    try:
        temperature = float(value)
    except ValueError:
        temperature = -1.0
    if not 0.0 <= temperature <= 1.0:
        raise TranscriptionRequestInvalid("temperature must be a number from 0 to 1")


async def _events(recogniser: Recogniser, spans: list[Span], pace: float) -> AsyncIterator[bytes]:
    segments: list[Segment] = []
    for span in spans:
        try:
            segment = await recogniser.recognise(span)
        except GatewayError as error:  # the 200 is sent: report in-band, as OpenAI does
            yield sse({"type": "error", **error_body(error.message, error.status)})
            return
        previous = segment.start
        for end, delta in deltas(segment, first=not transcript_text(segments)):
            await asyncio.sleep(max(0.0, end - previous) * pace)
            previous = end
            yield delta_event(delta)
        segments.append(segment)
    yield done_event(transcript_text(segments))


# --- running it ---------------------------------------------------------------------------


@dataclass(frozen=True)
class RunningBackend:
    """A backend accepting connections at ``url`` (no trailing slash).

    ``recogniser`` is the in-process backend's (``None`` for a :class:`BackendProcess`).
    """

    host: str
    port: int
    recogniser: Recogniser | None = field(default=None, compare=False, repr=False)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"


class _EmbeddedServer(uvicorn.Server):
    # uvicorn would take over SIGINT/SIGTERM and re-raise them after shutdown; the embedding
    # program owns its signals.
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


@contextlib.asynccontextmanager
async def serve_backend(settings: BackendSettings) -> AsyncIterator[RunningBackend]:
    """Run the backend in this event loop until the block exits; ``port=0`` picks a free port."""
    sock = bind_tcp(settings.host, settings.port)
    with sock:
        recogniser = Recogniser(settings.phrases, settings.workers)
        await recogniser.start()
        try:
            app = create_app(recogniser, settings)
            config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
            server = _EmbeddedServer(config)
            task = asyncio.create_task(server.serve(sockets=[sock]))
            try:
                while not server.started:
                    if task.done():
                        await task
                        raise ConfigError("the backend's HTTP server did not start")
                    await asyncio.sleep(0.01)
                yield RunningBackend(settings.host, sock.getsockname()[1], recogniser)
            finally:
                server.should_exit = True
                await task
        finally:
            await recogniser.close()


class BackendProcess:
    """The backend as a child process (``python -m gateway.demo.backend``); a context manager.

    Blocks until the child prints its URL (the recogniser loaded, the socket bound), and stops
    it with SIGTERM, then SIGKILL after ``stop_timeout`` seconds.
    """

    def __init__(self, settings: BackendSettings, stop_timeout: float = 10.0) -> None:
        self.settings = settings
        self.stop_timeout = stop_timeout
        self._process: subprocess.Popen[str] | None = None
        self.backend: RunningBackend | None = None

    def __enter__(self) -> RunningBackend:
        command = [sys.executable, "-m", "gateway.demo.backend", *_arguments(self.settings)]
        # The child imports the same gateway package as this process, wherever it runs from.
        root = str(Path(__file__).resolve().parents[2])
        path = os.pathsep.join(filter(None, (root, os.environ.get("PYTHONPATH"))))
        self._process = subprocess.Popen(  # noqa: S603  # our own module, fixed arguments
            command, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": path}
        )
        stdout = self._process.stdout
        ready = stdout is not None and select.select([stdout], [], [], _STARTUP_TIMEOUT_SECONDS)[0]
        line = stdout.readline() if stdout is not None and ready else ""
        if not line.startswith("listening on "):
            self.stop()
            raise ConfigError("the backend process did not start")
        port = int(line.rsplit(":", 1)[1])
        self.backend = RunningBackend(self.settings.host, port)
        return self.backend

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def stop(self) -> int | None:
        """Stop the child (if running) and return its exit status."""
        process, self._process = self._process, None
        if process is None:
            return None
        process.terminate()
        try:
            status = process.wait(self.stop_timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            status = process.wait()
        if process.stdout is not None:
            process.stdout.close()
        return status


def _arguments(settings: BackendSettings) -> list[str]:
    arguments = ["--host", settings.host, "--port", str(settings.port)]
    arguments += ["--workers", str(settings.workers), "--stream-pace", str(settings.stream_pace)]
    arguments += ["--max-upload-bytes", str(settings.max_upload_bytes)]
    for phrase in settings.phrases or ():
        arguments += ["--phrase", phrase]
    return arguments


# --- command line -------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port; 0 picks a free one")
    parser.add_argument(
        "--phrase",
        action="append",
        metavar="TEXT",
        help="phrase-list mode: recognise only these phrases (repeatable)",
    )
    parser.add_argument(
        "--phrases",
        type=Path,
        metavar="FILE",
        help="phrase-list mode: one phrase per line ('#' starts a comment line)",
    )
    parser.add_argument("--workers", type=int, default=1, help="recogniser processes")
    parser.add_argument(
        "--stream-pace",
        type=float,
        default=BackendSettings.stream_pace,
        help="streaming: seconds of delay per second of audio between word deltas",
    )
    parser.add_argument("--max-upload-bytes", type=int, default=MAX_UPLOAD_BYTES)


def settings_from(args: argparse.Namespace) -> BackendSettings:
    phrases = list(args.phrase or ())
    if args.phrases is not None:
        try:
            lines = args.phrases.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as error:
            raise ConfigError("the phrases file cannot be read as UTF-8 text") from error
        phrases += [line for line in lines if line.strip() and not line.lstrip().startswith("#")]
    if (args.phrase is not None or args.phrases is not None) and not phrases:
        raise ConfigError("the phrase list is empty")
    if not 0.0 <= args.stream_pace <= 10.0 or args.max_upload_bytes < 1:
        raise ConfigError("--stream-pace must be 0-10 and --max-upload-bytes positive")
    return BackendSettings(
        host=args.host,
        port=args.port,
        phrases=tuple(phrases) if phrases else None,
        workers=args.workers,
        max_upload_bytes=args.max_upload_bytes,
        stream_pace=args.stream_pace,
    )


def run(args: argparse.Namespace) -> int:
    asyncio.run(_serve_until_signalled(settings_from(args)))
    return 0


async def _serve_until_signalled(settings: BackendSettings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with serve_backend(settings) as backend:
        print(f"listening on {backend.url}", flush=True)
        await stop.wait()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m gateway.demo.backend", description=__doc__.splitlines()[0]
    )
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except GatewayError as error:
        print(f"demo backend: {error.message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
