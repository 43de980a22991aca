"""The server's small parts on their own: Date window, path policy, header filtering, outer
limits and the error mappers of each phase (the replay memory: test_replay.py)."""

from __future__ import annotations

import json
import re
from email.utils import formatdate

import pytest

from gateway.errors import (
    PROBLEM_DATE,
    PROBLEM_OHTTP_KEY,
    BhttpError,
    BodyTimeout,
    DateOutOfWindow,
    EncapsulatedBodyTooLarge,
    ExpectContinueRefused,
    HeadersTooLarge,
    MethodNotAllowed,
    NotReady,
    OuterRequestError,
    Overloaded,
    PathNotAllowed,
    ReplayDetected,
    UnknownKeyId,
    UpstreamTimeout,
)
from gateway.server.answers import clear_error, inner_error, outcome
from gateway.server.limits import ConcurrencyLimit, check_header_size, declared_length
from gateway.server.policy import PathPolicy, check_expect, check_method, forwardable
from gateway.server.replay import check_date


@pytest.mark.parametrize("offset", [-61, 61, 3600])
def test_date_outside_the_window(offset: float) -> None:
    with pytest.raises(DateOutOfWindow):
        check_date(formatdate(1_000_000 + offset, usegmt=True).encode(), 60, now=1_000_000)


@pytest.mark.parametrize("value", [None, formatdate(1_000_030, usegmt=True).encode()])
def test_date_inside_the_window_or_absent(value: bytes | None) -> None:
    check_date(value, 60, now=1_000_000)


@pytest.mark.parametrize("value", [b"yesterday", b"\xff\xfe", b"", b"Mon, 99 Foo 2026"])
def test_unparseable_date_is_refused(value: bytes) -> None:
    with pytest.raises(DateOutOfWindow):
        check_date(value, 60, now=1_000_000)


POLICY = PathPolicy(["/v1/audio/transcriptions", "/openai/deployments/{name}/audio/translations"])


@pytest.mark.parametrize(
    "path",
    [
        b"/v1/audio/transcriptions",
        b"/v1/audio/transcriptions?api-version=2024-06-01&x=%20",
        b"/openai/deployments/whisper-1/audio/translations",
        b"/openai/deployments/a.b_c~d/audio/translations?api-version=1",
    ],
)
def test_allowed_paths(path: bytes) -> None:
    assert POLICY.target(path) == path.decode()


@pytest.mark.parametrize(
    "path",
    [
        b"/v1/audio/transcriptions/",
        b"/v1/audio/transcriptions/../../admin",
        b"/v1/audio//transcriptions",
        b"/V1/audio/transcriptions",
        b"/openai/deployments/../audio/translations",
        b"/openai/deployments/./audio/translations",
        b"/openai/deployments/a/b/audio/translations",
        b"/openai/deployments/%2e%2e/audio/translations",
        b"/v1/audio/transcriptions?x=a b",
        b"/v1/audio/transcriptions?x=\r\nhost: evil",
        b"/v1/audio/transcriptions#frag",
        b"http://evil.example/v1/audio/transcriptions",
        b"*",
        b"",
        b"/v1/audio/transcriptions\xff",
    ],
)
def test_refused_paths(path: bytes) -> None:
    with pytest.raises(PathNotAllowed):
        POLICY.target(path)


def test_methods_and_expect() -> None:
    check_method(b"POST")
    for method in (b"CONNECT", b"TRACE", b"DELETE", b"post"):
        with pytest.raises(MethodNotAllowed):
            check_method(method)
    with pytest.raises(ExpectContinueRefused):
        check_expect([(b"expect", b"100-continue")])


def test_hop_by_hop_and_identifying_fields_are_dropped() -> None:
    headers = (
        (b"connection", b"close, x-hop"),
        (b"x-hop", b"1"),
        (b"te", b"trailers"),
        (b"transfer-encoding", b"chunked"),
        (b"upgrade", b"h2c"),
        (b"host", b"evil"),
        (b"forwarded", b"for=1.2.3.4"),
        (b"x-forwarded-for", b"1.2.3.4"),
        (b"x-real-ip", b"1.2.3.4"),
        (b"via", b"1.1 relay"),
        (b"proxy-authorization", b"Basic x"),
        (b"content-length", b"5"),
        (b"content-type", b"audio/wav"),
        (b"authorization", b"Bearer t"),
    )
    assert forwardable(headers) == [
        (b"content-type", b"audio/wav"),
        (b"authorization", b"Bearer t"),
    ]
    response = ((b"date", b"x"), (b"server", b"uvicorn"), (b"content-type", b"application/json"))
    assert forwardable(response, response=True) == [(b"content-type", b"application/json")]


def test_outer_limits() -> None:
    with ConcurrencyLimit(1) as limit:
        assert limit.in_flight == 1
        with pytest.raises(Overloaded), limit:
            pass
    assert limit.in_flight == 0
    with pytest.raises(HeadersTooLarge):
        check_header_size([(b"a", b"x" * 2000)], 1024)
    assert declared_length([(b"content-length", b"10")], 100) == 10
    assert declared_length([], 100) is None
    with pytest.raises(EncapsulatedBodyTooLarge):
        declared_length([(b"content-length", b"101")], 100)
    for bad in (
        [(b"content-length", b"-1")],
        [(b"content-length", b"1"), (b"content-length", b"2")],
    ):
        with pytest.raises(OuterRequestError):
            declared_length(bad, 100)


def test_clear_errors_carry_no_input_and_the_right_problem() -> None:
    status, headers, body = clear_error(UnknownKeyId())
    assert status == 400
    assert json.loads(body)["type"] == PROBLEM_OHTTP_KEY
    assert (b"content-type", b"application/problem+json") in headers
    status, headers, _ = clear_error(NotReady())
    assert status == 503
    assert (b"retry-after", b"1") in headers
    status, headers, body = clear_error(BodyTimeout())
    assert status == 408
    assert (b"connection", b"close") in headers  # RFC 9110 §15.5.9
    assert json.loads(body) == {"title": "Request body not received in time.", "status": 408}


def test_inner_errors_keep_their_status_and_date_problem_has_a_date() -> None:
    assert inner_error(UpstreamTimeout()).status == 504
    assert inner_error(BhttpError()).status == 400
    assert inner_error(BodyTimeout()).status == 408
    dated = inner_error(DateOutOfWindow())
    assert json.loads(dated.content)["type"] == PROBLEM_DATE
    assert any(name == b"date" for name, _ in dated.headers)


def test_outcomes() -> None:
    assert outcome(None, 200) == "ok"
    assert outcome(None, 503) == "upstream_error"
    assert outcome(UpstreamTimeout()) == "upstream_error"
    assert outcome(NotReady()) == "not_ready"
    assert outcome(PathNotAllowed()) == "refused"
    assert outcome(ReplayDetected()) == "refused"
    assert outcome(BhttpError()) == "client_error"
    assert outcome(BodyTimeout()) == "client_timeout"


def test_request_ids_are_unique_and_carry_a_per_process_prefix() -> None:
    from gateway.server.logs import new_request_id, request_id

    ids = [new_request_id() for _ in range(1000)]
    assert len(set(ids)) == 1000
    assert request_id.get() == ids[-1]
    prefixes = {value.split("-")[0] for value in ids}
    assert len(prefixes) == 1
    assert all(re.fullmatch(r"[0-9a-f]{12}-[0-9a-f]+", value) for value in ids)
