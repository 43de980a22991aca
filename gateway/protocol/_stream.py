"""Incremental receivers: the buffering shared by the chunked-OHTTP and Azure-profile decoders.

Accepts byte slices of any size (one byte, or a whole 25 MiB body) and hands complete units to a
subclass's ``_consume``. Guarantees: input is copied at most once (only an incomplete tail is
kept between calls; a large slice is parsed in place), so the cost is linear in the stream; once a
call raised, every later call raises the same error type (a broken stream never resumes); after
``finish`` the receiver accepts nothing more. Never: buffers more than one unit plus one slice.
"""

from __future__ import annotations

from collections.abc import Callable

from gateway.errors import ConfigError, ContextReused, GatewayError
from gateway.protocol._hpke import Bytes

DEFAULT_MAX_CHUNK_SIZE = 1 << 20
"""Largest chunk plaintext a receiver accepts: bounds memory per stream. Senders use 16 KiB."""

MIN_MAX_CHUNK_SIZE = 1 << 14
"""Receivers MUST accept 16384-byte chunks (draft-ietf-ohai-chunked-ohttp-08 §5)."""


def check_max_chunk_size(max_chunk_size: int) -> int:
    """``max_chunk_size`` if it is a legal receiver limit, else ConfigError."""
    if max_chunk_size < MIN_MAX_CHUNK_SIZE:
        raise ConfigError("max chunk size below 16384 bytes")
    return max_chunk_size


class StreamReceiver:
    """Base of the incremental decoders. Subclasses implement :meth:`_consume` and :meth:`_end`."""

    def __init__(self) -> None:
        self._pending = bytearray()
        self._failure: type[GatewayError] | None = None
        self._closed = False

    def feed(self, data: Bytes) -> list[bytes]:
        """Plaintext units completed by ``data``, in order."""
        self._check_open()
        out: list[bytes] = []
        try:
            if self._pending:
                self._pending += data
                with memoryview(self._pending) as view:
                    consumed = self._consume(view, out)
                del self._pending[:consumed]
            else:
                with memoryview(data) as view:
                    consumed = self._consume(view, out)
                    self._pending += view[consumed:]
        except GatewayError as error:
            self._failure = type(error)
            raise
        return out

    def finish(self) -> list[bytes]:
        """End of input: the last plaintext units, or the error for an incomplete stream."""
        self._check_open()
        self._closed = True
        try:
            with memoryview(self._pending) as view:
                return self._end(view)
        except GatewayError as error:
            self._failure = type(error)
            raise

    def _check_open(self) -> None:
        if self._failure is not None:
            raise self._failure()
        if self._closed:
            raise ContextReused("stream already finished")

    def _consume(self, view: memoryview, out: list[bytes]) -> int:
        """Parse complete units from ``view``, append their plaintexts; return bytes consumed."""
        raise NotImplementedError

    def _end(self, rest: memoryview) -> list[bytes]:
        """Handle end of input with ``rest`` unconsumed; raise if the stream is incomplete."""
        raise NotImplementedError


class StreamSender:
    """Base of the chunk writers: prefix once, non-final chunks, one final chunk.

    Subclasses implement :meth:`_seal` (the AEAD) and pass ``frame(length, final)``, which returns
    the bytes that precede a sealed chunk of ``length`` bytes. Inputs larger than ``chunk_size``
    are split; empty non-final input emits no chunk. Each output is joined once (no re-copying).
    """

    def __init__(self, prefix: bytes, chunk_size: int, frame: Callable[[int, bool], bytes]) -> None:
        self._prefix: bytes | None = prefix
        self._chunk_size = chunk_size
        self._frame = frame
        self._finished = False

    def start(self) -> bytes:
        """The stream's prefix. Optional: otherwise it is sent with the first output."""
        if self._prefix is None:
            raise ContextReused("stream already started")
        return self._take_prefix()

    def encapsulate_chunk(self, data: Bytes) -> bytes:
        """Non-final chunks for ``data`` (nothing but a pending prefix for empty ``data``)."""
        return b"".join(self._chunks(memoryview(data), final=False))

    def finish(self, data: Bytes = b"") -> bytes:
        """The final chunk (AAD "final") carrying the tail of ``data``; once."""
        return b"".join(self._chunks(memoryview(data), final=True))

    def _chunks(self, view: memoryview, final: bool) -> list[bytes]:
        if self._finished:
            raise ContextReused("stream already finished")
        parts = [self._take_prefix()]
        size = self._chunk_size
        last = max(0, len(view) - size) if final else len(view)
        for start in range(0, last, size):
            sealed = self._seal(view[start : min(start + size, last)], b"")
            parts += (self._frame(len(sealed), False), sealed)
        if final:
            self._finished = True
            sealed = self._seal(view[last:], FINAL_AAD)
            parts += (self._frame(len(sealed), True), sealed)
        return parts

    def _take_prefix(self) -> bytes:
        prefix, self._prefix = self._prefix or b"", None
        return prefix

    def _seal(self, data: memoryview, aad: bytes) -> bytes:
        raise NotImplementedError


FINAL_AAD = b"final"
"""AAD of the final chunk, in the chunked draft and in the Azure profile alike."""
