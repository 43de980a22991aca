"""The README values table generator: rows from ``# --`` comments; undocumented values caught."""

from __future__ import annotations

import pytest

from tools.chart import values_doc

VALUES = """\
# -- Pods.
replicaCount: 2
image:
  # -- The repository,
  # continued on a second line.
  repository: x/y
  # -- The tag | with a pipe.
  tag: ""
# -- Node labels.
nodeSelector:
  a: b
"""


def test_rows() -> None:
    rows = values_doc.rows(VALUES)
    assert [(r.path, r.default) for r in rows] == [
        ("replicaCount", "2"),
        ("image.repository", '"x/y"'),
        ("image.tag", '""'),
        ("nodeSelector", '{"a": "b"}'),
    ]
    assert rows[1].description == "The repository, continued on a second line."
    table = values_doc.table(rows)
    assert '| `image.tag` | `\\"\\"` |' not in table
    assert "`nodeSelector`" in table


def test_undocumented_leaf() -> None:
    with pytest.raises(values_doc.UndocumentedValue, match=r"image\.digest"):
        values_doc.rows(VALUES.replace('  tag: ""\n', '  tag: ""\n  digest: ""\n'))


def test_splice_replaces_only_the_marked_section() -> None:
    readme = f"head\n{values_doc.BEGIN}\nold\n{values_doc.END}\ntail\n"
    assert (
        values_doc.splice(readme, "new")
        == f"head\n{values_doc.BEGIN}\nnew\n{values_doc.END}\ntail\n"
    )
