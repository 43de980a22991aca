"""The signed statement: an in-toto Statement v1 whose predicate is a CycloneDX BOM.

Accepts a BOM (parsed JSON) and the directory of the environment it describes. Guarantees that the
subject names that directory and carries a tree digest of it: SHA-256 over the sorted
``<sha256 of content or of the link target>  <relative path>`` lines of every file and symlink, so
the signature binds the BOM to exactly those bytes. :func:`parse` refuses any payload that is not
such a statement. Never follows symlinks out of the tree.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from tools.sbom.errors import StatementInvalid

PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://cyclonedx.org/bom"


def tree_digest(root: Path) -> str:
    """SHA-256 of the sorted file listing of ``root``, contents included."""
    lines = []
    for directory, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        for name in [*filenames, *(d for d in dirnames if (Path(directory) / d).is_symlink())]:
            path = Path(directory) / name
            relative = path.relative_to(root).as_posix()
            if path.is_symlink():
                digest = hashlib.sha256(b"link:" + os.readlink(path).encode()).hexdigest()
            else:
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
            lines.append(f"{digest}  {relative}\n")
    return hashlib.sha256("".join(sorted(lines)).encode()).hexdigest()


def build(bom: dict[str, Any], subject_name: str, subject_digest: str) -> bytes:
    statement = {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": subject_name, "digest": {"sha256": subject_digest}}],
        "predicateType": PREDICATE_TYPE,
        "predicate": bom,
    }
    return json.dumps(statement, sort_keys=True, separators=(",", ":")).encode("utf-8")


def parse(payload: bytes) -> tuple[str, str, dict[str, Any]]:
    """(subject name, subject sha256, BOM) of a statement payload."""
    try:
        statement = json.loads(payload)
    except (ValueError, RecursionError) as exc:
        raise StatementInvalid("the payload is not JSON") from exc
    if not isinstance(statement, dict) or statement.get("_type") != STATEMENT_TYPE:
        raise StatementInvalid("the payload is not an in-toto Statement v1")
    if statement.get("predicateType") != PREDICATE_TYPE:
        raise StatementInvalid("the predicate is not a CycloneDX BOM")
    bom = statement.get("predicate")
    if not isinstance(bom, dict) or bom.get("bomFormat") != "CycloneDX":
        raise StatementInvalid("the predicate is not a CycloneDX BOM")
    subjects = statement.get("subject")
    if not isinstance(subjects, list) or len(subjects) != 1 or not isinstance(subjects[0], dict):
        raise StatementInvalid("the statement must name exactly one subject")
    name = subjects[0].get("name")
    digest = subjects[0].get("digest")
    sha256 = digest.get("sha256") if isinstance(digest, dict) else None
    if not isinstance(name, str) or not isinstance(sha256, str) or len(sha256) != 64:
        raise StatementInvalid("the subject has no name or sha256 digest")
    return name, sha256, bom
