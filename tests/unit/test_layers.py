"""The dependency rule between layers (docs/architecture.md), checked on the source's imports.

client → io → engines (ingest, export) → Airflow layer (hooks, operators); the emulator imports
nothing of the package (it is there to check the client). Only the Airflow layer resolves a
connection id or builds an ``ObjectStoragePath``.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "airflow_provider_instasent"

#: layer -> the package's top-level modules it may import (besides itself)
ALLOWED: dict[str, set[str]] = {
    "client": set(),
    "datatypes": set(),
    "progress": set(),
    "_html": set(),
    "io": {"client"},
    "ingest": {"client", "io", "datatypes", "progress", "_html"},
    "export": {"client", "io", "datatypes", "progress", "_html"},
    "sync": {"client", "io", "ingest", "export", "datatypes", "progress", "_html"},
    "sms": {"client", "io", "ingest", "sync", "datatypes", "progress"},
    "hooks": {"client", "export", "datatypes", "_airflow_compat", "get_provider_info"},  # the one form definition
    "operators": {"client", "io", "ingest", "export", "sync", "sms", "hooks", "datatypes", "_airflow_compat"},
    "emulator": set(),
}
#: layers that must run without Airflow installed (the analyst's install)
AIRFLOW_FREE = {"client", "datatypes", "progress", "_html", "io", "ingest", "export", "sync", "sms", "emulator"}


def _layer(path: Path) -> str:
    rel = path.relative_to(PACKAGE)
    return rel.parts[0].removesuffix(".py")


def _imports(path: Path) -> list[tuple[str, bool]]:
    """(imported module, at module level?) for every import; relative ones made absolute."""
    tree = ast.parse(path.read_text())
    package = ".".join(("airflow_provider_instasent", *path.relative_to(PACKAGE).parent.parts))
    top_level = {id(node) for node in tree.body}
    out: list[tuple[str, bool]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, id(node) in top_level) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                name = ".".join([*base, node.module] if node.module else base)
            else:
                name = node.module or ""
            out.append((name, id(node) in top_level))
    return out


SOURCES = sorted(p for p in PACKAGE.rglob("*.py") if _layer(p) in ALLOWED)


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_follow_the_layers(path: Path) -> None:
    layer = _layer(path)
    for name, _ in _imports(path):
        parts = name.split(".")
        if parts[0] == "airflow_provider_instasent" and len(parts) > 1:
            target = parts[1]
            assert target == layer or target in ALLOWED[layer], f"{layer} must not import {name}"
        if layer in AIRFLOW_FREE:
            assert parts[0] != "airflow", f"{layer} must not import Airflow ({name})"


def test_only_the_airflow_layer_resolves_connections() -> None:
    pattern = re.compile(r"get_connection\(|ObjectStoragePath\(")
    offenders = [
        str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")
        if _layer(p) not in ("hooks", "operators") and pattern.search(p.read_text())
    ]
    assert offenders == []
