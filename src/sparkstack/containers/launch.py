"""How a model's engine is launched under its runtime: in a container the engine
command is the image's (``container_command``) unless the stack sets ``command:``;
the container settings, the stack's label and the record of created containers."""

from __future__ import annotations

from pathlib import Path

from sparkstack.containers.config import ContainerConfig, container_config, runtime_of
from sparkstack.engines.base import EngineAdapter, LaunchSpec, MemoryEstimate, container_image
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
    """The adapter's launch; in a container, with the image's engine command."""
    if runtime_of(stack, spec) is Runtime.CONTAINER and not spec.command:
        spec = spec.model_copy(update={"command": list(adapter.container_command)})
    return adapter.launch(spec, port, settings, planned)


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
