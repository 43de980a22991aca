"""Whole-message decoding of a known-length Binary HTTP request (RFC 9292 §3.1), straight through.

Accepts the bytes of one complete request and returns the :class:`Request` they encode, or
``None`` when they are anything but a valid known-length request within the :class:`Limits`:
indeterminate length, a response, a limit exceeded, a length that overruns, an invalid field,
non-zero padding. ``None`` sends the caller to the incremental decoder
(:mod:`gateway.protocol.bhttp_decoder`), which then decodes the message or raises the precise
error. So every error comes from the one state machine, and this module adds no error of its
own.

Why it exists: a plain OHTTP request is decoded whole, once per request, and the state machine's
per-element steps, events and buffering cost about 20 µs on a 1 KiB request; reading the same
bytes in one pass costs a quarter of that.

Guarantee, tested by property and fuzzing (tests/protocol/test_bhttp_whole.py): whatever it
returns other than ``None`` equals the state machine's result for the same bytes, §3.8 truncation
and zero padding included.
"""

from __future__ import annotations

from gateway.errors import BhttpError
from gateway.protocol.bhttp_model import Field, Limits, Request
from gateway.protocol.bhttp_rules import check_control_data, check_field
from gateway.protocol.varint import decode_varint

_KNOWN_LENGTH_REQUEST = 0  # the framing indicator (RFC 9292 §3.3)


class _Unusual(Exception):
    """Not the straight case: leave this message to the state machine."""


def _length_prefixed(data: bytes, pos: int, end: int) -> tuple[bytes, int]:
    """The length-prefixed bytes at ``pos`` that end by ``end``, and where they end."""
    decoded = decode_varint(data, pos)
    if decoded is None or decoded[1] + decoded[0] > end:
        raise _Unusual
    stop = decoded[1] + decoded[0]
    return data[decoded[1] : stop], stop


def _field_section(data: bytes, pos: int, limits: Limits) -> tuple[tuple[Field, ...], int]:
    """A known-length field section at ``pos``, or empty when the message ends there (§3.8)."""
    if pos == len(data):
        return (), pos
    decoded = decode_varint(data, pos)
    if decoded is None or decoded[0] > limits.max_field_section_size:
        raise _Unusual
    length, pos = decoded
    end = pos + length
    if end > len(data):
        raise _Unusual
    fields: list[Field] = []
    while pos < end:
        if len(fields) >= limits.max_fields:
            raise _Unusual
        name, pos = _length_prefixed(data, pos, end)
        value, pos = _length_prefixed(data, pos, end)
        check_field(name, value)
        fields.append((name, value))
    return tuple(fields), end


def decode_known_length_request(data: bytes, limits: Limits) -> Request | None:
    """The request ``data`` encodes in known-length framing; ``None`` for anything else."""
    if type(data) is not bytes or not data or data[0] != _KNOWN_LENGTH_REQUEST:
        return None
    try:
        pos, control = 1, []
        for _ in range(4):  # method, scheme, authority, path (§3.4)
            item, pos = _length_prefixed(data, pos, len(data))
            control.append(item)
        if sum(map(len, control)) > limits.max_control_data_size:
            return None
        method, scheme, authority, path = control
        check_control_data(method, scheme, authority, path)
        headers, pos = _field_section(data, pos, limits)
        content = b""
        if pos < len(data):
            content, pos = _length_prefixed(data, pos, len(data))
            if len(content) > limits.max_content_length:
                return None
        trailers, pos = _field_section(data, pos, limits)
    except (_Unusual, BhttpError):
        return None
    if data.count(0, pos) != len(data) - pos:
        return None  # non-zero padding (§3.8)
    return Request(method, scheme, authority, path, headers, content, trailers)
