"""`sparkstack export compose`: the whole stack as a compose project, the way
the seeds deploy (host network, the HF cache mounted, secrets in ``.env``).

Every managed engine becomes a service built with the containers runtime's own
pieces: the launch argv of ``containers.launch.engine_launch`` (the planned
flags, the image's engine command), the image, mounts, IPC, ulimits and GPUs of
``containers.config.container_config``. Engines listen on fixed ports (from
``engine_port``); the gateway service runs ``sparkstack up`` on a derived stack
in which each of them is an ``external`` model at that port, reached with the
engine key from ``.env`` (``SPARKSTACK_ENGINE_KEY``), so no secret is written in
either file."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from sparkstack import __version__
from sparkstack.containers.config import (
    HF_CACHE_IN_CONTAINER,
    ContainerConfig,
    container_config,
    guard_mount,
)
from sparkstack.containers.launch import FORWARDED_ENV, engine_launch
from sparkstack.deploy.weights import is_repo_id
from sparkstack.engines.base import (
    GUARD_DIR,
    GUARD_IN_CONTAINER,
    GUARD_MODULE,
    EngineAdapter,
    LaunchSpec,
)
from sparkstack.engines.registry import get_engine
from sparkstack.errors import SparkstackError
from sparkstack.modelfacts.hub import hf_cache_dir
from sparkstack.planner.plan import StackPlan
from sparkstack.settings import Settings
from sparkstack.stack.schema import Runtime, Stack

ENGINE_KEY_ENV = "SPARKSTACK_ENGINE_KEY"
STACK_IN_CONTAINER = "/etc/sparkstack/stack.yaml"
KEYS_IN_CONTAINER = "/root/.config/sparkstack"
DEFAULT_GATEWAY_IMAGE = f"localhost/sparkstack:{__version__}"


@dataclass(frozen=True)
class ComposeOptions:
    stack_name: str
    engine_port: int = 8100
    """The first engine's port; the next engines take the ports after it."""
    gateway_image: str = DEFAULT_GATEWAY_IMAGE
    gateway_command: tuple[str, ...] = ("sparkstack",)
    """The sparkstack program inside the gateway image."""
    cuda: bool = True
    keys_dir: Path | None = None


@dataclass
class ComposeBundle:
    """The files of the compose project, by name relative to its folder."""

    files: dict[str, str] = field(default_factory=dict)


def _escape(value: str) -> str:
    """compose interpolates ``$``: a literal one is ``$$``."""
    return value.replace("$", "$$")


def _gpu_deploy() -> dict[str, Any]:
    device = {"driver": "nvidia", "count": "all", "capabilities": ["gpu"]}
    return {"resources": {"reservations": {"devices": [device]}}}


def _cache_mount(config: ContainerConfig, from_hub: bool) -> list[str]:
    """For a model from the hub, the host's HF cache at the engine's, whether or not it
    exists on this machine yet ("download once, mount everywhere"; `pull` fills it)."""
    if not from_hub or any(f":{HF_CACHE_IN_CONTAINER}" in m for m in config.mounts):
        return []
    return [f"{hf_cache_dir().parent}:{HF_CACHE_IN_CONTAINER}"]


def _shm_mount(config: ContainerConfig) -> list[str]:
    """With ``ipc: host``, the host's /dev/shm bound as well: podman-compose (every
    release to 1.6) drops ``ipc:``, and the engine would get podman's 64 MiB /dev/shm
    (vLLM's shared-memory queues need more); docker with host IPC mounts the same."""
    return ["/dev/shm:/dev/shm"] if config.ipc_host else []


def _guarded(launch: LaunchSpec) -> bool:
    return GUARD_IN_CONTAINER in launch.env.get("PYTHONPATH", "").split(":")


def _guard_from_bundle(
    bundle: ComposeBundle, config: ContainerConfig, adapter: EngineAdapter, launch: LaunchSpec
) -> ContainerConfig:
    """The key guard from the project's own ``guard/`` folder rather than from this
    host's sparkstack install, so the project can be copied to another machine."""
    mounts = [m for m in config.mounts if m not in guard_mount(adapter)]
    if _guarded(launch):
        guard_file = f"{GUARD_MODULE}.py"
        bundle.files[f"guard/{guard_file}"] = (GUARD_DIR / guard_file).read_text(encoding="utf-8")
        mounts.append(f"./guard:{GUARD_IN_CONTAINER}:ro")
    return replace(config, mounts=mounts)


def _service(
    config: ContainerConfig,
    launch: LaunchSpec,
    key_env: str | None,
    files: list[str],
    from_hub: bool,
) -> dict[str, Any]:
    env: dict[str, str | None] = {k: _escape(v) for k, v in sorted(launch.env.items())}
    for forwarded in FORWARDED_ENV:
        # a bare name: the value from compose's own environment, unset when it has none
        # (podman-compose before 1.0.6 leaves `${NAME:-}` unexpanded)
        env.setdefault(forwarded, None)
    if key_env:
        env[key_env] = f"${{{ENGINE_KEY_ENV}:?set {ENGINE_KEY_ENV} in .env}}"
        if _guarded(launch):  # the guard reads the same key
            env[ENGINE_KEY_ENV] = env[key_env]
    service: dict[str, Any] = {
        "image": config.image,
        "container_name": config.name,
        "network_mode": "host",
        "ipc": "host" if config.ipc_host else None,
        "shm_size": None if config.ipc_host else config.shm_size,
        "entrypoint": [launch.argv[0]],
        "command": [_escape(arg) for arg in launch.argv[1:]],
        "env_file": [".env"],
        "environment": env,
        "volumes": [
            *config.mounts,
            *_cache_mount(config, from_hub),
            *_shm_mount(config),
            *files,
        ],
        "ulimits": {k: int(v) for k, v in config.ulimits.items()} or None,
        "labels": dict(config.labels),
        "restart": "unless-stopped",
        "deploy": _gpu_deploy() if config.gpus else None,
    }
    return {k: v for k, v in service.items() if v not in (None, [], {})}


def compose_bundle(
    stack: Stack, plan: StackPlan, settings: Settings, options: ComposeOptions
) -> ComposeBundle:
    """compose.yaml, the gateway's stack.compose.yaml, and any engine input files."""
    bundle = ComposeBundle()
    services: dict[str, Any] = {}
    gateway_models: dict[str, Any] = {}
    port = options.engine_port
    for name, spec in stack.models.items():
        adapter = get_engine(spec.engine)
        kept = spec.model_dump(exclude_defaults=True, exclude={"name"}, mode="json")
        if not adapter.managed:
            gateway_models[name] = kept
            continue
        as_container = spec.model_copy(update={"runtime": Runtime.CONTAINER})
        model_plan = plan.model(name)
        planned = model_plan.estimate() if model_plan.engine_args or model_plan.engine_env else None
        launch = engine_launch(stack, as_container, adapter, port, settings, planned)
        try:
            config = container_config(
                stack, as_container, adapter, f"compose:{options.stack_name}", options.cuda
            )
        except SparkstackError as exc:
            raise SparkstackError(f"export compose: {exc}") from exc
        files = []
        for path, text in launch.files.items():
            local = f"files/{name}-{PurePosixPath(path).name}"
            bundle.files[local] = text
            files.append(f"./{local}:{path}:ro")
        config = _guard_from_bundle(bundle, config, adapter, launch)
        services[name] = _service(
            config, launch, adapter.internal_key_env, files, is_repo_id(spec.model)
        )
        gateway_models[name] = {
            "engine": "external",
            "url": f"http://127.0.0.1:{port}",
            "model": adapter.upstream_model(spec),
            "aliases": list(spec.aliases),
            "api_key_env": ENGINE_KEY_ENV if adapter.internal_key_env else None,
        }
        gateway_models[name] = {k: v for k, v in gateway_models[name].items() if v}
        port += 1
    keys_dir = options.keys_dir or settings.config_dir
    services["gateway"] = {
        "image": options.gateway_image,
        "container_name": f"sparkstack-gateway-{options.stack_name}",
        "network_mode": "host",
        "env_file": [".env"],
        "volumes": [
            f"./stack.compose.yaml:{STACK_IN_CONTAINER}:ro",
            f"{keys_dir}:{KEYS_IN_CONTAINER}:ro",
            *stack.container.mounts,
        ],
        "command": [*options.gateway_command, "up", STACK_IN_CONTAINER],
        "depends_on": [n for n in services if n != "gateway"],
        "restart": "unless-stopped",
    }
    if not services["gateway"]["depends_on"]:
        del services["gateway"]["depends_on"]
    gateway_stack = {
        "machine": stack.machine if isinstance(stack.machine, str) else stack.machine.model_dump(),
        "host_reserve_gib": stack.host_reserve_gib,
        "gateway": stack.gateway.model_dump(exclude_defaults=True, mode="json"),
        "models": gateway_models,
    }
    header = (
        f"# compose project of the sparkstack stack {options.stack_name!r}, written by "
        "`sparkstack export compose`.\n# Secrets live in .env beside this file (chmod 600): "
        f"{ENGINE_KEY_ENV} (any long random string:\n# `openssl rand -hex 32`), HF_TOKEN if "
        "a model is gated. Stage the weights first: `sparkstack pull STACK`.\n"
    )
    bundle.files["compose.yaml"] = header + yaml.safe_dump(
        {"services": services}, sort_keys=False, width=100
    )
    bundle.files["stack.compose.yaml"] = (
        "# The gateway's view of the stack: each engine is its compose service.\n"
        + yaml.safe_dump(gateway_stack, sort_keys=False, width=100)
    )
    return bundle
