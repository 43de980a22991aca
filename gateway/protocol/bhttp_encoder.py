"""Binary HTTP (RFC 9292) encoding: whole messages, and streams of indeterminate length.

The encoders validate what they are given with the decoder's own rules
(:mod:`gateway.protocol.bhttp_rules`) and raise :class:`BhttpError` rather than emit a message we
would refuse; field names must already be lowercase. Output is canonical: minimal varints, every
section present (no §3.8 truncation), and in the indeterminate-length form, whole-message content
as one chunk. Padding is zero bytes appended after the message.
"""

from __future__ import annotations

from collections.abc import Iterable

from gateway.errors import BhttpError
from gateway.protocol.bhttp_model import (
    Field,
    Framing,
    InformationalResponse,
    Request,
    Response,
    framing_indicator,
)
from gateway.protocol.bhttp_rules import (
    check_control_data,
    check_field,
    check_final_status,
    check_informational_status,
)
from gateway.protocol.varint import encode_varint

_TERMINATOR = b"\x00"


def _prefixed(data: bytes) -> bytes:
    return encode_varint(len(data)) + data


def _field_lines(fields: Iterable[Field]) -> bytes:
    out = bytearray()
    for name, value in fields:
        check_field(name, value)
        out += _prefixed(name) + _prefixed(value)
    return bytes(out)


def encode_field_section(fields: Iterable[Field], framing: Framing) -> bytes:
    """A header or trailer section (RFC 9292 §3.6)."""
    lines = _field_lines(fields)
    if framing is Framing.KNOWN_LENGTH:
        return _prefixed(lines)
    return lines + _TERMINATOR


def _content(content: bytes, framing: Framing) -> bytes:
    if framing is Framing.KNOWN_LENGTH:
        return _prefixed(content)
    return (_prefixed(content) if content else b"") + _TERMINATOR


def encode_request_control_data(
    method: bytes, scheme: bytes, authority: bytes, path: bytes
) -> bytes:
    """Request control data (RFC 9292 §3.4)."""
    check_control_data(method, scheme, authority, path)
    return b"".join(_prefixed(part) for part in (method, scheme, authority, path))


def _informational(response: InformationalResponse, framing: Framing) -> bytes:
    check_informational_status(response.status)
    return encode_varint(response.status) + encode_field_section(response.headers, framing)


def encode_request(
    request: Request, framing: Framing = Framing.KNOWN_LENGTH, padding: int = 0
) -> bytes:
    """The whole ``request`` in ``framing``, followed by ``padding`` zero bytes."""
    return b"".join(
        (
            encode_varint(framing_indicator(False, framing)),
            encode_request_control_data(
                request.method, request.scheme, request.authority, request.path
            ),
            encode_field_section(request.headers, framing),
            _content(request.content, framing),
            encode_field_section(request.trailers, framing),
            _padding(padding),
        )
    )


def encode_response(
    response: Response, framing: Framing = Framing.KNOWN_LENGTH, padding: int = 0
) -> bytes:
    """The whole ``response`` in ``framing``, followed by ``padding`` zero bytes."""
    check_final_status(response.status)
    return b"".join(
        (
            encode_varint(framing_indicator(True, framing)),
            *(_informational(interim, framing) for interim in response.informational),
            encode_varint(response.status),
            encode_field_section(response.headers, framing),
            _content(response.content, framing),
            encode_field_section(response.trailers, framing),
            _padding(padding),
        )
    )


def _padding(length: int) -> bytes:
    if length < 0:
        raise BhttpError("negative padding")
    return bytes(length)


class _StreamEncoder:
    """Indeterminate-length output in order: head, then body pieces, then end (once each)."""

    def __init__(self) -> None:
        self._state = "head"

    def _advance(self, expected: str, following: str) -> None:
        if self._state != expected:
            raise BhttpError("message encoder used out of order")
        self._state = following

    def body(self, data: bytes) -> bytes:
        """One content chunk (nothing for empty ``data``: an empty chunk would end the content)."""
        self._advance("body", "body")
        return _prefixed(data) if data else b""

    def end(self, trailers: Iterable[Field] = (), padding: int = 0) -> bytes:
        """The content terminator, the trailer section and ``padding`` zero bytes."""
        encoded = _TERMINATOR + encode_field_section(trailers, Framing.INDETERMINATE_LENGTH)
        encoded += _padding(padding)
        self._advance("body", "done")
        return encoded


class RequestEncoder(_StreamEncoder):
    """Streams one indeterminate-length request."""

    def head(
        self, method: bytes, scheme: bytes, authority: bytes, path: bytes, headers: Iterable[Field]
    ) -> bytes:
        """Framing indicator, control data and header section."""
        encoded = b"".join(
            (
                encode_varint(framing_indicator(False, Framing.INDETERMINATE_LENGTH)),
                encode_request_control_data(method, scheme, authority, path),
                encode_field_section(headers, Framing.INDETERMINATE_LENGTH),
            )
        )
        self._advance("head", "body")
        return encoded


class ResponseEncoder(_StreamEncoder):
    """Streams one indeterminate-length response; informational responses may precede the head."""

    def __init__(self) -> None:
        super().__init__()
        self._started = False

    def _framing_indicator(self) -> bytes:
        if self._started:
            return b""
        self._started = True
        return encode_varint(framing_indicator(True, Framing.INDETERMINATE_LENGTH))

    def informational(self, status: int, headers: Iterable[Field] = ()) -> bytes:
        """One 1xx response, before :meth:`head`."""
        interim = InformationalResponse(status, tuple(headers))
        encoded = _informational(interim, Framing.INDETERMINATE_LENGTH)
        self._advance("head", "head")
        return self._framing_indicator() + encoded

    def head(self, status: int, headers: Iterable[Field] = ()) -> bytes:
        """The final status and header section."""
        check_final_status(status)
        section = encode_field_section(headers, Framing.INDETERMINATE_LENGTH)
        self._advance("head", "body")
        return self._framing_indicator() + encode_varint(status) + section
