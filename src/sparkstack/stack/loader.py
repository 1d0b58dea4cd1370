"""Reading a stack file: YAML in, a validated ``Stack`` out, or a ``StackError``
whose every line names the file, the line, the field path and the fix."""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from sparkstack.errors import StackError
from sparkstack.stack.schema import GatewaySpec, ModelSpec, Stack

_MODEL_FOR_DEPTH: dict[tuple[str, ...], type[BaseModel]] = {
    (): Stack,
    ("gateway",): GatewaySpec,
    ("models", "*"): ModelSpec,
}


def load_stack(path: Path, engines: Collection[str] | None = None) -> Stack:
    """Load and validate the stack file at ``path``; ``engines``, when given, are the
    engine names a model may use (an unknown one is an error with its line)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise StackError(
            f"{path}: no such stack file; check the path, or run `sparkstack up` with no "
            "file for the demo stack"
        ) from exc
    except OSError as exc:
        raise StackError(f"{path}: cannot read the stack file: {exc.strerror}") from exc
    return load_stack_text(text, str(path), engines)


def load_stack_text(text: str, source: str, engines: Collection[str] | None = None) -> Stack:
    """Validate stack-file ``text``; ``source`` names it in error messages."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f" line {mark.line + 1} column {mark.column + 1}" if mark else ""
        raise StackError(
            f"{source}{where}: invalid YAML: {exc.problem}. Fix the indentation or quoting "
            "there (values with ':' or '#' need quotes)."
        ) from exc
    except yaml.YAMLError as exc:
        raise StackError(f"{source}: invalid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise StackError(
            f"{source}: a stack file is a mapping with a models: section, "
            f"not {type(data).__name__}; see the README's stack file reference"
        )
    try:
        context = {"engines": set(engines)} if engines is not None else None
        return Stack.model_validate(data, context=context)
    except ValidationError as exc:
        lines = [_describe(error, root, source) for error in exc.errors()]
        raise StackError("\n".join(lines)) from exc


def _describe(error: Any, root: yaml.Node | None, source: str) -> str:
    loc = tuple(str(part) for part in error["loc"])
    path = ".".join(loc) or "(top level)"
    line = _line_of(root, loc)
    where = f"{source} line {line}" if line else source
    kind = error["type"]
    if kind == "extra_forbidden":
        allowed = ", ".join(_fields_at(loc[:-1]))
        message = f"unknown field {loc[-1]!r}; allowed here: {allowed}"
    elif kind == "missing":
        field = _field_info(loc)
        hint = f" ({field})" if field else ""
        message = f"required field {loc[-1]!r} is missing{hint}; add it"
    else:
        message = str(error["msg"]).removeprefix("Value error, ")
    return f"{where}: {path}: {message}"


def _schema_for(loc: tuple[str, ...]) -> type[BaseModel] | None:
    pattern = tuple("*" if i == 1 and loc and loc[0] == "models" else p for i, p in enumerate(loc))
    return _MODEL_FOR_DEPTH.get(pattern)


def _fields_at(loc: tuple[str, ...]) -> list[str]:
    schema = _schema_for(loc)
    if schema is None:
        return []
    return [name for name in schema.model_fields if name != "name" or schema is not ModelSpec]


def _field_info(loc: tuple[str, ...]) -> str:
    schema = _schema_for(loc[:-1])
    if schema is None or loc[-1] not in schema.model_fields:
        return ""
    return schema.model_fields[loc[-1]].description or ""


def _line_of(node: yaml.Node | None, loc: tuple[str, ...]) -> int | None:
    """1-based line of the deepest node along ``loc`` that exists in the YAML tree."""
    if node is None:
        return None
    line = node.start_mark.line + 1
    for part in loc:
        if not isinstance(node, yaml.MappingNode):
            break
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode) and key.value == part:
                line = key.start_mark.line + 1
                node = value
                break
        else:
            break
    return line
