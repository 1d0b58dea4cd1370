"""Schema of the stack file (strict: unknown keys are errors).

A stack names the machine, the host reserve, the gateway and the models. Field
descriptions double as the stack file reference in the README.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from sparkstack.machine import Device

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]*$")


def parse_duration(value: object) -> float:
    """Seconds from a number or a string like ``90``, ``30s``, ``30m``, ``2h``, ``500ms``."""
    if isinstance(value, bool):
        raise ValueError("expected a duration like 30s, 30m or 2h")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match:
            return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    raise ValueError(f"{value!r} is not a duration; write e.g. 90, 30s, 30m or 2h")


Seconds = Annotated[float, Field(ge=0)]


class Policy(StrEnum):
    ALWAYS_ON = "always_on"
    ON_DEMAND = "on_demand"


class Runtime(StrEnum):
    NATIVE = "native"
    CONTAINER = "container"


class ContainerCli(StrEnum):
    AUTO = "auto"
    DOCKER = "docker"
    PODMAN = "podman"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GatewaySpec(_Strict):
    listen: str = Field(default="127.0.0.1:8080", description="host:port the gateway binds to.")
    max_body_mib: float = Field(default=64, gt=0, description="Largest request body (MiB).")
    max_inflight: int = Field(
        default=1024,
        gt=0,
        description="Requests in flight before 503 (not counting those queued for a model).",
    )
    wake_wait: Seconds = Field(
        default=600.0, description="How long a request waits for its model to wake; then 503."
    )
    max_waiting: int = Field(
        default=64, gt=0, description="Requests that may wait for one model to wake."
    )
    keepalive_interval: Seconds = Field(
        default=2.0, description="SSE comment interval for streams waiting on a wake."
    )
    wait_progress: Literal["comments", "events"] = Field(
        default="comments",
        description="What a stream waiting for its model to load gets every keepalive_interval: "
        "SSE comments, or events (chat.completion.chunk / text_completion chunks with an "
        "empty delta and a sparkstack_progress object: queue position, elapsed, expected).",
    )
    connect_timeout: Seconds = Field(default=30.0, description="Upstream connect timeout.")
    read_timeout: Seconds = Field(
        default=3600.0, description="Upstream silence allowed between bytes; never cuts a stream."
    )
    client_idle_timeout: Seconds = Field(
        default=75.0, description="An idle keep-alive client connection is closed after this."
    )
    client_header_timeout: Seconds = Field(
        default=10.0, description="A client must send a request's headers within this time."
    )
    client_body_timeout: Seconds = Field(
        default=60.0, description="A client must send a request's body within this time."
    )
    max_connections: int = Field(
        default=10000, gt=0, description="Open client connections before new ones get a 503."
    )
    cors_origins: list[str] = Field(
        default_factory=list,
        description=(
            "Browser origins (e.g. http://localhost:3000) allowed to call /v1/* and /admin/*; "
            "the gateway's own origin always is. '*' allows any (only with API keys)."
        ),
    )
    allowed_hosts: list[str] = Field(
        default_factory=list,
        description=(
            "Extra Host names the gateway answers to (e.g. behind a reverse proxy); the "
            "listen address, localhost and loopback addresses always are."
        ),
    )

    reload_drain_timeout: Seconds = Field(
        default=60.0,
        description="On a reload, how long a changed or removed model may finish the requests "
        "it serves before it is stopped anyway.",
    )

    _parse_durations = field_validator(
        "connect_timeout", "read_timeout", "wake_wait", "keepalive_interval",
        "client_idle_timeout", "client_header_timeout", "client_body_timeout",
        "reload_drain_timeout", mode="before",
    )(lambda cls, v: parse_duration(v))  # fmt: skip

    @field_validator("listen")
    @classmethod
    def _check_listen(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"{value!r} is not host:port; write e.g. 127.0.0.1:8080")
        return value

    @property
    def host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def is_loopback(self) -> bool:
        return self.host in ("localhost", "::1") or self.host.startswith("127.")

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])


class MachineSpec(_Strict):
    """A machine given by its numbers instead of a profile name."""

    total_gib: float = Field(gt=0, description="Memory the engines draw from (GiB).")
    bandwidth_gbs: float | None = Field(default=None, gt=0, description="Memory GB/s.")
    unified: bool = Field(default=True, description="CPU and GPU share the memory.")
    device: Device = Field(default="cuda", description="cuda or cpu.")


class ContainerSpec(_Strict):
    """How engines run in containers: the stack-wide defaults under ``container:``."""

    runtime: Runtime = Field(
        default=Runtime.NATIVE, description="Default runtime of every model: native | container."
    )
    cli: ContainerCli = Field(
        default=ContainerCli.AUTO,
        description="docker | podman | auto (whichever is on PATH, docker first).",
    )
    cli_args: list[str] = Field(
        default_factory=list,
        description="Global CLI flags before the subcommand, e.g. [--runtime, runc] for podman.",
    )
    cli_env: dict[str, str] = Field(
        default_factory=dict,
        description="Environment of the CLI itself, e.g. CONTAINERS_CONF for podman.",
    )
    network: str = Field(
        default="host",
        description="host (engine on 127.0.0.1 of the host) or publish (-p 127.0.0.1:PORT:PORT).",
    )
    gpus: str = Field(
        default="auto",
        description="auto (all GPUs on a cuda machine, none on cpu) | all | none.",
    )
    ipc_host: bool = Field(default=True, description="--ipc host (NCCL / torch shared memory).")
    shm_size: str | None = Field(
        default="16g", description="--shm-size when not --ipc host (docker/podman refuse both)."
    )
    ulimits: dict[str, str] = Field(
        default_factory=lambda: {"memlock": "-1", "stack": "67108864"},
        description="--ulimit NAME=VALUE; {} where the host refuses rlimits (rootless, nested).",
    )
    hf_cache: str | None = Field(
        default=None,
        description="Host HF cache mounted at /root/.cache/huggingface (default $HF_HOME or "
        "~/.cache/huggingface when it exists); read-only when the model is already in it.",
    )
    mounts: list[str] = Field(
        default_factory=list, description="Extra -v HOST:CONTAINER[:ro] mounts."
    )
    run_args: list[str] = Field(
        default_factory=list, description="Extra flags for `create` (placed before the image)."
    )
    pull: str = Field(
        default="missing", description="missing (pull when absent) | never (error when absent)."
    )

    @field_validator("network")
    @classmethod
    def _check_network(cls, value: str) -> str:
        if value not in ("host", "publish"):
            raise ValueError(f"network {value!r}: use host or publish")
        return value

    @field_validator("gpus")
    @classmethod
    def _check_gpus(cls, value: str) -> str:
        if value not in ("auto", "all", "none"):
            raise ValueError(f"gpus {value!r}: use auto, all or none")
        return value

    @field_validator("pull")
    @classmethod
    def _check_pull(cls, value: str) -> str:
        if value not in ("missing", "never"):
            raise ValueError(f"pull {value!r}: use missing or never")
        return value


class ModelSpec(_Strict):
    """One served model. ``name`` is filled from its key under ``models:``."""

    name: str = Field(default="", description="The key under models:; clients send it as model.")
    engine: str = Field(description="vllm | llamacpp | external (see `sparkstack engines`).")
    model: str | None = Field(
        default=None,
        description=(
            "What the engine loads: a HF repo id, a local folder, a .gguf file, or "
            "pkg:PACKAGE/PATH for a file shipped in an installed Python package. "
            "For external: the model name the upstream expects (default: the key)."
        ),
    )
    aliases: list[str] = Field(default_factory=list, description="Other names routed here.")
    context: int | None = Field(default=None, gt=0, description="Max tokens per sequence.")
    concurrency: int | None = Field(
        default=None, gt=0, description="Sequences that must fit at full context."
    )
    policy: Policy = Field(default=Policy.ALWAYS_ON, description="always_on | on_demand.")
    idle_timeout: Seconds = Field(
        default=1800.0, description="on_demand only: idle time before it is put away (30m)."
    )
    default_when_idle: bool = Field(
        default=False,
        description="on_demand only, one per stack: the baseline model. Started with the "
        "stack, never put away for idling, evicted for a larger model, and started again "
        "by itself once that one idles out.",
    )
    kv_cache_dtype: str = Field(default="auto", description="auto (model dtype) or fp8.")
    enforce_eager: bool = Field(
        default=False, description="No CUDA graphs / torch.compile: no first-request spike."
    )
    sleep_mode: bool = Field(
        default=False,
        description="vLLM: start with sleep mode; an idle on-demand model sleeps instead of "
        "stopping (level 1 on discrete GPUs, level 2 on unified memory).",
    )
    kv_cache_gib: float | None = Field(
        default=None, gt=0, description="Pin the KV-cache pool size instead of deriving it."
    )
    command: list[str] | None = Field(
        default=None,
        description=(
            "Command prefix that starts the engine (e.g. a venv's python -m ..., or "
            "docker run ...). Default: the engine's venv under SPARKSTACK_HOME."
        ),
    )
    args: list[str] = Field(default_factory=list, description="Extra engine arguments.")
    runtime: Runtime | None = Field(
        default=None, description="native | container (default: container.runtime)."
    )
    image: str | None = Field(
        default=None,
        description="Container image (default: the catalog recipe's, else the engine's).",
    )
    container_cli: ContainerCli | None = Field(
        default=None, description="docker | podman | auto (default: container.cli)."
    )
    recipe: bool = Field(
        default=True, description="Apply the catalog's serving recipe (parsers, env, image)."
    )
    env: dict[str, str] = Field(default_factory=dict, description="Extra engine environment.")
    url: str | None = Field(default=None, description="external only: the upstream base URL.")
    api_key_env: str | None = Field(
        default=None,
        description="Name of the environment variable holding the upstream's API key.",
    )
    tensor_parallel_size: int = Field(
        default=1, ge=1, description="vLLM: GPUs one layer is split over (--tensor-parallel-size)."
    )
    pipeline_parallel_size: int = Field(
        default=1, ge=1, description="vLLM: stages the layers are split into (pipeline parallel)."
    )
    nodes: list[str] = Field(
        default_factory=list,
        description="cluster: only: the nodes this model spans (Ray); empty = the head alone.",
    )
    max_inflight: int | None = Field(
        default=None,
        gt=0,
        description="Requests in flight for this model before new ones queue (default: an "
        "equal share of gateway.max_inflight), so one slow or hung model cannot starve the "
        "others.",
    )
    max_queue: int = Field(
        default=64,
        ge=0,
        description="Requests that may queue for this model's slots (highest key priority "
        "first, FIFO within one); beyond it a 429 with Retry-After. 0: no queue.",
    )
    queue_timeout: Seconds = Field(
        default=600.0, description="Longest a request waits in this model's queue; then 503."
    )
    drain_timeout: Seconds = Field(
        default=120.0,
        description="Before the model is put away (evicted, unloaded, asleep), how long new "
        "requests are held while those in flight finish.",
    )
    liveness_interval: Seconds = Field(
        default=10.0, description="Seconds between liveness probes of a ready engine (0: off)."
    )
    liveness_timeout: Seconds = Field(
        default=10.0, description="A liveness probe unanswered this long counts as failed."
    )
    liveness_failures: int = Field(
        default=3, gt=0, description="Failed liveness probes in a row that mark the engine hung."
    )
    stall_timeout: Seconds = Field(
        default=600.0,
        description="Requests in flight but no byte from the engine for this long: hung (0: off).",
    )
    startup_timeout: Seconds = Field(default=900.0, description="Seconds to become ready.")
    stop_timeout: Seconds = Field(default=10.0, description="Seconds between SIGTERM and SIGKILL.")

    _parse_durations = field_validator(
        "idle_timeout",
        "startup_timeout",
        "stop_timeout",
        "liveness_interval",
        "liveness_timeout",
        "stall_timeout",
        "queue_timeout",
        "drain_timeout",
        mode="before",
    )(lambda cls, v: parse_duration(v))

    @field_validator("kv_cache_dtype")
    @classmethod
    def _check_kv_dtype(cls, value: str) -> str:
        if value not in ("auto", "fp8"):
            raise ValueError(f"kv_cache_dtype {value!r}: use auto or fp8")
        return value

    @field_validator("engine")
    @classmethod
    def _check_engine(cls, value: str, info: ValidationInfo) -> str:
        """Known engine names come from the caller (``load_stack(..., engines=...)``):
        the stack layer sits below the engines and asks no registry itself."""
        known = (info.context or {}).get("engines")
        if known is not None and value not in known:
            raise ValueError(f"unknown engine {value!r}; use one of: {', '.join(sorted(known))}")
        return value

    @field_validator("aliases")
    @classmethod
    def _check_aliases(cls, value: list[str]) -> list[str]:
        for alias in value:
            if not _NAME.match(alias):
                raise ValueError(f"alias {alias!r} must be letters, digits and ._:/- only")
        return value

    @model_validator(mode="after")
    def _check_engine_fields(self) -> ModelSpec:
        if self.engine == "external":
            if not self.url:
                raise ValueError("engine external needs url: (e.g. http://10.0.0.5:8000)")
        elif not self.model:
            raise ValueError(
                f"engine {self.engine} needs model: (a HF repo id, a folder or a .gguf file)"
            )
        if self.default_when_idle and self.policy is not Policy.ON_DEMAND:
            raise ValueError(
                "default_when_idle: true needs policy: on_demand (an always_on model is "
                "never put away, so it never has to come back); set policy: on_demand"
            )
        return self

    @property
    def names(self) -> list[str]:
        return [self.name, *self.aliases]

    @property
    def world_size(self) -> int:
        """Engine ranks (one GPU each): tensor x pipeline parallel size."""
        return self.tensor_parallel_size * self.pipeline_parallel_size

    @property
    def spans_nodes(self) -> bool:
        return len(self.nodes) > 1


class ClusterNode(_Strict):
    """One machine of a Ray cluster (seed 003: two Sparks over a direct link)."""

    name: str = Field(description="The node's name in plans, status and errors.")
    address: str = Field(description="Its IP address on the fast link (Ray's node IP).")
    interface: str = Field(
        description="The fast link's network interface (NCCL_SOCKET_IFNAME, GLOO_SOCKET_IFNAME)."
    )
    hca: str | None = Field(default=None, description="RoCE HCA for NCCL_IB_HCA (e.g. mlx5_0).")
    gpus: int = Field(default=1, ge=0, description="GPUs it offers Ray (a Spark has one).")
    machine: str | MachineSpec | None = Field(
        default=None, description="Its machine profile; default: the stack's machine."
    )

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError(f"node name {value!r} must be letters, digits and ._:/- only")
        return value


class ClusterSpec(_Strict):
    """Several machines on Ray, the engine vLLM itself uses across nodes. The first
    node is the head: where `sparkstack up` and the gateway run."""

    nodes: list[ClusterNode] = Field(description="The machines, head first.")
    ray_port: int = Field(default=6379, gt=0, lt=65536, description="The head's Ray (GCS) port.")
    node_manager_port: int = Field(
        default=6380, gt=0, lt=65536,
        description="Each node's raylet port: fixed so the head can tell a node that answers.",
    )  # fmt: skip
    join_timeout: Seconds = Field(
        default=60.0, description="How long up waits for every node to join before refusing."
    )
    memory_usage_threshold: float = Field(
        default=0.98, gt=0, le=1,
        description="RAY_memory_usage_threshold: on unified memory the GPU's weights count "
        "as host memory, and Ray's default 0.95 kills vLLM's workers.",
    )  # fmt: skip
    memory_monitor_refresh_ms: int = Field(
        default=0, ge=0,
        description="RAY_memory_monitor_refresh_ms; 0 turns Ray's memory monitor off "
        "(sparkstack's own watchdog guards memory).",
    )  # fmt: skip

    _parse_durations = field_validator("join_timeout", mode="before")(
        lambda cls, v: parse_duration(v)
    )

    @field_validator("nodes")
    @classmethod
    def _check_nodes(cls, value: list[ClusterNode]) -> list[ClusterNode]:
        if not value:
            raise ValueError("cluster.nodes is empty; list the head first, then the workers")
        seen: set[str] = set()
        for node in value:
            if node.name in seen:
                raise ValueError(f"cluster.nodes: {node.name!r} is listed twice")
            seen.add(node.name)
        return value

    @property
    def head(self) -> ClusterNode:
        return self.nodes[0]

    def node(self, name: str) -> ClusterNode:
        return next(n for n in self.nodes if n.name == name)

    @property
    def total_gpus(self) -> int:
        return sum(node.gpus for node in self.nodes)


class Stack(_Strict):
    machine: str | MachineSpec = Field(
        default="auto", description="auto (probe), a profile name (dgx-spark), or numbers."
    )
    host_reserve_gib: float | None = Field(
        default=None,
        ge=0,
        description="Memory never handed to engines (GiB). Default: 20, or 15% of a "
        "machine smaller than 64 GiB (a 24 GiB laptop keeps 3.6 GiB, not 20).",
    )
    gateway: GatewaySpec = Field(default_factory=GatewaySpec)
    container: ContainerSpec = Field(default_factory=ContainerSpec)
    models: dict[str, ModelSpec] = Field(description="The served models, by name.")
    cluster: ClusterSpec | None = Field(
        default=None, description="Several machines on Ray (see the cluster section)."
    )

    @field_validator("models", mode="before")
    @classmethod
    def _name_models(cls, value: object) -> object:
        if isinstance(value, dict):
            named: dict[str, object] = {}
            for key, entry in value.items():
                if not isinstance(key, str) or not _NAME.match(key):
                    raise ValueError(f"model name {key!r} must be letters, digits and ._:/- only")
                named[key] = {**entry, "name": key} if isinstance(entry, dict) else entry
            return named
        return value

    @field_validator("models", mode="after")
    @classmethod
    def _check_unique_names(cls, value: dict[str, ModelSpec]) -> dict[str, ModelSpec]:
        if not value:
            raise ValueError("models: is empty; add at least one model")
        owner: dict[str, str] = {}
        for spec in value.values():
            for name in spec.names:
                if name in owner and owner[name] != spec.name:
                    raise ValueError(
                        f"models.{spec.name}.aliases: {name!r} is already a name or alias of "
                        f"model {owner[name]!r}; every name must be unique - rename or remove it"
                    )
                owner[name] = spec.name
        return value

    @model_validator(mode="after")
    def _check_one_baseline(self) -> Stack:
        baselines = [spec.name for spec in self.models.values() if spec.default_when_idle]
        if len(baselines) > 1:
            raise ValueError(
                f"models: {', '.join(baselines)} all set default_when_idle; at most one model "
                "is the baseline that comes back when the others idle out - keep it on one"
            )
        return self

    @property
    def baseline(self) -> str | None:
        """The model marked default_when_idle, if any."""
        return next((s.name for s in self.models.values() if s.default_when_idle), None)

    @model_validator(mode="after")
    def _check_cluster(self) -> Stack:
        for spec in self.models.values():
            where = f"models.{spec.name}"
            if self.cluster is None:
                if spec.nodes:
                    raise ValueError(f"{where}.nodes: there is no cluster: section naming nodes")
                continue
            known = [node.name for node in self.cluster.nodes]
            for name in spec.nodes:
                if name not in known:
                    raise ValueError(
                        f"{where}.nodes: {name!r} is not a cluster node; use one of: "
                        f"{', '.join(known)}"
                    )
            spanned = spec.nodes or [self.cluster.head.name]
            gpus = sum(self.cluster.node(name).gpus for name in spanned)
            if spec.world_size > gpus:
                raise ValueError(
                    f"{where}: tensor_parallel_size {spec.tensor_parallel_size} x "
                    f"pipeline_parallel_size {spec.pipeline_parallel_size} = {spec.world_size} "
                    f"GPUs, but its nodes ({', '.join(spanned)}) have {gpus} and the cluster "
                    f"{self.cluster.total_gpus}; lower the sizes or add nodes"
                )
            if spec.world_size % len(spanned):
                raise ValueError(
                    f"{where}: {spec.world_size} ranks do not split evenly over "
                    f"{len(spanned)} nodes; make tensor x pipeline a multiple of the nodes"
                )
        return self
