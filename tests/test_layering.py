"""The layering of shared/DESIGN.md §2, enforced on the source: arrows point downwards only,
and the protocol core stays sans-I/O."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "gateway"

# Which of our own layers each layer may import (besides itself and gateway.errors).
ALLOWED_LAYERS = {
    "protocol": set(),
    "trust": {"protocol"},
    "server": {"protocol", "trust"},
    "client": {"protocol", "trust"},
    "emulators": {"protocol", "trust"},
    "demo": {"protocol", "trust", "server", "client", "emulators"},
}

# The sans-I/O rule: the protocol core never touches the outside world.
IO_MODULES = {
    "asyncio",
    "socket",
    "ssl",
    "select",
    "selectors",
    "logging",
    "os",
    "subprocess",
    "threading",
    "multiprocessing",
    "http",
    "urllib",
    "io",
    "shutil",
    "pathlib",
    "time",
    "aiohttp",
    "starlette",
    "uvicorn",
    "anyio",
    "httpx",
    "requests",
    "sys",
}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def modules_of(layer: str) -> list[Path]:
    return sorted((PACKAGE / layer).rglob("*.py"))


@pytest.mark.parametrize("path", modules_of("protocol"), ids=lambda p: p.name)
def test_protocol_core_is_sans_io(path: Path) -> None:
    offending = {m for m in imported_modules(path) if m.split(".")[0] in IO_MODULES}
    assert not offending, f"{path.name} imports I/O modules {sorted(offending)}"


@pytest.mark.parametrize("layer", sorted(ALLOWED_LAYERS))
def test_layers_import_only_downwards(layer: str) -> None:
    for path in modules_of(layer):
        for module in imported_modules(path):
            parts = module.split(".")
            if parts[0] != "gateway" or len(parts) < 2 or parts[1] in {layer, "errors"}:
                continue
            if parts[1] == "config" and layer != "protocol":
                continue  # the settings object (gateway/config.py) is read by every I/O layer
            assert parts[1] in ALLOWED_LAYERS[layer], (
                f"{path.relative_to(PACKAGE)} ({layer}) imports {module}"
            )


def test_the_checker_sees_a_forbidden_import(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("import logging\nfrom asyncio import sleep\nfrom gateway.server import app\n")
    assert imported_modules(sample) == {"logging", "asyncio", "gateway.server"}
