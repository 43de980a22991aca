"""The Binary HTTP (RFC 9292) data model: messages, framings, limits and decoder events.

Plain frozen values, no behaviour beyond cheap accessors. Field names are lowercase bytes and values
are bytes, as on the wire (RFC 9292 §3.6). Constructing a value never validates it: the decoders
only build valid ones, and the encoders validate what they are given.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from gateway.errors import ConfigError

Field = tuple[bytes, bytes]
"""One field line: (lowercase name, value)."""


class Framing(enum.Enum):
    """The two encodings of RFC 9292 §3.2 and §3.3."""

    KNOWN_LENGTH = "known-length"
    INDETERMINATE_LENGTH = "indeterminate-length"


# Framing indicators (RFC 9292 §3.3): (is_response, framing) for each valid value.
FRAMING_INDICATORS: dict[int, tuple[bool, Framing]] = {
    0: (False, Framing.KNOWN_LENGTH),
    1: (True, Framing.KNOWN_LENGTH),
    2: (False, Framing.INDETERMINATE_LENGTH),
    3: (True, Framing.INDETERMINATE_LENGTH),
}


def framing_indicator(is_response: bool, framing: Framing) -> int:
    """The framing indicator for a request or response in ``framing``."""
    return (2 if framing is Framing.INDETERMINATE_LENGTH else 0) + int(is_response)


@dataclass(frozen=True)
class Limits:
    """Bounds a decoder enforces before it buffers the excess (BhttpLimitError when exceeded).

    ``max_field_section_size`` counts the encoded field lines of one section: names, values and
    their length prefixes, the same in both framings. ``max_control_data_size`` counts the
    method, scheme, authority and path bytes of a request.
    """

    max_field_section_size: int = 64 * 1024
    max_fields: int = 256
    max_content_length: int = 32 * 1024 * 1024
    max_informational: int = 16
    max_control_data_size: int = 8 * 1024

    def __post_init__(self) -> None:
        for value in vars(self).values():
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ConfigError("BHTTP limits must be non-negative integers")


def _first_value(fields: tuple[Field, ...], name: bytes) -> bytes | None:
    for field_name, value in fields:
        if field_name == name:
            return value
    return None


class _HasHeaders:
    """Header look-ups; names are lowercase on the wire, so matching is exact."""

    headers: tuple[Field, ...]

    def header(self, name: bytes) -> bytes | None:
        """The first value of header ``name`` (lowercase), or ``None``."""
        return _first_value(self.headers, name)

    def header_values(self, name: bytes) -> list[bytes]:
        """Every value of header ``name`` (lowercase), in order."""
        return [value for field_name, value in self.headers if field_name == name]


@dataclass(frozen=True)
class Request(_HasHeaders):
    """A request: control data (RFC 9292 §3.4), header section, content and trailer section."""

    method: bytes
    scheme: bytes
    authority: bytes
    path: bytes
    headers: tuple[Field, ...] = ()
    content: bytes = b""
    trailers: tuple[Field, ...] = ()


@dataclass(frozen=True)
class InformationalResponse(_HasHeaders):
    """A 1xx interim response (RFC 9292 §3.5.1)."""

    status: int
    headers: tuple[Field, ...] = ()


@dataclass(frozen=True)
class Response(_HasHeaders):
    """A final response, with the informational responses that preceded it."""

    status: int
    headers: tuple[Field, ...] = ()
    content: bytes = b""
    trailers: tuple[Field, ...] = ()
    informational: tuple[InformationalResponse, ...] = ()


# --- incremental decoder events ----------------------------------------------------------------


@dataclass(frozen=True)
class RequestHead(_HasHeaders):
    """Request control data and header section; emitted once the header section is complete."""

    method: bytes
    scheme: bytes
    authority: bytes
    path: bytes
    headers: tuple[Field, ...]
    framing: Framing


@dataclass(frozen=True)
class InformationalHead(_HasHeaders):
    """One informational response, emitted once its header section is complete."""

    status: int
    headers: tuple[Field, ...]


@dataclass(frozen=True)
class ResponseHead(_HasHeaders):
    """Final status and header section; emitted once the header section is complete."""

    status: int
    headers: tuple[Field, ...]
    framing: Framing


@dataclass(frozen=True)
class BodyChunk:
    """Some content bytes, as they arrived (never empty; chunk boundaries carry no meaning)."""

    data: bytes


@dataclass(frozen=True)
class Trailers:
    """The trailer section; emitted only when it has at least one field."""

    fields: tuple[Field, ...]


@dataclass(frozen=True)
class MessageEnd:
    """The message is complete; only zero padding may follow."""


Event = RequestHead | InformationalHead | ResponseHead | BodyChunk | Trailers | MessageEnd
