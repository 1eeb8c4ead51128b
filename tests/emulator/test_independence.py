"""The emulator imports nothing from the client or the rest of the provider, nor from Airflow.

It is the independent reading of the API guides the client is checked against
(docs/adr/0005-emulator-keeps-its-own-api-facts.md): a shared module would let a shared mistake pass.
"""

from __future__ import annotations

import ast
from pathlib import Path

import airflow_provider_instasent.emulator as emulator_package

EMULATOR = Path(emulator_package.__file__).parent
PACKAGE = "airflow_provider_instasent"


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """``(line, absolute module name)`` of every import in ``path``; relative ones resolved."""
    out: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                out.append((node.lineno, node.module or ""))
            else:
                base = f"{PACKAGE}.emulator".split(".")[: 3 - node.level]
                out.append((node.lineno, ".".join([*base, node.module] if node.module else base)))
    return out


def test_the_emulator_imports_only_itself_the_standard_library_and_small_dependencies() -> None:
    offending = [
        f"{path.name}:{line}: {module}"
        for path in sorted(EMULATOR.glob("*.py"))
        for line, module in imported_modules(path)
        if module.split(".")[0] == "airflow"
        or (module.startswith(PACKAGE) and not module.startswith(f"{PACKAGE}.emulator"))
    ]
    assert not offending, offending
    assert imported_modules(EMULATOR / "app.py"), "the scan found no imports at all"
