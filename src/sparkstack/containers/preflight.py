"""Checks `up` makes before it starts anything: every container model has its CLI
on PATH, and its image is on the machine unless it may be pulled."""

from __future__ import annotations

import os
import subprocess

from sparkstack.containers.config import require_cli
from sparkstack.containers.launch import engine_container
from sparkstack.engines.registry import get_engine
from sparkstack.errors import SupervisorError
from sparkstack.settings import Settings
from sparkstack.stack.schema import Stack


def check_containers(stack: Stack, settings: Settings, cuda: bool) -> None:
    for spec in stack.models.values():
        adapter = get_engine(spec.engine)
        if not adapter.managed:
            continue
        config = engine_container(stack, spec, adapter, settings, cuda)
        if config is None:
            continue
        require_cli(config)
        if config.pull != "never":
            continue
        probe = ["image", "exists"] if config.cli == "podman" else ["image", "inspect"]
        result = subprocess.run(
            config.cli_command(*probe, config.image),
            env={**os.environ, **config.cli_env},
            capture_output=True,
            timeout=60,
            check=False,
        )
        if result.returncode != 0:
            raise SupervisorError(
                f"{spec.name}: image {config.image} ({config.image_source}) is not on this "
                f"machine and container.pull is never; `{config.cli} pull {config.image}` "
                "(or build it), or set image: to one you have; nothing was started"
            )
