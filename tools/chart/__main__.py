"""``python -m tools.chart [--check]``: regenerates values.schema.json and the README values table.

With ``--check`` nothing is written; the exit status is 1 and the stale files are named when either
file differs from what values_schema.py and values.yaml produce.
"""

from __future__ import annotations

import sys
from pathlib import Path

from tools.chart import values_doc, values_schema

CHART = Path(__file__).resolve().parents[2] / "charts" / "ohttp-gateway"


def expected() -> dict[Path, str]:
    readme = CHART / "README.md"
    values = (CHART / "values.yaml").read_text(encoding="utf-8")
    table = values_doc.table(values_doc.rows(values))
    return {
        CHART / "values.schema.json": values_schema.render(),
        readme: values_doc.splice(readme.read_text(encoding="utf-8"), table),
    }


def main(argv: list[str]) -> int:
    check = argv == ["--check"]
    stale = []
    for path, text in expected().items():
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current != text:
            stale.append(path)
            if not check:
                path.write_text(text, encoding="utf-8")
    if check and stale:
        names = ", ".join(str(path) for path in stale)
        print(f"out of date: {names}; run `make chart-docs`", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
