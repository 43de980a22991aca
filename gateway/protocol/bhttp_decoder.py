"""Incremental Binary HTTP (RFC 9292) decoding: bytes in, events out.

:class:`RequestDecoder` and :class:`ResponseDecoder` accept the message in slices of any size, one
byte included, and emit events (:mod:`gateway.protocol.bhttp_model`) as soon as each part is
complete. Guarantees:

* content is never buffered whole: each slice's content bytes come out as a :class:`BodyChunk`
  at once, in both framings; only an incomplete length prefix, control data element or field line
  (each bounded by :class:`Limits`) waits in the buffer;
* every limit is checked as soon as the length that would exceed it is read, before the excess
  bytes are buffered (:class:`BhttpLimitError`);
* the same events come out for every slicing of the same input (content split aside);
* invalid input (RFC 9292 §4) raises :class:`BhttpError`, after which the decoder refuses use;
* :meth:`finish` marks the end of input and applies the truncation rules of RFC 9292 §3.8: a
  message may end before a header section, content or trailer section that would be empty (never
  inside one, never in an informational response); the missing parts are emitted as empty.

Work per slice is linear in its length: offsets into the buffer, no re-scanning, no quadratic
copies.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import ClassVar

from gateway.errors import BhttpError, BhttpLimitError
from gateway.protocol.bhttp_model import (
    FRAMING_INDICATORS,
    BodyChunk,
    Event,
    Field,
    Framing,
    InformationalHead,
    Limits,
    MessageEnd,
    RequestHead,
    ResponseHead,
    Trailers,
)
from gateway.protocol.bhttp_rules import (
    INFORMATIONAL_STATUSES,
    check_control_data,
    check_field,
    check_final_status,
)
from gateway.protocol.varint import decode_varint

Buffer = bytes | bytearray
_Step = Callable[[Buffer, int], int | None]


class _Section(enum.Enum):
    INFORMATIONAL = "informational"
    HEADERS = "headers"
    TRAILERS = "trailers"


def _take(buf: Buffer, start: int, end: int) -> bytes:
    """``buf[start:end]`` as bytes, copied once (not at all for a whole bytes object)."""
    if isinstance(buf, bytes):
        return buf[start:end]
    return bytes(memoryview(buf)[start:end])


class _MessageDecoder:
    """The state machine shared by requests and responses.

    ``self._step`` is the parser for what comes next. A step reads from ``buf`` at ``pos`` and
    returns the new position, or ``None`` (state unchanged) when it needs more bytes. Every step
    that returns a position either consumed bytes or moved to another step, so ``_run`` ends.
    """

    _is_response: ClassVar[bool]

    def __init__(self, limits: Limits = Limits()) -> None:  # noqa: B008 - frozen, shared safely
        self._limits = limits
        self._pending = bytearray()
        self._events: list[Event] = []
        self._step: _Step = self._read_framing
        self._framing = Framing.KNOWN_LENGTH
        self._framing_read = False
        self._failed = False
        self._finished = False
        self._section = _Section.HEADERS
        self._fields: list[Field] = []
        self._section_size = 0
        self._section_length = 0
        self._content_left = 0
        self._content_total = 0

    @property
    def framing(self) -> Framing | None:
        """The framing, once the framing indicator has been read."""
        return self._framing if self._framing_read else None

    @property
    def ended(self) -> bool:
        """Whether :class:`MessageEnd` has been emitted."""
        return self._step == self._read_padding

    def feed(self, data: bytes | bytearray | memoryview) -> list[Event]:
        """Decode the next slice; the events completed by it, in order."""
        self._check_usable()
        self._events = []
        try:
            if self._pending:
                self._pending += data
                del self._pending[: self._run(self._pending)]
            else:
                source = data if isinstance(data, bytes) else bytes(data)
                used = self._run(source)
                self._pending += memoryview(source)[used:]
        except BhttpError:
            self._failed = True
            raise
        return self._events

    def finish(self) -> list[Event]:
        """End of input: the events §3.8 truncation implies, or BhttpError if truncated badly."""
        self._check_usable()
        self._finished = True
        self._events = []
        if not self._at_valid_end():
            self._failed = True
            raise BhttpError("message truncated")
        if not self.ended:
            if self._in_section(_Section.HEADERS):
                self._emit_head(())  # the header section was truncated: it is empty
            self._events.append(MessageEnd())
        return self._events

    def _check_usable(self) -> None:
        if self._failed:
            raise BhttpError("message already found invalid")
        if self._finished:
            raise BhttpError("decoder already finished")

    def _run(self, buf: Buffer) -> int:
        pos = 0
        while (advanced := self._step(buf, pos)) is not None:
            pos = advanced
        return pos

    # --- §3.8 truncation ----------------------------------------------------------------------

    def _in_section(self, section: _Section) -> bool:
        in_a_section = self._step in (self._read_section_length, self._read_field_line_il)
        return in_a_section and self._section is section

    def _at_valid_end(self) -> bool:
        if self._pending:
            return False  # inside a length prefix or a field
        if self.ended:
            return True
        if self._in_section(_Section.HEADERS) or self._in_section(_Section.TRAILERS):
            return not self._fields  # §3.8: only an empty section may be cut
        if self._step == self._read_content_length:
            return True
        return self._step == self._read_chunk_length and self._content_total == 0

    # --- framing indicator and control data ---------------------------------------------------

    def _read_framing(self, buf: Buffer, pos: int) -> int | None:
        decoded = decode_varint(buf, pos)
        if decoded is None:
            return None
        entry = FRAMING_INDICATORS.get(decoded[0])
        if entry is None or entry[0] != self._is_response:
            raise BhttpError("invalid framing indicator")
        self._framing = entry[1]
        self._framing_read = True
        self._step = self._first_step()
        return decoded[1]

    def _first_step(self) -> _Step:
        raise NotImplementedError

    def _emit_head(self, headers: tuple[Field, ...]) -> None:
        raise NotImplementedError

    def _on_informational(self, headers: tuple[Field, ...]) -> None:
        raise NotImplementedError

    # --- field sections -------------------------------------------------------------------------

    def _begin_section(self, section: _Section) -> None:
        self._section = section
        self._fields = []
        self._section_size = 0
        if self._framing is Framing.KNOWN_LENGTH:
            self._step = self._read_section_length
        else:
            self._step = self._read_field_line_il

    def _read_section_length(self, buf: Buffer, pos: int) -> int | None:
        decoded = decode_varint(buf, pos)
        if decoded is None:
            return None
        length, start = decoded
        if length > self._limits.max_field_section_size:
            raise BhttpLimitError("field section exceeds the size limit")
        self._section_length = length
        self._step = self._read_section_kl
        return start

    def _read_section_kl(self, buf: Buffer, pos: int) -> int | None:
        end = pos + self._section_length
        if len(buf) < end:
            return None
        while pos < end:
            line_end = self._read_field_line(buf, pos, end)
            if line_end is None:
                raise BhttpError("field line overruns its section")
            pos = line_end
        self._complete_section()
        return end

    def _read_field_line_il(self, buf: Buffer, pos: int) -> int | None:
        decoded = decode_varint(buf, pos)
        if decoded is None:
            return None
        if decoded[0] == 0:
            self._complete_section()
            return decoded[1]
        return self._read_field_line(buf, pos, len(buf))

    def _read_field_line(self, buf: Buffer, pos: int, end: int) -> int | None:
        """One field line within ``buf[pos:end]``; ``None`` if it does not fit yet.

        Limits are checked on each length as it becomes readable, before waiting for the bytes.
        """
        if len(self._fields) >= self._limits.max_fields:
            raise BhttpLimitError("field section exceeds the field count limit")
        name = decode_varint(buf, pos)
        if name is None or name[1] > end:
            return None
        name_end = name[1] + name[0]
        if not self._fits(name_end - pos, name_end, end):
            return None
        value = decode_varint(buf, name_end) if name_end < end else None
        if value is None or value[1] > end:
            return None
        value_end = value[1] + value[0]
        if not self._fits(value_end - pos, value_end, end):
            return None
        field = (_take(buf, name[1], name_end), _take(buf, value[1], value_end))
        check_field(*field)
        self._fields.append(field)
        self._section_size += value_end - pos
        return value_end

    def _fits(self, line_size: int, stop: int, end: int) -> bool:
        """Whether ``buf[:stop]`` is within ``end``; for indeterminate length, first the limit.

        A known-length section was already checked against the limit as a whole.
        """
        indeterminate = self._framing is Framing.INDETERMINATE_LENGTH
        if indeterminate and self._section_size + line_size > self._limits.max_field_section_size:
            raise BhttpLimitError("field section exceeds the size limit")
        return stop <= end

    def _complete_section(self) -> None:
        fields = tuple(self._fields)
        if self._section is _Section.INFORMATIONAL:
            self._on_informational(fields)
        elif self._section is _Section.HEADERS:
            self._emit_head(fields)
            self._begin_content()
        else:
            if fields:
                self._events.append(Trailers(fields))
            self._events.append(MessageEnd())
            self._step = self._read_padding

    # --- content ------------------------------------------------------------------------------

    def _begin_content(self) -> None:
        self._content_total = 0
        if self._framing is Framing.KNOWN_LENGTH:
            self._step = self._read_content_length
        else:
            self._step = self._read_chunk_length

    def _read_content_length(self, buf: Buffer, pos: int) -> int | None:
        decoded = decode_varint(buf, pos)
        if decoded is None:
            return None
        self._start_content_piece(decoded[0])
        if decoded[0] == 0:
            self._begin_section(_Section.TRAILERS)
        return decoded[1]

    def _read_chunk_length(self, buf: Buffer, pos: int) -> int | None:
        decoded = decode_varint(buf, pos)
        if decoded is None:
            return None
        if decoded[0] == 0:  # the content terminator
            self._begin_section(_Section.TRAILERS)
        else:
            self._start_content_piece(decoded[0])
        return decoded[1]

    def _start_content_piece(self, length: int) -> None:
        if self._content_total + length > self._limits.max_content_length:
            raise BhttpLimitError("content exceeds the length limit")
        self._content_total += length
        self._content_left = length
        self._step = self._read_content

    def _read_content(self, buf: Buffer, pos: int) -> int | None:
        count = min(len(buf) - pos, self._content_left)
        if count == 0:
            return None
        self._events.append(BodyChunk(_take(buf, pos, pos + count)))
        self._content_left -= count
        if self._content_left == 0:
            if self._framing is Framing.KNOWN_LENGTH:
                self._begin_section(_Section.TRAILERS)
            else:
                self._step = self._read_chunk_length
        return pos + count

    # --- padding ------------------------------------------------------------------------------

    def _read_padding(self, buf: Buffer, pos: int) -> int | None:
        if pos >= len(buf):
            return None
        if buf.count(0, pos) != len(buf) - pos:
            raise BhttpError("non-zero padding")
        return len(buf)


class RequestDecoder(_MessageDecoder):
    """Incremental decoder of a Binary HTTP request (framing indicator 0 or 2)."""

    _is_response = False

    def __init__(self, limits: Limits = Limits()) -> None:  # noqa: B008 - frozen, shared safely
        super().__init__(limits)
        self._control: list[bytes] = []
        self._control_size = 0

    def _first_step(self) -> _Step:
        return self._read_control_data

    def _read_control_data(self, buf: Buffer, pos: int) -> int | None:
        """One of method, scheme, authority, path (RFC 9292 §3.4)."""
        decoded = decode_varint(buf, pos)
        if decoded is None:
            return None
        length, start = decoded
        if self._control_size + length > self._limits.max_control_data_size:
            raise BhttpLimitError("request control data exceeds the size limit")
        end = start + length
        if end > len(buf):
            return None
        self._control.append(_take(buf, start, end))
        self._control_size += length
        if len(self._control) == 4:
            check_control_data(*self._control)
            self._begin_section(_Section.HEADERS)
        return end

    def _emit_head(self, headers: tuple[Field, ...]) -> None:
        method, scheme, authority, path = self._control
        self._events.append(RequestHead(method, scheme, authority, path, headers, self._framing))


class ResponseDecoder(_MessageDecoder):
    """Incremental decoder of a Binary HTTP response (framing indicator 1 or 3)."""

    _is_response = True

    def __init__(self, limits: Limits = Limits()) -> None:  # noqa: B008 - frozen, shared safely
        super().__init__(limits)
        self._status = 0
        self._informational_count = 0

    def _first_step(self) -> _Step:
        return self._read_status

    def _read_status(self, buf: Buffer, pos: int) -> int | None:
        """An informational or final status code (RFC 9292 §3.5)."""
        decoded = decode_varint(buf, pos)
        if decoded is None:
            return None
        status = decoded[0]
        if status in INFORMATIONAL_STATUSES:
            self._informational_count += 1
            if self._informational_count > self._limits.max_informational:
                raise BhttpLimitError("too many informational responses")
            self._begin_section(_Section.INFORMATIONAL)
        else:
            check_final_status(status)
            self._begin_section(_Section.HEADERS)
        self._status = status
        return decoded[1]

    def _on_informational(self, headers: tuple[Field, ...]) -> None:
        self._events.append(InformationalHead(self._status, headers))
        self._step = self._read_status

    def _emit_head(self, headers: tuple[Field, ...]) -> None:
        self._events.append(ResponseHead(self._status, headers, self._framing))
