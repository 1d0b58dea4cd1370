"""The one construction site of an engine's process: a native ``ManagedProcess``,
or a ``ContainerProcess`` for ``runtime: container``; both satisfy
``EngineProcess``, the interface the supervisor and readiness use."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

from sparkstack.containers.launch import FORWARDED_ENV, engine_container, record_file
from sparkstack.containers.process import ContainerProcess, write_files
from sparkstack.engines.base import EngineAdapter, LaunchSpec
from sparkstack.settings import Settings
from sparkstack.stack.schema import ModelSpec, Stack
from sparkstack.supervisor.process import ManagedProcess


class EngineProcess(Protocol):
    name: str
    argv: list[str]
    log_path: Path

    @property
    def pid(self) -> int | None: ...

    @property
    def returncode(self) -> int | None: ...

    async def start(self) -> None: ...

    async def wait(self) -> int: ...

    async def stop(self, grace: float) -> str: ...

    def kill(self) -> None: ...


def engine_process(
    stack: Stack,
    spec: ModelSpec,
    adapter: EngineAdapter,
    launch: LaunchSpec,
    env: dict[str, str],
    port: int,
    settings: Settings,
    cuda: bool,
) -> EngineProcess:
    """``env`` is the launch environment plus the engine's internal key."""
    log_path = settings.log_dir / f"{spec.name}.log"
    config = engine_container(stack, spec, adapter, settings, cuda)
    if config is None:
        write_files(launch.files)
        return ManagedProcess(spec.name, launch.argv, env, log_path)
    # passed by name like every variable: the CLI's environment carries the value
    passed = {name: os.environ[name] for name in FORWARDED_ENV if name in os.environ}
    return ContainerProcess(
        spec.name, config, launch.argv, {**passed, **env}, log_path, port, launch.files,
        record_file(settings),
    )  # fmt: skip
