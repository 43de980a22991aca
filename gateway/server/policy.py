"""What an inner request may ask of the upstream: method, path, and which header fields pass.

* The destination is fixed by configuration: the inner authority and Host are ignored, never
  used to choose where a request goes.
* The inner path must match the allowlist; ``{name}`` stands for one path segment of
  ``[A-Za-z0-9._~-]`` (never ``.`` or ``..``). A query string is allowed when it uses only
  RFC 3986 query characters. Anything else is :class:`PathNotAllowed` (an encapsulated 403).
* Hop-by-hop and connection-specific fields (RFC 9110 §7.6.1), and every field a ``Connection``
  header nominates, are dropped in both directions; so are fields a proxy chain adds about the
  client (Forwarded, X-Forwarded-*, X-Real-IP, Via). Nothing is added that identifies anyone.
* ``Expect: 100-continue`` is refused (RFC 9458 §5.1).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from gateway.errors import ExpectContinueRefused, MethodNotAllowed, PathNotAllowed

Field = tuple[bytes, bytes]

ALLOWED_METHODS = frozenset({b"GET", b"HEAD", b"POST"})
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"host",
        b"expect",
        b"content-length",
        b"forwarded",
        b"via",
        b"x-real-ip",
    }
)
# Set again by the gateway's own HTTP stack; forwarding them duplicates the fields.
RESPONSE_DROPPED = frozenset({b"date", b"server"})
_SEGMENT = r"(?!\.\.?(?:/|$))[A-Za-z0-9._~-]+"
_QUERY = re.compile(rb"[A-Za-z0-9\-._~!$&'()*+,;=:@/?%]*")


class PathPolicy:
    """The compiled allowlist of inner paths."""

    def __init__(self, patterns: Iterable[str]) -> None:
        alternatives = []
        for pattern in patterns:
            literal = [re.escape(part) for part in pattern.split("{name}")]
            alternatives.append(_SEGMENT.join(literal))
        self._regex = re.compile("(?:" + "|".join(alternatives) + ")")

    def target(self, path: bytes) -> str:
        """The request target to send upstream (path and query), or PathNotAllowed."""
        raw_path, question, query = path.partition(b"?")
        try:
            text = raw_path.decode("ascii")
        except UnicodeDecodeError:
            raise PathNotAllowed from None
        if not self._regex.fullmatch(text):
            raise PathNotAllowed
        if question and not _QUERY.fullmatch(query):
            raise PathNotAllowed
        return path.decode("ascii")


def check_method(method: bytes) -> None:
    if method not in ALLOWED_METHODS:
        raise MethodNotAllowed


def check_expect(headers: Iterable[Field]) -> None:
    if any(name == b"expect" for name, _ in headers):
        raise ExpectContinueRefused


def _nominated(headers: Iterable[Field]) -> set[bytes]:
    names: set[bytes] = set()
    for name, value in headers:
        if name == b"connection":
            names.update(token.strip().lower() for token in value.split(b","))
    return names


def forwardable(headers: tuple[Field, ...], *, response: bool = False) -> list[Field]:
    """The fields that may cross the gateway, in order."""
    dropped = HOP_BY_HOP | _nominated(headers) | (RESPONSE_DROPPED if response else frozenset())
    return [
        (name, value)
        for name, value in headers
        if name not in dropped and not name.startswith(b"x-forwarded-")
    ]


def header_value(headers: Iterable[Field], wanted: bytes) -> bytes | None:
    """The first value of a field, by lowercase name."""
    return next((value for name, value in headers if name == wanted), None)
