"""The small interface every engine adapter implements.

An adapter turns a ``ModelSpec`` into a ``LaunchSpec`` (argv, environment,
readiness path) and says how to reach and address the running engine. Adapters
hold no state: one instance serves every model of its engine.
"""

from __future__ import annotations

import os
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import aiohttp

from sparkstack.errors import EngineError, SparkstackError
from sparkstack.machine import MachineProfile
from sparkstack.modelfacts.catalog import Recipe, find_recipe
from sparkstack.modelfacts.facts import ModelFacts
from sparkstack.settings import Settings
from sparkstack.stack.schema import ModelSpec
from sparkstack.stack.sources import resolve_model_source

GUARD_DIR = Path(__file__).parent / "guard"
"""Holds ``sparkstack_engine_guard.py``, put on the engine's PYTHONPATH (see there)."""
GUARD_MODULE = "sparkstack_engine_guard"
GUARD_IN_CONTAINER = "/opt/sparkstack/guard"
"""Where GUARD_DIR is mounted (read-only) in an engine's container."""
ENGINE_KEY_ENV = "SPARKSTACK_ENGINE_KEY"
"""The guard reads the engine's key from here; the supervisor sets it per engine."""


def guard_env() -> dict[str, str]:
    """PYTHONPATH for an engine whose Python loads the guard."""
    inherited = os.environ.get("PYTHONPATH")
    return {"PYTHONPATH": os.pathsep.join(filter(None, [str(GUARD_DIR), inherited]))}


@dataclass(frozen=True)
class LaunchSpec:
    """Everything the supervisor needs to start one engine process."""

    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    """Added to (and overriding) the supervisor's own environment."""
    ready_path: str = "/health"
    """Path on the engine that answers 200 once it serves requests."""
    files: dict[str, str] = field(default_factory=dict)
    """Files the engine reads (path -> text), written just before it starts (and only
    printed by ``up --dry-run``)."""
    live_path: str | None = None
    """Path probed for liveness once ready (default ``ready_path``); it must answer
    while the engine is busy generating."""


@dataclass
class MemoryEstimate:
    """What one engine will hold for one model, and the flags that make it so."""

    weights_bytes: int
    kv_bytes_per_token: int
    kv_bytes: int
    kv_tokens: int
    overhead_bytes: int
    spike_bytes: int
    """Transient on top of the resident total at the first requests (CUDA graphs,
    torch.compile); gone after warm-up but must fit in the headroom."""
    engine_args: list[str] = field(default_factory=list)
    engine_env: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def total_bytes(self) -> int:
        return self.weights_bytes + self.kv_bytes + self.overhead_bytes


class EngineAdapter(ABC):
    """One engine kind. Subclasses set ``name`` and register with ``register_engine``."""

    name: ClassVar[str]
    managed: ClassVar[bool] = True
    """False for engines sparkstack only routes to and never starts (external)."""
    internal_key_env: ClassVar[str | None] = None
    """Environment variable through which the engine takes the API key it requires;
    the supervisor sets a random one per engine so only the gateway reaches it."""
    metrics_path: ClassVar[str | None] = None
    """Where the engine serves Prometheus metrics, relayed with a model label."""
    routes: ClassVar[dict[str, str]] = {
        "/v1/chat/completions": "/v1/chat/completions",
        "/v1/completions": "/v1/completions",
        "/v1/embeddings": "/v1/embeddings",
    }
    """Gateway route -> the engine's path; a route missing here is a 404."""
    query_params: ClassVar[frozenset[str]] = frozenset()
    """Query parameters the engine takes on the forwarded routes; the gateway re-encodes
    these from the client's and drops every other (the OpenAI routes take none)."""
    supports_sleep: ClassVar[bool] = False
    """The engine can put a loaded model to sleep and wake it without a restart."""
    default_image: ClassVar[str | None] = None
    """The pinned container image for ``runtime: container`` (a catalog recipe or the
    stack's ``image:`` overrides it)."""
    container_command: ClassVar[list[str]] = []
    """The engine's command inside its image (the native venv's python is not there)."""
    reports_stream_usage: ClassVar[bool] = True
    """False when the engine ignores ``stream_options.include_usage``; the gateway then
    adds the usage chunk, with prompt tokens from ``count_prompt_tokens``."""
    takes_guard: ClassVar[bool] = False
    """The engine's Python can load the key guard (``guarded_argv``)."""

    def guarded_argv(self, argv: list[str]) -> list[str] | None:
        """``argv`` (a command not made by sparkstack, e.g. the image's) changed to load
        the guard from the engine's PYTHONPATH; None when that command cannot take it."""
        return None

    request_ids_as_uuid: ClassVar[bool] = False
    """True when the engine refuses (400) an ``x-request-id`` that is not a UUID; the
    gateway then forwards only ids in that shape (its own are)."""

    @abstractmethod
    def launch(
        self, spec: ModelSpec, port: int, settings: Settings, planned: MemoryEstimate | None
    ) -> LaunchSpec:
        """The process to start so that the engine serves ``spec`` on 127.0.0.1:``port``,
        with the planner's ``engine_args``/``engine_env`` when there is a plan."""

    def launch_estimate(
        self, spec: ModelSpec, planned: MemoryEstimate | None
    ) -> MemoryEstimate | None:
        """The plan as one engine process reads it; an engine whose memory flags count
        per rank (a model over several GPUs or nodes) divides them here."""
        return planned

    def parallel_args(self, spec: ModelSpec) -> list[str]:
        """Flags for the model's tensor/pipeline parallel sizes and its executor."""
        return []

    def launch_flags(self, spec: ModelSpec, planned: MemoryEstimate | None) -> list[str]:
        """The plan's flags exactly as ``launch`` passes them (per rank, then the
        parallel sizes): what ``sparkstack plan`` prints."""
        return [*planned_parts(self.launch_estimate(spec, planned))[0], *self.parallel_args(spec)]

    def memory(
        self, facts: ModelFacts, spec: ModelSpec, machine: MachineProfile, free_at_start: int
    ) -> MemoryEstimate:
        """The engine's memory model: weights, KV, overhead, spike, and their flags.
        ``free_at_start`` is what the models started before it leave free."""
        raise EngineError(f"models.{spec.name}: engine {spec.engine!r} has no memory model")

    def base_url(self, spec: ModelSpec, port: int | None) -> str:
        """Where the gateway forwards ``/v1/...`` requests for this model."""
        return f"http://127.0.0.1:{port}"

    def upstream_model(self, spec: ModelSpec) -> str:
        """The ``model`` value the engine expects in request bodies."""
        return spec.name

    def api_key(self, spec: ModelSpec) -> str | None:
        """The bearer token the engine expects, read from the environment."""
        if spec.api_key_env:
            return os.environ.get(spec.api_key_env) or None
        return None

    def can_sleep(self, planned: MemoryEstimate | None) -> bool:
        """True when the engine, started with ``planned``'s flags, can sleep and wake
        without a restart (otherwise an idle model is stopped)."""
        return False

    def sleep_level(self, unified: bool) -> int:
        """The sleep level to use on this machine (``unified``: CPU and GPU share memory)."""
        return 1

    def kv_tokens_from_log(self, text: str) -> int | None:
        """The KV-cache size (tokens or cells) the engine reported in ``text``, its log
        since the last start; None when it says nothing."""
        return None

    async def sleep(self, session: aiohttp.ClientSession, base_url: str, level: int,
                    api_key: str | None) -> None:  # fmt: skip
        raise EngineError(f"engine {self.name!r} has no sleep mode")

    async def wake_up(self, session: aiohttp.ClientSession, base_url: str, level: int,
                      api_key: str | None) -> None:  # fmt: skip
        raise EngineError(f"engine {self.name!r} has no sleep mode")

    def upstream_path(self, route: str) -> str | None:
        return self.routes.get(route)

    async def count_prompt_tokens(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        payload: dict[str, Any],
        api_key: str | None,
    ) -> int:
        """Prompt tokens of a request, asked of the engine's tokenizer (0 if unknown)."""
        return 0

    def model_bytes(self, spec: ModelSpec) -> int:
        """Size of the model's local files (0 when remote); larger models start first."""
        if not spec.model:
            return 0
        try:
            path = Path(resolve_model_source(spec.model))
        except SparkstackError:
            return 0
        if path.is_file():
            return path.stat().st_size
        if path.is_dir():
            return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
        return 0

    @staticmethod
    def venv_command(
        spec: ModelSpec, settings: Settings, venv: str, module: str, install_hint: str
    ) -> list[str]:
        """``spec.command``, else ``SPARKSTACK_HOME/engines/<venv>/bin/python -m module``."""
        if spec.command:
            return list(spec.command)
        python = settings.engines_dir / venv / "bin" / "python"
        if not python.exists():
            raise EngineError(
                f"models.{spec.name}: engine {spec.engine!r} is not installed ({python} is "
                f"missing); {install_hint}, or set command: to a python that has it"
            )
        return [str(python), "-m", module]


def last_match(pattern: re.Pattern[str], text: str) -> int | None:
    """The number in the last match of ``pattern`` in ``text`` (commas allowed)."""
    found = pattern.findall(text)
    return int(found[-1].replace(",", "")) if found else None


def local_source_env(source: str) -> dict[str, str]:
    """A model that is a local path never needs the hub: keep the engine offline."""
    return {"HF_HUB_OFFLINE": "1"} if Path(source).exists() else {}


def kv_dtype_bytes(spec: ModelSpec, facts: ModelFacts) -> int:
    """Bytes per KV element: fp8 = 1, auto = the model's dtype."""
    return 1 if spec.kv_cache_dtype == "fp8" else facts.dtype_bytes


def planned_shape(spec: ModelSpec, facts: ModelFacts) -> tuple[int, int, int]:
    """(max model length, sequences, KV bytes per element) a plan sizes the KV cache for."""
    context = spec.context or facts.max_context
    if not context:
        raise EngineError(
            f"models.{spec.name}.context: the model's config gives no context length "
            "(max_position_embeddings or an alias); set context: in the stack file"
        )
    return context, spec.concurrency or 1, kv_dtype_bytes(spec, facts)


def planned_parts(planned: MemoryEstimate | None) -> tuple[list[str], dict[str, str]]:
    if planned is None:
        return [], {}
    return list(planned.engine_args), dict(planned.engine_env)


def finish_launch(
    spec: ModelSpec,
    source: str,
    head: list[str],
    planned: MemoryEstimate | None,
    ready_path: str,
    extra_args: list[str] | None = None,
    files: dict[str, str] | None = None,
    live_path: str | None = None,
) -> LaunchSpec:
    """argv = head + the plan's flags + ``extra_args`` + the catalog recipe's flags
    (those the stack's ``args`` do not set) + the stack's ``args`` (last, so they win);
    env = offline for local models + the guard's PYTHONPATH when sparkstack runs the
    engine's Python + the plan's env + the recipe's + the stack's env."""
    args, env = planned_parts(planned)
    guard = guard_env() if spec.command is None else {}
    recipe = applied_recipe(spec)
    return LaunchSpec(
        argv=[*head, *args, *(extra_args or []), *recipe.args, *spec.args],
        env={**local_source_env(source), **guard, **env, **recipe.env, **spec.env},
        ready_path=ready_path,
        files=dict(files or {}),
        live_path=live_path,
    )


def applied_recipe(spec: ModelSpec) -> Recipe:
    """The catalog's serving recipe for this model and engine, less every flag the
    stack's ``args`` set itself (empty with ``recipe: false``)."""
    recipe = find_recipe(spec.model or "", spec.engine) if spec.recipe else None
    if recipe is None:
        return Recipe(source="")
    own = {arg.split("=", 1)[0] for arg in spec.args if arg.startswith("-")}
    args: list[str] = []
    for flag in recipe.flags():
        if flag[0].split("=", 1)[0] not in own:
            args += flag
    env = {k: v for k, v in recipe.env.items() if k not in spec.env}
    return recipe.model_copy(update={"args": args, "env": env})


def container_image(spec: ModelSpec, adapter: EngineAdapter) -> tuple[str | None, str]:
    """(image, where it came from): the stack's ``image:``, the catalog recipe's
    image for this engine, or the engine's pinned default."""
    if spec.image:
        return spec.image, "stack file"
    recipe = find_recipe(spec.model or "", spec.engine) if spec.recipe else None
    if recipe is not None and recipe.image:
        return recipe.image, f"catalog recipe ({recipe.source})"
    return adapter.default_image, f"engine default ({adapter.name})"
