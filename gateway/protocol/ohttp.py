"""Oblivious HTTP message encapsulation (RFC 9458 §4), gateway and client sides.

Accepts: an Encapsulated Request ``hdr ‖ enc ‖ ct`` and a :class:`KeyRing` (gateway), or a
:class:`KeyConfig` and suite (client). The payload is opaque bytes (normally Binary HTTP).

Guarantees (gateway side, checked in this order):

* a header shorter than 7 bytes or naming an unknown KEM/KDF/AEAD → :class:`MalformedRequestHeader`;
  Export-only (0xFFFF) → :class:`SuiteNotAllowed`;
* key id not in the ring → :class:`UnknownKeyId`; KEM not the key's, or (KDF, AEAD) not listed
  for that key → :class:`SuiteNotAllowed`;
* ``enc`` shorter than Nenc → :class:`MalformedRequestHeader`; any HPKE failure (bad point,
  failed tag) → :class:`DecryptionFailed`;
* the response context encapsulates exactly once (:class:`ContextReused` after that), and so does
  the client's response context.

Randomness (the client's ephemeral key, the gateway's response nonce) comes from the OS. The
keyword-only ``_ephemeral_private_key`` and ``_response_nonce`` arguments exist for the RFC test
vectors only: never pass them in production code.

Never: plaintext or key material in errors or reprs. Large bodies are passed to the AEAD as
memoryviews, not copied.
"""

from __future__ import annotations

import functools
import struct
from dataclasses import dataclass
from typing import NamedTuple, cast

from gateway.errors import (
    ConfigError,
    ContextReused,
    DecryptionFailed,
    KeyConfigError,
    MalformedRequestHeader,
    ResponseDecryptionFailed,
    SuiteNotAllowed,
)
from gateway.protocol._dh import diffie_hellman
from gateway.protocol._hpke import (
    AEAD_TAG_LENGTH,
    EXPORT_ONLY_AEAD,
    AeadId,
    Bytes,
    Exporter,
    HpkeContext,
    HpkeOpener,
    KdfId,
    KemId,
    ResponseKeys,
    Suite,
    aead_id_of,
    deserialize_public_key,
    ephemeral_key_pair,
    guarded,
    kdf_id_of,
    kem_id_of,
    random_nonce,
    response_keys,
    suite,
)
from gateway.protocol._recipient import setup_base_recipient
from gateway.protocol.keys import GatewayKey, KeyConfig, KeyRing, SymmetricSuite

REQUEST_LABEL = b"message/bhttp request"
RESPONSE_LABEL = b"message/bhttp response"

_HEADER = struct.Struct(">BHHH")


@dataclass(frozen=True)
class RequestHeader:
    """The 7-byte header of an Encapsulated Request: key id, KEM, KDF, AEAD."""

    key_id: int
    kem_id: KemId
    kdf_id: KdfId
    aead_id: AeadId

    SIZE = _HEADER.size

    def encode(self) -> bytes:
        return _HEADER.pack(self.key_id, self.kem_id, self.kdf_id, self.aead_id)

    def info(self, label: bytes) -> bytes:
        """HPKE info: ``label ‖ 0x00 ‖ hdr`` (RFC 9458 §4.3)."""
        return label + b"\x00" + self.encode()

    @classmethod
    def decode(cls, data: Bytes) -> RequestHeader:
        """The header at the start of ``data``."""
        if len(data) < cls.SIZE:
            raise MalformedRequestHeader("request header truncated")
        return _decode_header(bytes(data[: cls.SIZE]))


@functools.lru_cache(maxsize=256)
def _decode_header(raw: bytes) -> RequestHeader:
    # Cached: a gateway sees the same few headers over and over; errors are never cached.
    key_id, kem_raw, kdf_raw, aead_raw = _HEADER.unpack(raw)
    if aead_raw == EXPORT_ONLY_AEAD:
        raise SuiteNotAllowed("export-only AEAD cannot encapsulate requests")
    kem_id, kdf_id, aead_id = kem_id_of(kem_raw), kdf_id_of(kdf_raw), aead_id_of(aead_raw)
    if kem_id is None or kdf_id is None or aead_id is None:
        raise MalformedRequestHeader("unknown HPKE algorithm")
    return RequestHeader(key_id, kem_id, kdf_id, aead_id)


@functools.lru_cache(maxsize=256)
def _info(header: RequestHeader, label: bytes) -> bytes:
    return header.info(label)


@functools.lru_cache(maxsize=256)
def _plan(raw: bytes, label: bytes) -> tuple[RequestHeader, Suite, bytes]:
    """Header, suite and HPKE info for 7 header bytes, keyed by the bytes (cheap to hash)."""
    header = _decode_header(raw)
    return header, suite(header.kem_id, header.kdf_id, header.aead_id), _info(header, label)


class HpkeSetup(NamedTuple):
    """One side's HPKE state for a request: its header, ``enc`` and the HPKE context."""

    header: RequestHeader
    enc: bytes
    suite: Suite
    context: HpkeOpener

    def __repr__(self) -> str:
        return f"HpkeSetup(key_id={self.header.key_id})"

    @property
    def sealer(self) -> HpkeContext:
        """The sender's context (only :func:`setup_sender` builds one that seals)."""
        return cast(HpkeContext, self.context)


class Agreement(NamedTuple):
    """DH(skR, pkE) for one request's ``enc``, computed ahead of its decapsulation (elsewhere)."""

    enc: bytes
    dh: bytes

    def __repr__(self) -> str:
        return "Agreement(<redacted>)"


class AgreementInput(NamedTuple):
    """What the key agreement of a request needs: the gateway key its header names, and ``enc``."""

    key: GatewayKey
    enc: bytes

    def agree(self) -> Agreement:
        """The agreement, computed here (:func:`diffie_hellman`; DecryptionFailed for a bad
        ``enc``)."""
        return Agreement(
            self.enc, diffie_hellman(self.key.kem_id, self.enc, self.key.private_key.raw)
        )

    def __repr__(self) -> str:
        return f"AgreementInput(key_id={self.key.key_id})"


class _Prefix(NamedTuple):
    header: RequestHeader
    suite: Suite
    info: bytes
    key: GatewayKey
    enc: bytes
    end: int  # the offset after enc


def _read_prefix(key_ring: KeyRing, data: Bytes, label: bytes) -> _Prefix | None:
    if len(data) < RequestHeader.SIZE:
        return None
    header, chosen, info = _plan(bytes(data[: RequestHeader.SIZE]), label)
    key = key_ring.get(header.key_id)
    if header.kem_id is not key.kem_id or not key.allows(header.kdf_id, header.aead_id):
        raise SuiteNotAllowed()
    end = RequestHeader.SIZE + chosen.n_enc
    if len(data) < end:
        return None
    return _Prefix(header, chosen, info, key, bytes(data[RequestHeader.SIZE : end]), end)


def agreement_input(key_ring: KeyRing, data: Bytes, label: bytes) -> AgreementInput | None:
    """The key and ``enc`` that the request starting with ``data`` agrees on, or None while
    ``data`` is too short. Header and key errors as documented above."""
    prefix = _read_prefix(key_ring, data, label)
    return None if prefix is None else AgreementInput(prefix.key, prefix.enc)


def parse_prefix(
    key_ring: KeyRing, data: Bytes, label: bytes, agreed: Agreement | None = None
) -> tuple[HpkeSetup, int] | None:
    """Read ``hdr ‖ enc`` and run SetupBaseR(enc, skR, info): the recipient setup and the offset
    after ``enc``, or None while ``data`` is too short. Header and key errors as documented above;
    DecryptionFailed if ``enc`` is unusable. ``agreed``, if given, is this request's key
    agreement, computed elsewhere; ConfigError if it was computed for another ``enc``."""
    prefix = _read_prefix(key_ring, data, label)
    if prefix is None:
        return None
    header, chosen, info, key, enc, end = prefix
    dh = None
    if agreed is not None:
        if agreed.enc != enc:
            raise ConfigError("key agreement computed for another request")
        dh = agreed.dh
    context = setup_base_recipient(
        chosen, enc, key.private_key.raw, key.config.public_key, info, dh
    )
    return HpkeSetup(header, enc, chosen, context), end


def decapsulate_request(
    key_ring: KeyRing, encapsulated_request: Bytes, agreed: Agreement | None = None
) -> tuple[bytes, ServerResponseContext]:
    """The request plaintext and the one-shot context for its response. ``agreed``: as for
    :func:`parse_prefix`."""
    parsed = parse_prefix(key_ring, encapsulated_request, REQUEST_LABEL, agreed)
    if parsed is None:
        RequestHeader.decode(encapsulated_request)  # the header's own error, if it has one
        raise MalformedRequestHeader("encapsulated key truncated")
    setup, offset = parsed
    ciphertext = memoryview(encapsulated_request)[offset:]
    if len(ciphertext) < AEAD_TAG_LENGTH:
        raise DecryptionFailed()
    context = setup.context
    request = guarded(DecryptionFailed, lambda: context.open(ciphertext, b""))
    return request, ServerResponseContext(setup)


class _ResponseContext:
    """The one-shot state both sides keep for the response to one request."""

    __slots__ = ("_setup", "_used")

    def __init__(self, setup: HpkeSetup) -> None:
        self._setup = setup
        self._used = False

    @property
    def enc(self) -> bytes:
        """The request's encapsulated key: a high-entropy replay-cache key (RFC 9458 §6.5)."""
        return self._setup.enc

    @property
    def header(self) -> RequestHeader:
        return self._setup.header

    @property
    def suite(self) -> Suite:
        return self._setup.suite

    def exporter(self) -> Exporter:
        """The HPKE secret exporter, for response framings built on RFC 9458's key schedule."""
        return self._setup.context

    def claim(self) -> None:
        """Mark the context used: ContextReused if it already was."""
        if self._used:
            raise ContextReused()
        self._used = True

    def derive_response_keys(self, label: bytes, response_nonce: bytes) -> ResponseKeys:
        """The response keys of RFC 9458 §4.4 for ``label`` (callers claim the context first)."""
        return response_keys(
            self._setup.suite, self._setup.context, label, self.enc, response_nonce
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(key_id={self.header.key_id}, used={self._used})"


class ServerResponseContext(_ResponseContext):
    """What the gateway needs to encapsulate the one response to a request."""

    __slots__ = ()

    def start_response(
        self, label: bytes, _response_nonce: bytes | None = None
    ) -> tuple[bytes, ResponseKeys]:
        """A fresh response nonce and the keys it derives; consumes the context."""
        size = self._setup.suite.response_nonce_size
        nonce = random_nonce(size) if _response_nonce is None else _response_nonce
        if len(nonce) != size:
            raise ConfigError("test response nonce has the wrong length")
        self.claim()
        return nonce, self.derive_response_keys(label, nonce)

    def encapsulate_response(
        self, response: Bytes, *, _response_nonce: bytes | None = None
    ) -> memoryview:
        """``response_nonce ‖ Seal(key, nonce, "", response)``; once per context.

        Returned as a memoryview of a buffer the AEAD wrote in place, so a 25 MiB response is
        never copied (it compares equal to bytes; ``bytes()`` it if you need an immutable copy).
        ``_response_nonce`` is the test-vector seam: production code never passes it.
        """
        nonce, keys = self.start_response(RESPONSE_LABEL, _response_nonce)
        return keys.seal_next_after(nonce, response, b"")


def setup_sender(
    config: KeyConfig,
    symmetric: SymmetricSuite,
    label: bytes,
    ephemeral_private_key: bytes | None = None,
) -> HpkeSetup:
    """SetupBaseS(pkR, info) for ``config`` with one of its listed suites."""
    if not config.allows(symmetric.kdf_id, symmetric.aead_id):
        raise KeyConfigError("suite not listed in the key config")
    header = RequestHeader(config.key_id, config.kem_id, symmetric.kdf_id, symmetric.aead_id)
    chosen = suite(config.kem_id, symmetric.kdf_id, symmetric.aead_id)
    public_key = deserialize_public_key(config.kem_id, config.public_key, KeyConfigError)
    ephemeral = (
        None
        if ephemeral_private_key is None
        else ephemeral_key_pair(config.kem_id, ephemeral_private_key, KeyConfigError)
    )
    info = _info(header, label)
    enc, context = guarded(
        KeyConfigError,
        lambda: chosen.hpke.create_sender_context(public_key, info, eks=ephemeral),
    )
    return HpkeSetup(header, enc, chosen, cast(HpkeContext, context))


def encapsulate_request(
    config: KeyConfig,
    symmetric: SymmetricSuite,
    request: Bytes,
    *,
    _ephemeral_private_key: bytes | None = None,
) -> tuple[bytes, ClientResponseContext]:
    """``hdr ‖ enc ‖ Seal("", request)`` and the one-shot context for the response.

    ``_ephemeral_private_key`` (skE) is the test-vector seam: production code never passes it.
    """
    setup = setup_sender(config, symmetric, REQUEST_LABEL, _ephemeral_private_key)
    context = setup.sealer
    ciphertext = guarded(KeyConfigError, lambda: context.seal(request, b""))
    return setup.header.encode() + setup.enc + ciphertext, ClientResponseContext(setup)


class ClientResponseContext(_ResponseContext):
    """What the client needs to decapsulate the one response to its request."""

    __slots__ = ()

    def decapsulate_response(self, encapsulated_response: Bytes) -> bytes:
        """The response plaintext; ResponseDecryptionFailed if it does not open. Once."""
        self.claim()
        size = self._setup.suite.response_nonce_size
        view = memoryview(encapsulated_response)
        if len(view) < size + AEAD_TAG_LENGTH:
            raise ResponseDecryptionFailed()
        keys = self.derive_response_keys(RESPONSE_LABEL, bytes(view[:size]))
        return keys.open_next(view[size:], b"")
