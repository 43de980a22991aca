"""The in-toto statement: what it binds, and what parse refuses."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tools.sbom import statement
from tools.sbom.errors import StatementInvalid

BOM = {"bomFormat": "CycloneDX", "specVersion": "1.6", "components": []}


def test_tree_digest_covers_content_names_and_links(tmp_path: Path) -> None:
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "tool").write_text("#!/opt/venv/bin/python\n")
    os.symlink("/usr/bin/python3", tmp_path / "bin" / "python")
    first = statement.tree_digest(tmp_path)
    assert statement.tree_digest(tmp_path) == first
    (tmp_path / "bin" / "tool").write_text("#!/opt/venv/bin/python \n")
    second = statement.tree_digest(tmp_path)
    assert second != first
    (tmp_path / "bin" / "python").unlink()
    os.symlink("/tmp/evil", tmp_path / "bin" / "python")
    assert statement.tree_digest(tmp_path) != second
    (tmp_path / "bin" / "python").unlink()
    os.symlink("/usr/bin/python3", tmp_path / "bin" / "python")
    assert statement.tree_digest(tmp_path) == second
    (tmp_path / "bin" / "tool").rename(tmp_path / "bin" / "tool2")
    assert statement.tree_digest(tmp_path) != second


def test_build_and_parse() -> None:
    payload = statement.build(BOM, "/opt/venv", "a" * 64)
    assert statement.parse(payload) == ("/opt/venv", "a" * 64, BOM)


def _payload(**changes: object) -> bytes:
    document = json.loads(statement.build(BOM, "/opt/venv", "a" * 64))
    document.update(changes)
    return json.dumps(document).encode()


@pytest.mark.parametrize(
    "payload",
    [
        b"not json",
        b"[]",
        _payload(_type="https://in-toto.io/Statement/v0.1"),
        _payload(predicateType="https://spdx.dev/Document"),
        _payload(predicate={"bomFormat": "SPDX"}),
        _payload(subject=[]),
        _payload(subject=[{"name": "a", "digest": {"sha256": "a" * 64}}] * 2),
        _payload(subject=[{"name": "a", "digest": {"sha512": "a" * 128}}]),
        _payload(subject=[{"digest": {"sha256": "a" * 64}}]),
        _payload(subject=["x"]),
    ],
)
def test_parse_refuses(payload: bytes) -> None:
    with pytest.raises(StatementInvalid):
        statement.parse(payload)
