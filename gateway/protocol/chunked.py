"""Chunked Oblivious HTTP (draft-ietf-ohai-chunked-ohttp-08), gateway and client sides.

Wire format (§5, §6)::

    request  = hdr ‖ enc ‖ { varint(len ≥ 1) ‖ Seal("", chunk) }*
               ‖ varint(0) ‖ Seal("final", last)
    response = response_nonce ‖ { varint(len ≥ 1) ‖ Seal_i("", chunk) }*
               ‖ varint(0) ‖ Seal_n("final", last)

with HPKE info ``"message/bhttp chunked request" ‖ 0x00 ‖ hdr``, the response key derived as in
RFC 9458 §4.4 from the exporter context ``"message/bhttp chunked response"``, and response chunk i
sealed with nonce ``aead_nonce XOR I2OSP(i, Nn)``. The final chunk runs to the end of the stream.

Accepts arbitrary byte slices on the receiving sides; emits each plaintext chunk as soon as it
opens. Guarantees:

* a message is complete only when a final chunk opened with AAD "final"; a stream that ends
  otherwise (including a final chunk that does not open) raises :class:`TruncatedStream`;
* an empty non-final chunk is a decryption error (:class:`DecryptionFailed` at the gateway,
  :class:`ResponseDecryptionFailed` at the client), as §5 requires;
* chunks up to ``max_chunk_size`` plaintext bytes are accepted (default 1 MiB, never below the
  16384 the draft requires); a larger length prefix raises :class:`ChunkedStreamError` before any of
  its bytes are buffered, so memory per stream stays bounded;
* senders never emit a chunk of more than :data:`MAX_CHUNK` plaintext bytes (larger inputs are
  split) and never an empty non-final chunk (empty input emits nothing);
* each response context is consumed once (:class:`ContextReused`).

The ``_ephemeral_private_key`` / ``_response_nonce`` keywords are test-vector seams only.
Never: plaintext or key material in errors or reprs.
"""

from __future__ import annotations

import enum

from gateway.errors import (
    ChunkedStreamError,
    ContextReused,
    DecryptionFailed,
    GatewayError,
    KeyConfigError,
    MalformedRequestHeader,
    ResponseDecryptionFailed,
    TruncatedStream,
)
from gateway.protocol._hpke import (
    AEAD_TAG_LENGTH,
    ResponseKeys,
    guarded,
)
from gateway.protocol._stream import (
    DEFAULT_MAX_CHUNK_SIZE,
    FINAL_AAD,
    StreamReceiver,
    StreamSender,
    check_max_chunk_size,
)
from gateway.protocol.keys import KeyConfig, KeyRing, SymmetricSuite
from gateway.protocol.ohttp import (
    Agreement,
    ClientResponseContext,
    HpkeSetup,
    RequestHeader,
    ServerResponseContext,
    parse_prefix,
    setup_sender,
)
from gateway.protocol.varint import decode_varint, encode_varint

__all__ = [
    "DEFAULT_MAX_CHUNK_SIZE",
    "MAX_CHUNK",
    "ChunkedRequestDecapsulator",
    "ChunkedRequestEncapsulator",
    "ChunkedResponseDecapsulator",
    "ChunkedResponseEncapsulator",
]

REQUEST_LABEL = b"message/bhttp chunked request"
RESPONSE_LABEL = b"message/bhttp chunked response"
MAX_CHUNK = 16384
"""Plaintext bytes per chunk that senders emit (the size every receiver must accept)."""

_FINAL_INDICATOR = encode_varint(0)


def _frame(length: int, final: bool) -> bytes:
    """A chunk's length prefix; the final chunk has only the 0 indicator (it runs to the end)."""
    return _FINAL_INDICATOR if final else encode_varint(length)


class _Phase(enum.Enum):
    PREFIX = enum.auto()  # header and enc, or the response nonce
    CHUNKS = enum.auto()  # length-prefixed non-final chunks
    FINAL = enum.auto()  # after the 0 indicator: the final chunk runs to end of stream


class _ChunkReceiver(StreamReceiver):
    """The varint chunk framing shared by both receiving sides."""

    _decryption_error: type[GatewayError]

    def __init__(self, max_chunk_size: int) -> None:
        super().__init__()
        self._max_ciphertext = check_max_chunk_size(max_chunk_size) + AEAD_TAG_LENGTH
        self._phase = _Phase.PREFIX
        self._final = bytearray()

    def _consume(self, view: memoryview, out: list[bytes]) -> int:
        pos = 0
        if self._phase is _Phase.PREFIX:
            consumed = self._read_prefix(view)
            if consumed is None:
                return 0
            pos, self._phase = consumed, _Phase.CHUNKS
        while self._phase is _Phase.CHUNKS:
            decoded = decode_varint(view, pos)
            if decoded is None:
                return pos
            length, start = decoded
            if length == 0:
                pos, self._phase = start, _Phase.FINAL
                break
            if length > self._max_ciphertext:
                raise ChunkedStreamError("chunk exceeds the size limit")
            if len(view) - start < length:
                return pos
            plaintext = self._open(view[start : start + length], b"")
            if not plaintext:
                raise self._decryption_error("empty non-final chunk")
            out.append(plaintext)
            pos = start + length
        if len(self._final) + len(view) - pos > self._max_ciphertext:
            raise ChunkedStreamError("chunk exceeds the size limit")
        self._final += view[pos:]
        return len(view)

    def _end(self, rest: memoryview) -> list[bytes]:
        if self._phase is not _Phase.FINAL:
            raise TruncatedStream()
        try:
            plaintext = self._open(memoryview(self._final), FINAL_AAD)
        except self._decryption_error as error:
            raise TruncatedStream() from error
        return [plaintext] if plaintext else []

    def _read_prefix(self, view: memoryview) -> int | None:
        """Consume the stream's prefix: its length, or None until enough bytes arrived."""
        raise NotImplementedError

    def _open(self, ciphertext: memoryview, aad: bytes) -> bytes:
        raise NotImplementedError


# --- gateway side ---------------------------------------------------------------------------


class ChunkedRequestDecapsulator(_ChunkReceiver):
    """Reads a chunked encapsulated request; header errors as in ``ohttp.decapsulate_request``."""

    _decryption_error = DecryptionFailed

    def __init__(self, key_ring: KeyRing, *, max_chunk_size: int = DEFAULT_MAX_CHUNK_SIZE) -> None:
        super().__init__(max_chunk_size)
        self._key_ring = key_ring
        self._agreed: Agreement | None = None
        self._setup: HpkeSetup | None = None
        self._done = False
        self._response_context: ServerResponseContext | None = None

    def use_agreement(self, agreed: Agreement) -> None:
        """Set up with ``agreed``, the key agreement computed elsewhere for this stream's ``enc``
        (from :func:`ohttp.agreement_input` over its first bytes), before feeding them."""
        self._agreed = agreed

    def _read_prefix(self, view: memoryview) -> int | None:
        parsed = parse_prefix(self._key_ring, view, REQUEST_LABEL, self._agreed)
        if parsed is None:
            return None
        self._setup, end = parsed
        self._agreed = None
        self._response_context = ServerResponseContext(self._setup)
        return end

    def _open(self, ciphertext: memoryview, aad: bytes) -> bytes:
        context = self._recipient.context
        opened = guarded(DecryptionFailed, lambda: context.open(ciphertext, aad))
        return opened

    def _end(self, rest: memoryview) -> list[bytes]:
        chunks = super()._end(rest)
        self._done = True
        return chunks

    @property
    def _recipient(self) -> HpkeSetup:
        if self._setup is None:  # pragma: no cover - chunks are only read after the prefix
            raise MalformedRequestHeader()
        return self._setup

    @property
    def done(self) -> bool:
        """Whether the final chunk opened: the request is complete and authentic."""
        return self._done

    @property
    def header(self) -> RequestHeader | None:
        """The request header, once read."""
        return None if self._setup is None else self._setup.header

    @property
    def enc(self) -> bytes | None:
        """The encapsulated key (the replay-cache key), once read."""
        return None if self._setup is None else self._setup.enc

    def response_encapsulator(
        self, *, _response_nonce: bytes | None = None
    ) -> ChunkedResponseEncapsulator:
        """The encapsulator for this request's response; once, and only after the header."""
        if self._response_context is None:
            raise ContextReused("request header not yet received")
        return ChunkedResponseEncapsulator(self._response_context, _response_nonce=_response_nonce)

    def __repr__(self) -> str:
        return f"ChunkedRequestDecapsulator(phase={self._phase.name}, done={self._done})"


class ChunkedResponseEncapsulator(StreamSender):
    """Writes a chunked encapsulated response; consumes a :class:`ServerResponseContext`."""

    def __init__(
        self, context: ServerResponseContext, *, _response_nonce: bytes | None = None
    ) -> None:
        nonce, self._keys = context.start_response(RESPONSE_LABEL, _response_nonce)
        super().__init__(nonce, MAX_CHUNK, _frame)

    def _seal(self, data: memoryview, aad: bytes) -> bytes:
        return self._keys.seal_next(data, aad)

    def __repr__(self) -> str:
        return f"ChunkedResponseEncapsulator(finished={self._finished})"


# --- client side ----------------------------------------------------------------------------


class ChunkedRequestEncapsulator(StreamSender):
    """Writes a chunked encapsulated request to ``config`` with one of its listed suites."""

    def __init__(
        self,
        config: KeyConfig,
        suite: SymmetricSuite,
        *,
        _ephemeral_private_key: bytes | None = None,
    ) -> None:
        self._setup = setup_sender(config, suite, REQUEST_LABEL, _ephemeral_private_key)
        self._response_context: ClientResponseContext | None = ClientResponseContext(self._setup)
        super().__init__(self._setup.header.encode() + self._setup.enc, MAX_CHUNK, _frame)

    def _seal(self, data: memoryview, aad: bytes) -> bytes:
        context = self._setup.sealer
        sealed = guarded(KeyConfigError, lambda: context.seal(data, aad))
        return sealed

    def response_decapsulator(
        self, *, max_chunk_size: int = DEFAULT_MAX_CHUNK_SIZE
    ) -> ChunkedResponseDecapsulator:
        """The decapsulator for the response to this request; once."""
        if self._response_context is None:
            raise ContextReused()
        context, self._response_context = self._response_context, None
        return ChunkedResponseDecapsulator(context, max_chunk_size=max_chunk_size)

    def __repr__(self) -> str:
        return f"ChunkedRequestEncapsulator(key_id={self._setup.header.key_id})"


class ChunkedResponseDecapsulator(_ChunkReceiver):
    """Reads a chunked encapsulated response; consumes a :class:`ClientResponseContext`."""

    _decryption_error = ResponseDecryptionFailed

    def __init__(
        self, context: ClientResponseContext, *, max_chunk_size: int = DEFAULT_MAX_CHUNK_SIZE
    ) -> None:
        super().__init__(max_chunk_size)
        context.claim()
        self._context = context
        self._keys: ResponseKeys | None = None

    def _read_prefix(self, view: memoryview) -> int | None:
        size = self._context.suite.response_nonce_size
        if len(view) < size:
            return None
        self._keys = self._context.derive_response_keys(RESPONSE_LABEL, bytes(view[:size]))
        return size

    def _open(self, ciphertext: memoryview, aad: bytes) -> bytes:
        if self._keys is None:  # pragma: no cover - chunks are only read after the prefix
            raise ResponseDecryptionFailed()
        return self._keys.open_next(ciphertext, aad)

    def __repr__(self) -> str:
        return f"ChunkedResponseDecapsulator(phase={self._phase.name})"
