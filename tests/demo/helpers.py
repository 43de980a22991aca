"""Helpers for the demo backend's tests: the phrase list, SDK clients, raw HTTP requests."""

from __future__ import annotations

import http.client
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai

from gateway.demo.backend import SAMPLE_TEXT, RunningBackend

PHRASES = (
    SAMPLE_TEXT,
    "hello world today is a sunny day",
    "open the door and turn on the lights in the kitchen",
)


def sdk(backend: RunningBackend) -> openai.OpenAI:
    return openai.OpenAI(base_url=backend.url + "/v1", api_key="dummy", max_retries=0, timeout=60)


def word_overlap(reference: str, hypothesis: str) -> float:
    """The share of the reference's words found in the hypothesis (as a multiset)."""
    remaining = hypothesis.lower().split()
    hits = 0
    for word in reference.lower().split():
        if word in remaining:
            remaining.remove(word)
            hits += 1
    return hits / len(reference.split())


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def multipart(
    fields: Sequence[tuple[str, str]] = (),
    files: Sequence[tuple[str, bytes]] = (),
    boundary: str | None = None,
) -> tuple[str, bytes]:
    """(Content-Type, body) of a multipart/form-data request."""
    boundary = boundary or uuid.uuid4().hex
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        for name, value in fields
    ]
    parts += [
        f"--{boundary}\r\nContent-Disposition: form-data; "
        f'name="{name}"; filename="audio.wav"\r\nContent-Type: audio/wav\r\n\r\n'.encode()
        + data
        + b"\r\n"
        for name, data in files
    ]
    return f"multipart/form-data; boundary={boundary}", b"".join(
        parts
    ) + f"--{boundary}--\r\n".encode()


def post(
    backend: RunningBackend,
    path: str,
    body: bytes,
    content_type: str,
    headers: dict[str, str] | None = None,
) -> Reply:
    connection = http.client.HTTPConnection(backend.host, backend.port, timeout=60)
    try:
        connection.request(
            "POST", path, body=body, headers={"Content-Type": content_type, **(headers or {})}
        )
        response = connection.getresponse()
        return Reply(
            response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
        )
    finally:
        connection.close()


def reply(response: http.client.HTTPResponse) -> Reply:
    headers = {name.lower(): value for name, value in response.getheaders()}
    return Reply(response.status, headers, response.read())


def get(backend: RunningBackend, path: str) -> Reply:
    connection = http.client.HTTPConnection(backend.host, backend.port, timeout=10)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return Reply(
            response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
        )
    finally:
        connection.close()


def children_of(pid: int) -> set[int]:
    """Live (not zombie) processes whose parent is ``pid``, from /proc."""
    children = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process exited while we looked
            continue
        if fields[0] != "Z" and int(fields[1]) == pid:
            children.add(int(stat.parent.name))
    return children


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"
