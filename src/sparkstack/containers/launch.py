"""How a model's engine is launched under its runtime: in a container the engine
command is the image's (``container_command``) unless the stack sets ``command:``;
the container settings, the stack's label and the record of created containers."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from sparkstack.containers.config import ContainerConfig, container_config, runtime_of
from sparkstack.engines.base import (
    GUARD_IN_CONTAINER,
    EngineAdapter,
    LaunchSpec,
    MemoryEstimate,
    container_image,
)
from sparkstack.settings import Settings
from sparkstack.stack.schema import ModelSpec, Runtime, Stack

FORWARDED_ENV = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")
"""Host variables a container gets as they are (a native engine inherits them)."""


def stack_id(settings: Settings) -> str:
    """What labels a running stack's containers: its state folder (one `up` per folder)."""
    return str(settings.state_dir.resolve())


def record_file(settings: Settings) -> Path:
    return settings.state_dir / "containers.json"


def engine_launch(
    stack: Stack,
    spec: ModelSpec,
    adapter: EngineAdapter,
    port: int,
    settings: Settings,
    planned: MemoryEstimate | None,
) -> LaunchSpec:
    """The adapter's launch; in a container, with the image's engine command (or the
    stack's ``command:``) made to load the key guard where the engine can."""
    if runtime_of(stack, spec) is not Runtime.CONTAINER:
        return adapter.launch(spec, port, settings, planned)
    if not spec.command:
        spec = spec.model_copy(update={"command": list(adapter.container_command)})
    return with_guard(adapter, adapter.launch(spec, port, settings, planned))


def with_guard(adapter: EngineAdapter, launch: LaunchSpec) -> LaunchSpec:
    """The guard from its read-only mount (``container_config``) on PYTHONPATH."""
    argv = adapter.guarded_argv(launch.argv) if adapter.takes_guard else None
    if argv is None:
        return launch
    path = ":".join(filter(None, [GUARD_IN_CONTAINER, launch.env.get("PYTHONPATH")]))
    return replace(launch, argv=argv, env={**launch.env, "PYTHONPATH": path})


def engine_container(
    stack: Stack, spec: ModelSpec, adapter: EngineAdapter, settings: Settings, cuda: bool
) -> ContainerConfig | None:
    if runtime_of(stack, spec) is not Runtime.CONTAINER:
        return None
    return container_config(stack, spec, adapter, stack_id(settings), cuda)


def engine_image(stack: Stack, spec: ModelSpec, adapter: EngineAdapter) -> str | None:
    """The image a container model runs (None for a native one): for status and
    /v1/models ("keep that exact image reference in your runbook")."""
    if not adapter.managed or runtime_of(stack, spec) is not Runtime.CONTAINER:
        return None
    return container_image(spec, adapter)[0]
