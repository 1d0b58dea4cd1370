"""`sparkstack up --dry-run`: every command `up` would run (the native argv or the
full container command) with its environment by name and the files it would
write, in start order. Nothing is started and nothing is written."""

from __future__ import annotations

import os
import shlex

from sparkstack.containers.command import create_argv
from sparkstack.containers.launch import FORWARDED_ENV, engine_container, engine_launch
from sparkstack.engines.base import MemoryEstimate
from sparkstack.engines.registry import get_engine
from sparkstack.errors import SparkstackError
from sparkstack.planner.plan import StackPlan
from sparkstack.settings import Settings
from sparkstack.stack.schema import Stack

FIRST_PORT = 8000
"""Ports shown in a dry run; `up` picks free ones at start."""


def _planned(plan: StackPlan, name: str) -> MemoryEstimate | None:
    model = plan.model(name)
    return model.estimate() if model.engine_args or model.engine_env else None


def dry_run_commands(
    stack: Stack, plan: StackPlan, settings: Settings, cuda: bool
) -> dict[str, list[str]]:
    """Model name -> the command `up` would run for it (the container ``create`` for
    containers), in start order then the on-demand models."""
    out: dict[str, list[str]] = {}
    for name, _port, command, _env, _files in _commands(stack, plan, settings, cuda):
        out[name] = command
    return out


def _commands(
    stack: Stack, plan: StackPlan, settings: Settings, cuda: bool
) -> list[tuple[str, int, list[str], dict[str, str], dict[str, str]]]:
    names = [*plan.start_order, *(n for n in stack.models if n not in plan.start_order)]
    rows = []
    for index, name in enumerate(names):
        spec = stack.models[name]
        adapter = get_engine(spec.engine)
        if not adapter.managed:
            continue
        port = FIRST_PORT + index
        launch = engine_launch(stack, spec, adapter, port, settings, _planned(plan, name))
        env = dict(launch.env)
        if adapter.internal_key_env:
            env[adapter.internal_key_env] = "<random key, made at start>"
        config = engine_container(stack, spec, adapter, settings, cuda)
        if config is None:
            command = launch.argv
        else:
            env.update({k: "<from the environment>" for k in FORWARDED_ENV if k in os.environ})
            command = create_argv(config, launch.argv, list(env), port, list(launch.files))
        rows.append((name, port, command, env, launch.files))
    return rows


def render_dry_run(stack: Stack, plan: StackPlan, settings: Settings, cuda: bool) -> str:
    lines = [f"# sparkstack up --dry-run: nothing is started (engine ports from {FIRST_PORT}; "
             "`up` picks free ones)"]  # fmt: skip
    try:
        rows = _commands(stack, plan, settings, cuda)
    except SparkstackError as exc:
        return "\n".join([*lines, f"# cannot build the commands: {exc}"])
    for name, port, command, env, files in rows:
        spec = stack.models[name]
        adapter = get_engine(spec.engine)
        config = engine_container(stack, spec, adapter, settings, cuda)
        runtime = f"container {config.image} ({config.image_source})" if config else "native"
        lines.append(f"\n## {name} ({spec.engine}, {runtime}, port {port})")
        if config is not None:
            lines.append(f"{config.cli} rm -f {config.name}   # a leftover of a killed run")
        lines.append(shlex.join(command))
        if config is not None:
            lines.append(f"{config.cli} start {config.name}")
            lines.append(f"{config.cli} logs -f {config.name} >> {settings.log_dir / name}.log")
            for note in config.notes:
                lines.append(f"# {note}")
        for key, value in env.items():
            lines.append(f"# env {key}={value}")
        for path, text in files.items():
            lines.append(f"# file {path}:")
            lines += [f"#   {line}" for line in text.splitlines()]
    return "\n".join(lines)
