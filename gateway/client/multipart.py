"""A ``multipart/form-data`` transcription request streamed from disk (RFC 7578).

Accepts form fields (name → text) and one audio file path. :class:`FileForm` knows its exact
``Content-Length`` before reading the file, and :meth:`FileForm.chunks` yields the body in pieces
of at most ``PIECE`` bytes, reading the file as it goes: memory stays bounded whatever the file
size, and each call starts over (so a request can be retried). ``progress`` is called with the
bytes of the file sent so far. Never does: hold the file in memory, or put a field value in an
error.
"""

from __future__ import annotations

import mimetypes
import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

from gateway.errors import ConfigError

PIECE = 64 * 1024


def _quoted(value: str) -> bytes:
    if any(c in value for c in '"\r\n'):
        raise ConfigError("form field names and file names cannot hold quotes or newlines")
    return value.encode()


@dataclass
class FileForm:
    path: Path
    fields: dict[str, str]
    file_field: str = "file"
    boundary: bytes = field(default_factory=lambda: secrets.token_hex(16).encode())
    progress: Callable[[int], None] | None = None

    def __post_init__(self) -> None:
        try:
            self.size = self.path.stat().st_size
        except OSError as error:
            raise ConfigError("the audio file cannot be read") from error
        media = mimetypes.guess_type(self.path.name)[0] or "application/octet-stream"
        parts = [self._part(name, value.encode()) for name, value in self.fields.items()]
        self._preamble = b"".join(parts) + (
            b"--"
            + self.boundary
            + b'\r\ncontent-disposition: form-data; name="'
            + _quoted(self.file_field)
            + b'"; filename="'
            + _quoted(self.path.name)
            + b'"\r\ncontent-type: '
            + media.encode()
            + b"\r\n\r\n"
        )
        self._epilogue = b"\r\n--" + self.boundary + b"--\r\n"

    def _part(self, name: str, value: bytes) -> bytes:
        return (
            b"--"
            + self.boundary
            + b'\r\ncontent-disposition: form-data; name="'
            + _quoted(name)
            + b'"\r\n\r\n'
            + value
            + b"\r\n"
        )

    @property
    def content_type(self) -> bytes:
        return b"multipart/form-data; boundary=" + self.boundary

    @property
    def content_length(self) -> int:
        return len(self._preamble) + self.size + len(self._epilogue)

    async def chunks(self) -> AsyncIterator[bytes]:
        yield self._preamble
        sent = 0
        try:
            with self.path.open("rb") as audio:
                while piece := audio.read(PIECE):
                    sent += len(piece)
                    if self.progress is not None:
                        self.progress(sent)
                    yield piece
        except OSError as error:
            raise ConfigError("the audio file cannot be read") from error
        if sent != self.size:
            raise ConfigError("the audio file changed while it was sent")
        yield self._epilogue
