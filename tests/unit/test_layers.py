"""One-way layers (issue 18): no engine's name or flag in the supervisor, the
gateway or the planner (engine knowledge stays behind the adapter interface),
and no import inside a function except an optional heavy dependency. The import
direction itself is checked by import-linter in README command 2."""

from __future__ import annotations

import ast
import re
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "sparkstack"
ENGINE_WORDS = re.compile(r"vllm|llama|sglang|trtllm|tensorrt", re.IGNORECASE)
LAZY_ALLOWED = {"pynvml", "uvloop", "matplotlib", "tokenizers", "uvicorn", "huggingface_hub"}
"""Optional or heavy third-party modules, imported where first needed."""


def code_strings_and_names(tree: ast.AST) -> list[tuple[int, str]]:
    """Identifiers and string constants, docstrings left out."""
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            found.append((node.lineno, node.id))
        elif isinstance(node, ast.Attribute):
            found.append((node.lineno, node.attr))
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            found.append((node.lineno, node.name))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            if id(node) not in docstrings:
                found.append((node.lineno, node.value))
    return found


def test_no_engine_knowledge_outside_engines() -> None:
    offenders = []
    for folder in ("supervisor", "gateway", "planner"):
        for path in sorted((SRC / folder).rglob("*.py")):
            for line, text in code_strings_and_names(ast.parse(path.read_text())):
                if ENGINE_WORDS.search(text) or text.startswith("--") or text == "external":
                    offenders.append(f"{path.relative_to(SRC)}:{line}: {text!r}")
    assert offenders == []


def test_no_import_inside_a_function_but_optional_heavy_ones() -> None:
    offenders = []
    for path in sorted(SRC.rglob("*.py")):
        tree = ast.parse(path.read_text())
        for func in ast.walk(tree):
            if not isinstance(func, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for node in ast.walk(func):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom):
                    names = [node.module or ""]
                else:
                    continue
                for name in names:
                    if name.split(".")[0] not in LAZY_ALLOWED:
                        offenders.append(f"{path.relative_to(SRC)}:{node.lineno}: {name}")
    assert offenders == []
