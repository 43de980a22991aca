"""The response framing of Microsoft's attested-ohttp (Confidential Whisper), both sides.

A separate profile: it never changes the standard RFC 9458 or chunked-OHTTP paths. The request is a
plain RFC 9458 Encapsulated Request (``ohttp.decapsulate_request``), carrying known-length BHTTP.
The response body is the raw upstream body (not BHTTP), framed as microsoft/ohttp's
``encapsulate_stream`` does::

    response_nonce (max(Nn, Nk) bytes: 32 for AES-256-GCM, 16 for AES-128-GCM)
    { LEB128(len ≥ 1) ‖ Seal_i("", chunk) }*
    0x00 ‖ LEB128(len) ‖ Seal_n("final", last)

The key and base nonce are derived exactly as for an RFC 9458 response (exporter context
``"message/bhttp response"``, salt ``enc ‖ response_nonce``, HKDF labels "key" and "nonce"). Chunk
i (the final one included) is sealed with ``aead_nonce XOR i`` (big-endian counter from 0).

Guarantees: the encapsulator consumes its :class:`ServerResponseContext` (once), turns each input
into one chunk (split only above :data:`AZURE_CHUNK`, 1 MiB), and never emits an empty non-final
chunk. The decapsulator accepts arbitrary
slices; framing faults (a zero-length non-final chunk, an over-long LEB128, a chunk above
``max_chunk_size``, bytes after the final chunk, a stream ending before the final chunk) raise
:class:`AzureFramingError`, authentication failures :class:`ResponseDecryptionFailed`.

``_response_nonce`` is a test-vector seam only. Never: plaintext or key material in errors or reprs.
"""

from __future__ import annotations

import enum

from gateway.errors import AzureFramingError, ProtocolError, ResponseDecryptionFailed
from gateway.protocol._hpke import (
    AEAD_TAG_LENGTH,
    ResponseKeys,
)
from gateway.protocol._stream import (
    DEFAULT_MAX_CHUNK_SIZE,
    FINAL_AAD,
    StreamReceiver,
    StreamSender,
    check_max_chunk_size,
)
from gateway.protocol.ohttp import RESPONSE_LABEL, ClientResponseContext, ServerResponseContext
from gateway.protocol.varint import decode_leb128, encode_leb128

__all__ = ["AZURE_CHUNK", "AzureResponseDecapsulator", "AzureResponseEncapsulator"]

AZURE_CHUNK = DEFAULT_MAX_CHUNK_SIZE
"""Plaintext bytes per chunk the encapsulator emits at most: each input becomes one chunk below
this. Microsoft's client (``decapsulate_stream``) opens at most one chunk per network read, so
splitting an upstream read into several chunks would strand the rest in its buffer; the server
should also send each returned chunk as its own body write."""

_FINAL_MARKER = b"\x00"


def _frame(length: int, final: bool) -> bytes:
    """LEB128(length), after the 0x00 marker for the final chunk."""
    return _FINAL_MARKER + encode_leb128(length) if final else encode_leb128(length)


class AzureResponseEncapsulator(StreamSender):
    """Writes an Azure-profile response; consumes the request's :class:`ServerResponseContext`."""

    def __init__(
        self, context: ServerResponseContext, *, _response_nonce: bytes | None = None
    ) -> None:
        nonce, self._keys = context.start_response(RESPONSE_LABEL, _response_nonce)
        super().__init__(nonce, AZURE_CHUNK, _frame)

    def _seal(self, data: memoryview, aad: bytes) -> bytes:
        return self._keys.seal_next(data, aad)

    def __repr__(self) -> str:
        return f"AzureResponseEncapsulator(finished={self._finished})"


class _Phase(enum.Enum):
    NONCE = enum.auto()
    CHUNKS = enum.auto()
    DONE = enum.auto()


class AzureResponseDecapsulator(StreamReceiver):
    """Reads an Azure-profile response; consumes the request's :class:`ClientResponseContext`."""

    def __init__(
        self, context: ClientResponseContext, *, max_chunk_size: int = DEFAULT_MAX_CHUNK_SIZE
    ) -> None:
        super().__init__()
        context.claim()
        self._context = context
        self._max_ciphertext = check_max_chunk_size(max_chunk_size) + AEAD_TAG_LENGTH
        self._phase = _Phase.NONCE
        self._keys: ResponseKeys | None = None

    @property
    def done(self) -> bool:
        """Whether the final chunk opened."""
        return self._phase is _Phase.DONE

    def _consume(self, view: memoryview, out: list[bytes]) -> int:
        pos = 0
        if self._phase is _Phase.NONCE:
            size = self._context.suite.response_nonce_size
            if len(view) < size:
                return 0
            self._keys = self._context.derive_response_keys(RESPONSE_LABEL, bytes(view[:size]))
            pos, self._phase = size, _Phase.CHUNKS
        while self._phase is _Phase.CHUNKS and pos < len(view):
            final = view[pos] == 0
            decoded = self._read_length(view, pos + 1 if final else pos)
            if decoded is None:
                return pos
            length, start = decoded
            if len(view) - start < length:
                return pos
            plaintext = self._open(view[start : start + length], FINAL_AAD if final else b"")
            if plaintext:
                out.append(plaintext)
            pos = start + length
            if final:
                self._phase = _Phase.DONE
        if pos < len(view):  # only reachable once DONE
            raise AzureFramingError("bytes after the final chunk")
        return pos

    def _read_length(self, view: memoryview, pos: int) -> tuple[int, int] | None:
        try:
            decoded = decode_leb128(view, pos)
        except ProtocolError as error:
            raise AzureFramingError("chunk length too long") from error
        if decoded is not None:
            if decoded[0] > self._max_ciphertext:
                raise AzureFramingError("chunk exceeds the size limit")
            if decoded[0] == 0:
                raise AzureFramingError("empty chunk")
        return decoded

    def _open(self, ciphertext: memoryview, aad: bytes) -> bytes:
        if self._keys is None:  # pragma: no cover - chunks are only read after the nonce
            raise ResponseDecryptionFailed()
        return self._keys.open_next(ciphertext, aad)

    def _end(self, rest: memoryview) -> list[bytes]:
        if self._phase is not _Phase.DONE:
            raise AzureFramingError("stream ended before the final chunk")
        return []

    def __repr__(self) -> str:
        return f"AzureResponseDecapsulator(phase={self._phase.name})"
