"""Unit tests of the client's pure parts: the document decoder and the verifier under fuzzing,
policy files, the streamed multipart form, and the problem-response parsers."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest

from gateway.client.document import parse_document
from gateway.client.multipart import FileForm
from gateway.client.policy import AttestationPolicy
from gateway.client.session import date_problem, problem_type
from gateway.client.verify import verify_document
from gateway.errors import PROBLEM_DATE, PROBLEM_OHTTP_KEY, ConfigError
from tests.support.attested_gateway import AttestationWorld
from tests.support.fuzzing import assert_parses_or_raises_ours, cases


def _document_bytes(good_document: dict[str, Any]) -> bytes:
    return json.dumps(good_document).encode()


def test_fuzz_parse_document(good_document: dict[str, Any]) -> None:
    seed = _document_bytes(good_document)
    small = json.dumps({**good_document, "token": "a.b.c"}).encode()
    for data in cases([seed, small, b"{}", b'{"version":1}'], 3000, seed=61):
        assert_parses_or_raises_ours(parse_document, data)


def test_fuzz_verify_document(world: AttestationWorld, good_document: dict[str, Any]) -> None:
    jwks, policy, now = world.signer.jwks(), world.policy(), time.time()

    def parse_and_verify(data: bytes) -> object:
        return verify_document(parse_document(data), policy=policy, jwks=jwks, now=now)

    assert parse_and_verify(_document_bytes(good_document))
    for data in cases([_document_bytes(good_document)], 300, seed=62):
        assert_parses_or_raises_ours(parse_and_verify, data)


@pytest.mark.parametrize(
    "document",
    [
        [],
        {},
        {"maa_issuer": "http://maa.example"},
        {"maa_issuer": "https://maa.example", "allow_simulated": True},
        {"maa_issuer": "https://maa.example", "debug": True},
        {"maa_issuer": "https://maa.example", "launch_measurements": []},
        {"maa_issuer": "https://maa.example", "launch_measurements": ["abcd"]},
        {"maa_issuer": "https://maa.example", "host_data": ["zz" * 32]},
        {"maa_issuer": "https://maa.example", "minimum_svn": {"bogus": 1}},
        {"maa_issuer": "https://maa.example", "minimum_svn": {"snp": -1}},
        {"maa_issuer": "https://maa.example", "minimum_svn": {"snp": True}},
        {"maa_issuer": "https://maa.example", "max_token_age": 0},
        {"maa_issuer": "https://maa.example", "attestation_types": []},
        {"maa_issuer": "https://maa.example", "amd_roots": "/nonexistent.pem"},
    ],
)
def test_bad_policies_are_configuration_errors(document: Any) -> None:
    with pytest.raises(ConfigError):
        AttestationPolicy.from_json(document)


def test_policy_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        AttestationPolicy.from_file(tmp_path / "missing.json")
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(ConfigError):
        AttestationPolicy.from_file(tmp_path / "broken.json")
    (tmp_path / "ok.json").write_text(json.dumps({"maa_issuer": "https://maa.example/"}))
    policy = AttestationPolicy.from_file(tmp_path / "ok.json")
    assert policy.maa_issuer == "https://maa.example"
    assert not policy.allow_simulated
    assert AttestationPolicy.development().allow_simulated


def test_multipart_form_streams_exactly_its_content_length(tmp_path: Path) -> None:
    audio = tmp_path / "a.wav"
    audio.write_bytes(bytes(range(256)) * 1000)
    sent: list[int] = []
    form = FileForm(audio, {"model": "whisper-1", "language": "en"}, progress=sent.append)

    async def collect() -> list[bytes]:
        return [piece async for piece in form.chunks()]

    pieces = asyncio.run(collect())
    body = b"".join(pieces)
    assert len(body) == form.content_length
    assert max(len(p) for p in pieces) <= 64 * 1024
    assert sent[-1] == 256_000
    assert body.endswith(b"--" + form.boundary + b"--\r\n")
    assert b'name="language"\r\n\r\nen\r\n' in body
    assert b"".join(asyncio.run(collect())) == body  # each call starts over


def test_multipart_refuses_a_file_that_changes_or_bad_names(tmp_path: Path) -> None:
    audio = tmp_path / "a.wav"
    audio.write_bytes(b"x" * 100)
    form = FileForm(audio, {"model": "m"})
    audio.write_bytes(b"x" * 50)

    async def drain() -> None:
        async for _ in form.chunks():
            pass

    with pytest.raises(ConfigError):
        asyncio.run(drain())
    with pytest.raises(ConfigError):
        FileForm(audio, {'bad"name': "v"})
    with pytest.raises(ConfigError):
        FileForm(tmp_path / "missing.wav", {})


def test_problem_parsers() -> None:
    body = json.dumps({"type": PROBLEM_DATE, "title": "date"}).encode()
    problem = ((b"content-type", b"application/problem+json"), (b"date", b"Mon, 30 Nov 2026"))
    assert date_problem(400, problem, body) == b"Mon, 30 Nov 2026"
    assert date_problem(403, problem, body) is None
    assert date_problem(400, ((b"content-type", b"application/json"),), body) is None
    assert problem_type("application/problem+json; charset=utf-8", body) == PROBLEM_DATE
    key = json.dumps({"type": PROBLEM_OHTTP_KEY}).encode()
    assert problem_type(b"application/problem+json", key) == PROBLEM_OHTTP_KEY
    for junk in (b"", b"[]", b"{", b'{"type": 1}', b"\xff"):
        assert problem_type("application/problem+json", junk) is None
