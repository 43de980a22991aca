"""How the gateway answers: the outer HTTP responses, and the one error mapper of each phase.

* :func:`clear_error` (before decapsulation, RFC 9458 §5.2): a plain status with a small
  problem+json body; an unknown key or refused suite is the ``ohttp-key`` problem (400), a date
  problem never appears here. A 408 (the body stalled) also closes the connection. Nothing
  derived from the request is echoed.
* :func:`inner_error` (after decapsulation): a Binary HTTP response the caller encapsulates. Its
  status is the error's; a replay or a Date outside the window is the ``date`` problem and
  carries the gateway's Date (RFC 9458 §6.5) so the client can retry once.
* :func:`outcome` classifies a request for the metrics, from the error that ended it, if any.

Bodies are fixed texts chosen by our code, so no error answer can leak input or internals.
"""

from __future__ import annotations

import json

from starlette.types import Send

from gateway.errors import (
    PROBLEM_DATE,
    BodyTimeout,
    GatewayError,
    NotReady,
    OuterRequestError,
    Phase,
    RequestRefused,
    UpstreamError,
)
from gateway.protocol.bhttp import Response
from gateway.server.replay import http_date

PROBLEM_JSON = b"application/problem+json"
OHTTP_RESPONSE_HEADERS = [(b"cache-control", b"private, no-store")]


def problem(error: GatewayError, status: int) -> bytes:
    document: dict[str, object] = {"title": error.message, "status": status}
    if error.problem_type is not None:
        document = {"type": error.problem_type, **document}
    return json.dumps(document).encode()


def clear_status(error: GatewayError) -> int:
    """The status of an error answered in the clear: its own when it is a refusal of the outer
    request, else 400 (anything arising before decapsulation is the client's doing)."""
    if error.phase is Phase.BEFORE_DECAPSULATION and 400 <= error.status < 600:
        return error.status
    return 400 if error.status < 500 else error.status


def clear_error(error: GatewayError) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """Status, headers and body of a clear (unencapsulated) error answer."""
    status = clear_status(error)
    headers = [(b"content-type", PROBLEM_JSON), (b"cache-control", b"no-store")]
    if status == 503:
        headers.append((b"retry-after", b"1"))
    elif status == 408:
        headers.append((b"connection", b"close"))  # RFC 9110 §15.5.9: the sender stalled
    return status, headers, problem(error, status)


def inner_status(error: GatewayError) -> int:
    return error.status if 400 <= error.status < 600 else 500


def inner_error(error: GatewayError) -> Response:
    """The Binary HTTP response that answers ``error`` inside the encapsulation."""
    status = inner_status(error)
    headers: list[tuple[bytes, bytes]] = [(b"content-type", PROBLEM_JSON)]
    if error.problem_type == PROBLEM_DATE:
        headers.append((b"date", http_date().encode()))
    return Response(status=status, headers=tuple(headers), content=problem(error, status))


def outcome(error: BaseException | None, upstream_status: int | None = None) -> str:
    """The ``outcome`` label of ohttp_gateway_requests_total."""
    if error is None:
        return "upstream_error" if upstream_status is not None and upstream_status >= 500 else "ok"
    if isinstance(error, BodyTimeout):
        return "client_timeout"
    if isinstance(error, NotReady):
        return "not_ready"
    if isinstance(error, UpstreamError):
        return "upstream_error"
    if isinstance(error, RequestRefused | OuterRequestError) and error.status in (403, 405, 503):
        return "refused"
    if isinstance(error, RequestRefused) and error.problem_type == PROBLEM_DATE:
        return "refused"
    return "client_error"


async def send_response(
    send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes | memoryview
) -> None:
    """A complete response with a Content-Length."""
    headers = [*headers, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
