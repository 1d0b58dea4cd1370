"""The built-in demo stack served by `sparkstack up` when no stack file is given."""

from __future__ import annotations

from importlib.resources import files

from sparkstack.stack.loader import load_stack_text
from sparkstack.stack.schema import Stack

DEMO_SOURCE = "demo stack (sparkstack/stack/demo.yaml)"


def demo_stack_text() -> str:
    return files("sparkstack.stack").joinpath("demo.yaml").read_text(encoding="utf-8")


def demo_stack() -> Stack:
    return load_stack_text(demo_stack_text(), DEMO_SOURCE)
