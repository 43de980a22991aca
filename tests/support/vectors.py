"""Test vectors as data files (tests/vectors/), loaded through this one helper."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

VECTORS = Path(__file__).resolve().parent.parent / "vectors"


def load_vectors(name: str = "ohttp-vectors.json") -> dict[str, Any]:
    """The parsed JSON vector file ``tests/vectors/<name>``."""
    data: dict[str, Any] = json.loads((VECTORS / name).read_text())
    return data
