"""Resolving one model's container settings: the stack-wide ``container:``
defaults, the model's own ``image:``/``container_cli:``, the CLI found on PATH,
the mounts its model needs, and the labels that name stack and model."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from sparkstack.engines.base import GUARD_DIR, GUARD_IN_CONTAINER, EngineAdapter, container_image
from sparkstack.errors import SupervisorError
from sparkstack.stack.schema import ContainerCli, ContainerSpec, ModelSpec, Runtime, Stack
from sparkstack.stack.sources import resolve_model_source

STACK_LABEL = "sparkstack.stack"
MODEL_LABEL = "sparkstack.model"
ENGINE_LABEL = "sparkstack.engine"
HF_CACHE_IN_CONTAINER = "/root/.cache/huggingface"
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


@dataclass(frozen=True)
class ContainerConfig:
    """Everything needed to create, run and remove one model's container."""

    model: str
    cli: str
    """``docker`` or ``podman`` (the program name; found on PATH at start)."""
    image: str
    image_source: str
    name: str
    labels: dict[str, str]
    cli_args: list[str] = field(default_factory=list)
    cli_env: dict[str, str] = field(default_factory=dict)
    network: str = "host"
    gpus: bool = False
    ipc_host: bool = True
    shm_size: str | None = None
    ulimits: dict[str, str] = field(default_factory=dict)
    mounts: list[str] = field(default_factory=list)
    run_args: list[str] = field(default_factory=list)
    pull: str = "missing"
    notes: list[str] = field(default_factory=list)
    """Why the command differs from a hand-written one (e.g. shm with --ipc host)."""

    def cli_command(self, *args: str) -> list[str]:
        return [self.cli, *self.cli_args, *args]


def runtime_of(stack: Stack, spec: ModelSpec) -> Runtime:
    return spec.runtime or stack.container.runtime


def pick_cli(wanted: ContainerCli, model: str) -> str:
    """The container CLI: the one named, or on auto whichever is on PATH, docker first."""
    if wanted is not ContainerCli.AUTO:
        return wanted.value
    for cli in ("docker", "podman"):
        if shutil.which(cli):
            return cli
    raise SupervisorError(
        f"{model}: runtime container needs docker or podman, and neither is on PATH; "
        "install one, or set runtime: native for this model"
    )


def require_cli(config: ContainerConfig) -> str:
    path = shutil.which(config.cli)
    if path is None:
        raise SupervisorError(
            f"{config.model}: container CLI {config.cli!r} is not on PATH; install it, set "
            "container_cli: to one that is (docker | podman), or set runtime: native"
        )
    return path


def container_name(stack_id: str, model: str) -> str:
    """A per-stack, per-model name: a second stack on the host never collides."""
    digest = hashlib.sha256(stack_id.encode()).hexdigest()[:8]
    return f"sparkstack-{_UNSAFE.sub('-', model)}-{digest}"


def hf_cache_dir(spec: ContainerSpec) -> Path | None:
    if spec.hf_cache:
        return Path(spec.hf_cache).expanduser()
    home = os.environ.get("HF_HOME")
    path = Path(home) if home else Path.home() / ".cache" / "huggingface"
    return path if path.is_dir() else None


def _model_mounts(spec: ModelSpec, defaults: ContainerSpec) -> tuple[list[str], list[str]]:
    """A local model file or folder at the same path, read-only; otherwise the HF cache
    ("download once, mount everywhere"): read-only when the repo is already in it."""
    mounts: list[str] = []
    notes: list[str] = []
    source = resolve_model_source(spec.model or "")
    if Path(source).exists():
        mounts.append(f"{source}:{source}:ro")
        return mounts, notes
    cache = hf_cache_dir(defaults)
    if cache is None:
        notes.append("no HF cache on the host: the engine downloads the weights inside")
        return mounts, notes
    repo = cache / "hub" / ("models--" + source.replace("/", "--"))
    mode = ":ro" if repo.is_dir() else ""
    if not mode:
        notes.append(f"{source} is not in {cache} yet: the cache is mounted writable")
    mounts.append(f"{cache}:{HF_CACHE_IN_CONTAINER}{mode}")
    return mounts, notes


def guard_mount(adapter: EngineAdapter) -> list[str]:
    """The key guard's folder, read-only, where the engine's PYTHONPATH finds it."""
    return [f"{GUARD_DIR}:{GUARD_IN_CONTAINER}:ro"] if adapter.takes_guard else []


def container_config(
    stack: Stack, spec: ModelSpec, adapter: EngineAdapter, stack_id: str, cuda: bool
) -> ContainerConfig:
    """``stack_id`` labels every container of one running stack (its state folder)."""
    defaults = stack.container
    image, source = container_image(spec, adapter)
    if not image:
        raise SupervisorError(
            f"{spec.name}: engine {spec.engine!r} has no default container image; set image: "
            "for this model"
        )
    mounts, notes = _model_mounts(spec, defaults)
    shm = defaults.shm_size
    if defaults.ipc_host and shm:
        notes.append(f"--shm-size {shm} is left out: with --ipc host the host's /dev/shm is "
                     "shared (podman refuses both)")  # fmt: skip
        shm = None
    return ContainerConfig(
        model=spec.name,
        cli=pick_cli(spec.container_cli or defaults.cli, spec.name),
        image=image,
        image_source=source,
        name=container_name(stack_id, spec.name),
        labels={STACK_LABEL: stack_id, MODEL_LABEL: spec.name, ENGINE_LABEL: spec.engine},
        cli_args=list(defaults.cli_args),
        cli_env=dict(defaults.cli_env),
        network=defaults.network,
        gpus=defaults.gpus == "all" or (defaults.gpus == "auto" and cuda),
        ipc_host=defaults.ipc_host,
        shm_size=shm,
        ulimits=dict(defaults.ulimits),
        mounts=[*mounts, *guard_mount(adapter), *defaults.mounts],
        run_args=list(defaults.run_args),
        pull=defaults.pull,
        notes=notes,
    )
