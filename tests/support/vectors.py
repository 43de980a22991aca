"""The RFC test vectors: tests/vectors/ohttp-vectors.json (a copy of the verified shared set)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

VECTORS = Path(__file__).resolve().parent.parent / "vectors" / "ohttp-vectors.json"


def load_vectors() -> dict[str, Any]:
    """The parsed vectors file."""
    return json.loads(VECTORS.read_text())  # type: ignore[no-any-return]
