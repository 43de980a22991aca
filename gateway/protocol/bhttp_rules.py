"""The validity rules of RFC 9292 for control data, status codes and field lines.

Each check raises :class:`BhttpError` with a fixed message (never the offending bytes) or returns
nothing. Encoders and decoders share these checks, so we never emit what we would refuse.

Choices where the RFCs leave room:

* every name starting with ``:`` is refused, not only the five RFC 9292 §3.6 names: the extension
  pseudo-fields it permits have no meaning to this gateway;
* 101 (Switching Protocols) is accepted as an informational status, as RFC 9292 §3.5.1's
  100..199 range says; it has no effect here, since there is no connection to upgrade;
* control data follows RFC 9113 §8.3.1: a token method; a scheme in RFC 3986 syntax, empty only for
  CONNECT; authority and path of visible ASCII; for http and https, a path starting with ``/``
  (or ``*``).
"""

from __future__ import annotations

import string

from gateway.errors import BhttpError

# RFC 9110 §5.6.2 tchar, without uppercase: RFC 9113 §8.2.1 refuses uppercase names.
_NAME_BYTES = (string.ascii_lowercase + string.digits + "!#$%&'*+-.^_`|~").encode()
_TOKEN_BYTES = _NAME_BYTES + string.ascii_uppercase.encode()
_SCHEME_BYTES = (string.ascii_letters + string.digits + "+-.").encode()
_VISIBLE_ASCII = bytes(range(0x21, 0x7F))
_WHITESPACE = (0x20, 0x09)

INFORMATIONAL_STATUSES = range(100, 200)
FINAL_STATUSES = range(200, 600)


def _only(value: bytes, allowed: bytes) -> bool:
    return not value.translate(None, allowed)


def check_field_name(name: bytes) -> None:
    """RFC 9292 §3.6 and RFC 9113 §8.2.1: a non-empty lowercase token, never a pseudo-field."""
    if not name:
        raise BhttpError("empty field name")
    if name[0] == 0x3A:
        raise BhttpError("pseudo-field not allowed")
    if not _only(name, _NAME_BYTES):
        raise BhttpError("invalid field name")


def check_field_value(value: bytes) -> None:
    """RFC 9113 §8.2.1: no NUL, CR or LF; no leading or trailing whitespace."""
    if b"\0" in value or b"\r" in value or b"\n" in value:
        raise BhttpError("invalid field value")
    if value and (value[0] in _WHITESPACE or value[-1] in _WHITESPACE):
        raise BhttpError("invalid field value")


def check_field(name: bytes, value: bytes) -> None:
    """Both checks for one field line."""
    check_field_name(name)
    check_field_value(value)


def check_control_data(method: bytes, scheme: bytes, authority: bytes, path: bytes) -> None:
    """RFC 9292 §3.4 with the pseudo-header rules of RFC 9113 §8.3.1."""
    if not method or not _only(method, _TOKEN_BYTES):
        raise BhttpError("invalid method")
    if scheme:
        if not (scheme[:1].isalpha() and _only(scheme, _SCHEME_BYTES)):
            raise BhttpError("invalid scheme")
    elif method != b"CONNECT":
        raise BhttpError("invalid scheme")
    if not _only(authority, _VISIBLE_ASCII):
        raise BhttpError("invalid authority")
    if not _only(path, _VISIBLE_ASCII):
        raise BhttpError("invalid path")
    if scheme.lower() in (b"http", b"https") and not (path[:1] == b"/" or path == b"*"):
        raise BhttpError("invalid path")


def check_informational_status(status: int) -> None:
    """RFC 9292 §3.5.1: 100..199."""
    if status not in INFORMATIONAL_STATUSES:
        raise BhttpError("informational status out of range")


def check_final_status(status: int) -> None:
    """RFC 9292 §3.5: 200..599."""
    if status not in FINAL_STATUSES:
        raise BhttpError("final status out of range")
