"""Issue 18, for the planner's part: machine.py is a leaf (it imports nothing of
sparkstack but errors), engines never import the planner (each engine's memory
model lives beside its adapter, the per-attention-kind formulas in modelfacts),
and the planner asks the adapter whether it manages a model."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).parents[2] / "src" / "sparkstack"


def sparkstack_imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name.startswith("sparkstack")}


def test_machine_is_a_leaf() -> None:
    assert sparkstack_imports(SRC / "machine.py") == {"sparkstack.errors"}
    assert not (SRC / "planner" / "machine.py").exists()


def test_engines_and_modelfacts_never_import_the_planner() -> None:
    for folder in ("engines", "modelfacts"):
        for path in (SRC / folder).glob("*.py"):
            assert not any(m.startswith("sparkstack.planner") for m in sparkstack_imports(path)), (
                path
            )
    assert not (SRC / "planner" / "kv_cache.py").exists()


def test_the_planner_asks_the_adapter_not_the_engine_name() -> None:
    for path in (SRC / "planner").glob("*.py"):
        assert '"external"' not in path.read_text(), path
